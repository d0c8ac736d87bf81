"""`pipeline.interactions`: each layout feature on real files, the report of bad rows, the options' errors."""

from __future__ import annotations

import bz2
import doctest
import gzip
import json
import lzma
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import pipeline.interactions as interactions
from operators.events.logic import Rejection, validate
from pipeline.errors import ConfigError
from pipeline.interactions import Interactions, ReadOptions, read_interactions

T0 = 1_736_150_400_000  # 2025-01-06T08:00:00Z
NOW = 1_764_000_000_000


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def read(path: Path, **options: Any) -> tuple[list[dict[str, Any]], Interactions]:
    data = read_interactions(path, ReadOptions.parse(**options))
    return list(data), data


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(interactions).failed == 0


def test_csv_with_header_mapped_by_name_with_string_items_and_an_id_column(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv",
                 "eid,visitorid,itemid,timestamp,event,categoryid\n"
                 "a1,257597,sku-355908,1736150400000,view,cat-1\n"
                 'a2,257597,"sku,with,commas",1736150401000,click,\n')
    events, data = read(path, mapping="event_id=eid,user=visitorid,item=itemid,ts=timestamp,type=event,"
                        "category=categoryid")
    assert events == [
        {"event_id": "a1", "user_id": "257597", "item_id": "sku-355908", "type": "view", "ts": T0,
         "category": "cat-1"},
        {"event_id": "a2", "user_id": "257597", "item_id": "sku,with,commas", "type": "click", "ts": T0 + 1000},
    ]
    assert data.layout.delimiter == "," and data.layout.header
    assert data.report.rows == 2 and data.report.events == 2 and data.report.rejected_total == 0


def test_tsv_without_header_mapped_by_number_in_epoch_seconds(tmp_path: Path) -> None:
    # MovieLens u.data's layout: user, item, rating, unix time
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    events, data = read(path, mapping="user=1,item=2,ts=4")
    assert data.layout.delimiter == "\t" and not data.layout.header
    assert [(e["user_id"], e["item_id"], e["type"], e["ts"]) for e in events] == [
        ("196", "242", "view", 881_250_949_000), ("186", "302", "view", 891_717_742_000)]
    assert [e["event_id"] for e in events] == [f"{data.layout.id_tag}1", f"{data.layout.id_tag}2"]


def test_numeric_mapping_still_skips_a_header_row_it_detects(tmp_path: Path) -> None:
    path = write(tmp_path, "h.tsv", "visitor\tproduct\twhen\nv1\t10\t1736150400\nv2\t11\t1736150401\n")
    events, data = read(path, mapping="user=1,item=2,ts=3")
    assert data.layout.header and [e["user_id"] for e in events] == ["v1", "v2"]
    assert [e["event_id"].rsplit(":", 1)[1] for e in events] == ["2", "3"], "ids carry the file's line numbers"


def test_header_and_delimiter_overrides_win_over_detection(tmp_path: Path) -> None:
    # all-text rows: nothing tells a header from data, so detection says "no header"
    path = write(tmp_path, "t.txt", "alice|book-1|2025-01-06T08:00:00Z\nbob|book-2|2025-01-06T08:00:01Z\n")
    events, data = read(path, mapping="user=1,item=2,ts=3")
    assert data.layout.delimiter == "|" and not data.layout.header and len(events) == 2
    events, data = read(path, mapping="user=1,item=2,ts=3", header=True)
    assert [e["user_id"] for e in events] == ["bob"]
    with pytest.raises(ConfigError, match=r"has 1 columns \(delimiter ','\)"):
        read(path, mapping="user=1,item=2,ts=3", delimiter=",")


def test_semicolon_iso_sessions_as_users_and_event_type_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "retail.csv",
                 "sessionId;timestamp;event;itemId;price\n"
                 "S1;2025-01-06T08:00:00.123Z;pageview;sku-a;12.50\n"
                 "S1;2025-01-06T08:00:05Z;AddToCart;sku-a;12.50\n"
                 "S2;2025-01-06 09:00:00+01:00;transaction;sku-b;3\n"
                 "S2;2025-01-06T08:00:06Z;search;sku-c;1\n")
    events, data = read(path, mapping="session=sessionId,item=itemId,ts=timestamp,type=event,price=price",
                        types="view=pageview,add_to_cart=addtocart,purchase=transaction")
    assert data.layout.delimiter == ";" and data.layout.user_from_session
    assert events == [
        {"event_id": events[0]["event_id"], "user_id": "S1", "item_id": "sku-a", "type": "view", "ts": T0 + 123,
         "session_hint": "S1", "price": 12.5},
        {"event_id": events[1]["event_id"], "user_id": "S1", "item_id": "sku-a", "type": "add_to_cart",
         "ts": T0 + 5000, "session_hint": "S1", "price": 12.5},
        {"event_id": events[2]["event_id"], "user_id": "S2", "item_id": "sku-b", "type": "purchase", "ts": T0,
         "session_hint": "S2", "price": 3.0},
    ]
    assert data.report.rejected == {"unmapped_type": 1}
    (bad,) = data.report.examples["unmapped_type"]
    assert bad.line == 5 and "'search'" in bad.detail and "--types view=search" in bad.detail


def test_user_and_session_both_mapped_keep_the_user_and_hint_the_session(tmp_path: Path) -> None:
    path = write(tmp_path, "both.csv", "u,s,i,t\nalice,s9,i1,1736150400000\n")
    events, data = read(path, mapping="user=u,session=s,item=i,ts=t")
    assert not data.layout.user_from_session
    assert (events[0]["user_id"], events[0]["session_hint"]) == ("alice", "s9")


def test_type_values_several_per_type_case_folded_catch_all_and_contract_names(tmp_path: Path) -> None:
    path = write(tmp_path, "types.csv", "u,i,t,e\n" + "".join(
        f"u,i,{T0 + n},{e}\n" for n, e in enumerate(["Detail", "pageview", "purchase", "wishlist", " CLICK "])))
    events, _ = read(path, mapping="user=u,item=i,ts=t,type=e", types="view=pageview|detail,add_to_cart=*")
    assert [e["type"] for e in events] == ["view", "view", "purchase", "add_to_cart", "click"]
    events, _ = read(path, mapping="user=u,item=i,ts=t")  # no type column: every row is a view
    assert {e["type"] for e in events} == {"view"}


def test_json_lines_with_nested_keys_integer_ids_and_epoch_milliseconds(tmp_path: Path) -> None:
    lines = [
        {"visitorId": 7, "page": {"item": 42}, "t": T0, "kind": "view", "cat": "books", "dwell": 1200},
        "not json at all",
        [1, 2, 3],
        {"visitorId": 8, "page": {"item": "sku-9"}, "t": T0 + 1, "kind": "click", "dwell": 5.5},
        {"visitorId": True, "page": {"item": 1}, "t": T0, "kind": "view"},
        {"visitorId": 9, "page": {}, "t": T0, "kind": "view"},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n"
    path = write(tmp_path, "events.ndjson", text)
    events, data = read(path, mapping="user=visitorId,item=page.item,ts=t,type=kind,category=cat,dwell=dwell")
    assert data.layout.format == "jsonl"
    assert events == [{"event_id": f"{data.layout.id_tag}1", "user_id": "7", "item_id": "42", "type": "view",
                       "ts": T0, "category": "books", "dwell_ms": 1200}]
    assert data.report.rejected == {"bad_json": 1, "not_object": 1, "bad_value": 2, "missing_value": 1}
    assert [p.line for p in data.report.examples["bad_value"]] == [4, 5]
    assert "dwell" in data.report.examples["bad_value"][0].detail
    assert "boolean" in data.report.examples["bad_value"][1].detail
    assert data.report.examples["missing_value"][0].line == 6
    assert data.report.blank_lines == 1 and data.report.rows == 6


def test_a_file_in_contract_shape_needs_no_mapping(tmp_path: Path) -> None:
    doc = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": T0, "category": "c"}
    events, _ = read(write(tmp_path, "c.jsonl", json.dumps(doc) + "\n"))
    assert events == [doc]
    events, _ = read(write(tmp_path, "c.csv", "user_id,item_id,ts,type\nu1,i1,1736150400,click\n"))
    assert [(e["user_id"], e["ts"], e["type"]) for e in events] == [("u1", T0, "click")]


@pytest.mark.parametrize(("opener", "name"), [(gzip.open, "gzip"), (bz2.open, "bz2"), (lzma.open, "xz")])
def test_compressed_files_are_recognised_by_their_bytes_not_their_name(tmp_path: Path, opener: Any,
                                                                        name: str) -> None:
    path = tmp_path / "looks-plain.csv"  # no .gz suffix: the magic bytes decide
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("u;i;t\nalice;sku-1;2025-01-06T08:00:00Z\nbob;sku-2;2025-01-06T08:00:01Z\n")
    events, data = read(path, mapping="user=u,item=i,ts=t")
    assert data.layout.compression == name and data.layout.delimiter == ";"
    assert [(e["user_id"], e["ts"]) for e in events] == [("alice", T0), ("bob", T0 + 1000)]
    assert data.position() == path.stat().st_size


def test_a_plain_file_named_gz_is_read_as_plain(tmp_path: Path) -> None:
    events, data = read(write(tmp_path, "x.csv.gz", "u,i,t\na,b,1736150400\n"), mapping="user=u,item=i,ts=t")
    assert data.layout.compression is None and len(events) == 1


@pytest.mark.parametrize(("value", "fmt", "expected"), [
    ("1736150400", "auto", T0),  # epoch seconds
    ("1736150400.5", "auto", T0 + 500),
    ("1736150400000", "auto", T0),  # epoch milliseconds
    ("1736150400000000", "auto", T0),  # microseconds
    ("1736150400000000000", "auto", T0),  # nanoseconds, exact (no float rounding)
    ("2025-01-06T08:00:00Z", "auto", T0),
    ("2025-01-06T08:00:00.250Z", "auto", T0 + 250),
    ("2025-01-06T10:00:00+02:00", "auto", T0),
    ("2025-01-06 08:00:00", "auto", T0),  # no offset: UTC
    ("2025-01-06", "auto", T0 - 8 * 3_600_000),
    ("2025-01-06T08:00:00Z", "iso", T0),
    ("5000", "ms", 5000),  # small numbers are seconds unless told otherwise
    ("5000", "s", 5_000_000),
    ("06/01/2025 08:00", "%d/%m/%Y %H:%M", T0),
    ("20250106", "%Y%m%d", T0 - 8 * 3_600_000),
])
def test_timestamp_formats(tmp_path: Path, value: str, fmt: str, expected: int) -> None:
    events, data = read(write(tmp_path, "ts.csv", f"u;i;t\na;b;{value}\n"), mapping="user=u,item=i,ts=t",
                        ts_format=fmt)
    assert data.report.rejected_total == 0, data.report.examples
    assert events[0]["ts"] == expected


@pytest.mark.parametrize(("value", "fmt", "words"), [
    ("yesterday", "auto", "not a time in ISO 8601"),
    ("1736150400", "iso", "is a number, not ISO 8601"),
    ("2025-01-06T08:00:00Z", "ms", "not a number of epoch ms"),
    ("2025-13-06", "%Y-%m-%d", "not a time in the pattern"),
    ("", "auto", "empty"),
])
def test_bad_timestamps_are_rejected_with_the_reason(tmp_path: Path, value: str, fmt: str, words: str) -> None:
    events, data = read(write(tmp_path, "ts.csv", f"u;i;t\na;b;{value}\na;b;1736150400\n"),
                        mapping="user=u,item=i,ts=t", ts_format=fmt if value else "auto")
    if fmt in ("iso", "%Y-%m-%d"):  # the second row's number is no ISO time and matches no date pattern
        assert len(events) == 0 and data.report.rejected["bad_timestamp"] == 2
    else:
        assert len(events) == 1 and data.report.rejected["bad_timestamp"] == 1
    first = data.report.examples["bad_timestamp"][0]
    assert first.line == 2 and words in first.detail and "t (column 3)" in first.detail


def test_date_plus_ordinal_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "sid,day,pos,item\n"
                 "s1,2025-01-06,0,i1\ns1,2025-01-06,28800000,i2\ns1,2025-01-06,-1,i3\ns2,2025-01-07,x,i4\n")
    events, data = read(path, mapping="session=sid,date=day,ordinal=pos,item=item")
    midnight = T0 - 8 * 3_600_000
    assert [e["ts"] for e in events] == [midnight, T0]
    assert data.report.rejected["bad_timestamp"] == 2
    assert [p.line for p in data.report.examples["bad_timestamp"]] == [4, 5]
    assert "ordinal" in data.report.examples["bad_timestamp"][0].detail
    events, _ = read(path, mapping="session=sid,date=day,ordinal=pos,item=item", ordinal_unit="s")
    assert events[1]["ts"] == midnight + 28_800_000_000
    events, data = read(path, mapping="session=sid,date=day,item=item")  # a date alone: midnight
    assert len(events) == 4 and {e["ts"] for e in events} == {midnight, midnight + 86_400_000}


def test_bad_rows_are_counted_with_line_numbers_and_reasons_never_dropped_silently(tmp_path: Path) -> None:
    raw = (b"user,item,ts\n"
           b"alice,i1,1736150400\n"
           b"bob,i2\n"  # 3: a field short
           b"carol,,1736150400\n"  # 4: empty item
           b"\n"  # 5: blank (counted, not a row)
           b'"multi\nline",i3,1736150400\n'  # 6-7: one row over two lines
           b"d\xffe,i4,1736150400\n"  # 8: not UTF-8
           b"eve,i5,1736150400,extra\n"  # 9: a field too many
           b",i6,1736150400\n")  # 10: empty user
    path = tmp_path / "bad.csv"
    path.write_bytes(raw)
    events, data = read(path)
    rep = data.report
    assert [e["user_id"] for e in events] == ["alice", "multi\nline"]
    assert rep.rows == 7 and rep.events == 2 and rep.blank_lines == 1 and rep.lines == 10
    assert rep.rejected == {"field_count": 2, "missing_value": 2, "not_utf8": 1}
    assert rep.rows == rep.events + rep.rejected_total
    assert [p.line for p in rep.examples["field_count"]] == [3, 9]
    assert [p.line for p in rep.examples["missing_value"]] == [4, 10]
    assert "item id is empty" in rep.examples["missing_value"][0].detail
    assert rep.examples["not_utf8"][0].line == 8
    assert events[1]["event_id"].endswith(":6"), "a multi-line row is numbered by its first line"


def test_only_the_first_examples_are_kept_but_every_row_is_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "many.csv", "u,i,t\n" + "a,b,never\n" * 50)
    _, data = read(path, mapping="user=u,item=i,ts=t", max_examples=3)
    assert data.report.rejected["bad_timestamp"] == 50
    assert [p.line for p in data.report.examples["bad_timestamp"]] == [2, 3, 4]


def test_event_ids_are_deterministic_per_row_and_follow_the_content(tmp_path: Path) -> None:
    text = "user,item,ts\na,b,1736150400\na,b,1736150400\n"
    one = write(tmp_path, "one.csv", text)
    ids = [e["event_id"] for e in read(one)[0]]
    assert ids == [e["event_id"] for e in read(one)[0]], "a second read must give the same ids"
    assert len(set(ids)) == 2, "identical rows on two lines are two events"
    moved = tmp_path / "sub" / "renamed.csv"
    moved.parent.mkdir()
    shutil.copy(one, moved)
    assert [e["event_id"] for e in read(moved)[0]] == ids, "a renamed copy keeps its ids"
    other = write(tmp_path, "one2.csv", text.replace("1736150400\n", "1736150401\n", 1))
    assert {e["event_id"] for e in read(other)[0]}.isdisjoint(ids), "another content, other ids"
    assert [e["event_id"] for e in read(one, id_prefix="retail-")[0]] == ["retail-2", "retail-3"]


def test_every_event_read_passes_the_jobs_validation(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.csv", "s;t;e;i;c;p\n" + "".join(
        f"s{n % 7};2025-01-06T08:{n % 60:02d}:00Z;{['pageview', 'transaction'][n % 2]};sku-{n};c{n % 3};{n}.5\n"
        for n in range(200)))
    events, _ = read(path, mapping="session=s,ts=t,type=e,item=i,category=c,price=p",
                     types="view=pageview,purchase=transaction")
    assert len(events) == 200
    for event in events:
        verdict = validate(json.dumps(event).encode(), now_ms=NOW)
        assert not isinstance(verdict, Rejection), (event, verdict)


@pytest.mark.parametrize(("options", "words"), [
    ({"mapping": "usr=visitor"}, "field of user, item"),
    ({"mapping": "user=a,user=b"}, "mapped twice"),
    ({"mapping": "user=a,item=b,ts=c,date=d"}, "ts and date/ordinal"),
    ({"mapping": "user=a,item=b,ordinal=c"}, "map the date column too"),
    ({"types": "viewed=pageview"}, "type of view, click"),
    ({"types": "view=x,click=x"}, "mapped to both"),
    ({"format": "parquet"}, "--format"),
    ({"format": "tsv", "delimiter": ";"}, "tab-delimited"),
    ({"delimiter": "::"}, "one character"),
    ({"ts_format": "minutes"}, "strptime pattern"),
    ({"ordinal_unit": "h"}, "--ordinal-unit"),
    ({"encoding": "klingon"}, "--encoding"),
])
def test_wrong_options_name_the_option(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ReadOptions.parse(**options)


def test_layout_errors_are_raised_before_any_row_is_read(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "l.csv", "visitor,product,when\nv,i,1736150400\n")
    with pytest.raises(ConfigError, match=r"no column 'visitorid'.*columns: visitor, product, when"):
        read_interactions(csv_path, ReadOptions.parse(mapping="user=visitorid,item=product,ts=when"))
    with pytest.raises(ConfigError, match="no column for item"):
        read_interactions(csv_path, ReadOptions.parse(mapping="user=visitor,ts=when"))
    with pytest.raises(ConfigError, match="has 3 columns"):
        read_interactions(csv_path, ReadOptions.parse(mapping="user=1,item=2,ts=9"))
    with pytest.raises(ConfigError, match="no header"):
        read_interactions(csv_path, ReadOptions.parse(mapping="user=visitor,item=2,ts=3", header=False))
    # names are matched exactly first, then case-insensitively
    assert read_interactions(csv_path, ReadOptions.parse(mapping="user=VISITOR,item=product,ts=when")).layout.header
    json_path = write(tmp_path, "l.jsonl", '{"a": 1}\n')
    with pytest.raises(ConfigError, match="not column numbers"):
        read_interactions(json_path, ReadOptions.parse(mapping="user=1,item=2,ts=3"))
    with pytest.raises(ConfigError, match="no rows"):
        read_interactions(write(tmp_path, "empty.csv", "\n\n"))
    with pytest.raises(ConfigError, match="a folder there"):
        read_interactions(tmp_path)
    with pytest.raises(ConfigError, match="cannot tell the delimiter"):
        read_interactions(write(tmp_path, "one.txt", "justonecolumn\nanother\n"), ReadOptions.parse(mapping="user=1"))
    zipped = tmp_path / "z.csv"
    zipped.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ConfigError, match="zip-compressed"):
        read_interactions(zipped)


def test_position_tracks_bytes_for_a_progress_bar(tmp_path: Path) -> None:
    rows = "".join(f"u{n},i{n},{1736150400 + n}\n" for n in range(50_000))
    path = write(tmp_path, "big.csv", "user_id,item_id,ts\n" + rows)
    data = read_interactions(path, ReadOptions())
    seen = []
    for n, _ in enumerate(data.rows()):
        if n % 10_000 == 0:
            seen.append(data.position())
    assert seen == sorted(seen) and seen[0] < data.size / 2 < seen[-1]
    assert data.position() == data.size


def test_iso_times_match_datetime(tmp_path: Path) -> None:
    stamp = datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=UTC)
    events, _ = read(write(tmp_path, "x.csv", f"user,item,ts\na,b,{stamp.isoformat()}\n"))
    assert events[0]["ts"] == int(stamp.timestamp() * 1000)


def test_a_byte_order_mark_is_skipped_and_other_encodings_are_read(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes("user,item,ts\nzoë,i1,1736150400\n".encode("utf-8-sig"))
    events, data = read(bom)
    assert data.layout.header and events[0]["user_id"] == "zoë"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user,item,ts\nzoë,i1,1736150400\n".encode("latin-1"))
    assert read(latin)[1].report.rejected == {"not_utf8": 1}
    assert read(latin, encoding="latin-1")[0][0]["user_id"] == "zoë"


def test_a_truncated_gzip_file_fails_with_the_line_it_reached(tmp_path: Path) -> None:
    body = "user,item,ts\n" + "".join(f"u{n},i{n},{1736150400 + n}\n" for n in range(20_000))
    whole = gzip.compress(body.encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    data = read_interactions(path)
    with pytest.raises(ConfigError, match=r"cannot read past line \d+ .*truncated"):
        list(data)
    assert 0 < data.report.events < 20_000
