r"""One reader for interaction files: CSV, TSV or JSON lines (plain, gzip, bz2 or xz) → events of contract v1.

Why one reader: every command that takes ``--data`` must read a user's own click log the same way, with
the same column mapping and the same report of the rows it could not use. docs/data-files.md lists every
option; this docstring says how the guesses are made.

Parsing uses the standard library's `csv` module, not pyarrow or polars: they are fast columnar readers,
but a row they cannot parse fails the whole file or becomes nulls, without the line number and reason
this reader must report for each row; and the per-row work that remains here (mapping, timestamps, type
values) would dominate anyway. `csv` handles quoting and multi-line fields, and adds no dependency.

Detection (each has an override):

- **compression** by the file's first bytes (gzip ``1f 8b``, bz2 ``BZh``, xz ``fd 37 7a 58 5a 00``), not
  by its suffix: exports are often renamed.
- **format**: JSON lines if the first non-blank line starts with ``{``, else delimited text.
- **delimiter**: of tab, ``;``, ``,`` and ``|``, the one that splits the most sampled lines (first 50)
  into the same number (≥ 2) of fields; ties go to the one giving more fields, then to that order.
- **header**: yes if the mapping names a column (``user=visitorid``); else yes if the first row holds a
  default column name (``user_id``, ``item_id``, ``ts``, …) or no number while the second row holds one.
- **timestamps** (``--ts-format auto``), value by value: a number below 10^11 is epoch seconds (10^11 s
  is the year 5138, 10^11 ms is 1973), below 10^14 milliseconds, below 10^17 microseconds, else
  nanoseconds; any other text is ISO 8601 (``2025-01-06T08:15:02.123Z``, ``2025-01-06 08:15:02``,
  ``2025-01-06``). A time without an offset is UTC.

Event ids are deterministic per row, so sending a file again sends the same ids: a mapped ``event_id``
column, else ``<tag>:<line>`` where the tag is ``f`` + the first 12 hex digits of the SHA-1 of the
file's bytes (``--id-prefix`` replaces the tag and the colon). The content hash rather than the file
name: regenerating a file under the same name (another seed, another export) gives new ids instead of
ids the job would drop as duplicates; a file appended to gets new ids for every row, so pass
``--id-prefix`` (or map an id column) for a log that grows.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
>>> _ = p.write_text("visitor;item;when;what\nv1;sku-1;2025-01-06T08:00:00Z;pageview\nv1;sku-2;soon;pageview\n")
>>> opts = ReadOptions.parse(mapping="user=visitor,item=item,ts=when,type=what", types="view=pageview")
>>> data = read_interactions(p, opts)
>>> [(e["user_id"], e["item_id"], e["type"], e["ts"]) for e in data]
[('v1', 'sku-1', 'view', 1736150400000)]
>>> data.report.rejected["bad_timestamp"], data.report.examples["bad_timestamp"][0].line
(1, 3)
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import hashlib
import io
import json
import lzma
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final

from pipeline.errors import ConfigError
from state_schemas.events import EVENT_TYPE_NAMES

#: Mapping targets → the contract field each fills ("date" and "ordinal" together fill ``ts``).
FIELDS: Final[Mapping[str, str]] = MappingProxyType({
    "user": "user_id",
    "item": "item_id",
    "ts": "ts",
    "type": "type",
    "session": "session_hint",
    "category": "category",
    "event_id": "event_id",
    "date": "ts",
    "ordinal": "ts",
    "dwell": "dwell_ms",
    "price": "price",
})
#: Column names used for an unmapped field when the header (or JSON object) has them.
DEFAULT_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "user": ("user_id", "user"),
    "item": ("item_id", "item"),
    "ts": ("ts",),
    "type": ("type",),
    "session": ("session_hint", "session"),
    "category": ("category",),
    "event_id": ("event_id",),
    "dwell": ("dwell_ms", "dwell"),
    "price": ("price",),
})
FORMATS: Final = ("auto", "csv", "tsv", "jsonl")
TS_UNITS: Final[Mapping[str, int]] = MappingProxyType({"s": 1_000, "ms": 1, "us": -1_000, "ns": -1_000_000})
ORDINAL_UNITS: Final[Mapping[str, int]] = MappingProxyType({"ms": 1, "s": 1_000})
DELIMITER_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
)
DEFAULT_TYPE: Final = "view"  # the type of every row when no type column is mapped (a rating, a play …)
CATCH_ALL: Final = "*"

_CANDIDATE_DELIMITERS: Final = ("\t", ";", ",", "|")
_SAMPLE_LINES: Final = 50
_MAGIC: Final = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"))
_UNSUPPORTED_MAGIC: Final = ((b"PK\x03\x04", "zip"), (b"\x28\xb5\x2f\xfd", "zstd"))
_INT_RE: Final = re.compile(r"[+-]?\d+")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


class RowReason(StrEnum):
    """Stable codes of a row the reader could not turn into an event: append, never rename."""

    NOT_UTF8 = "not_utf8"  # bytes that are not valid in --encoding
    BAD_CSV = "bad_csv"  # the csv module refused the row (e.g. a field over its size limit)
    FIELD_COUNT = "field_count"  # not as many fields as the header (or the file's usual count)
    BAD_JSON = "bad_json"
    NOT_OBJECT = "not_object"  # a JSON line that is not an object
    MISSING_VALUE = "missing_value"  # a required column is absent or empty
    BAD_TIMESTAMP = "bad_timestamp"
    UNMAPPED_TYPE = "unmapped_type"  # an event-type value neither in --types nor a contract type
    BAD_VALUE = "bad_value"  # an id, dwell, price or ordinal of the wrong kind


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One rejected row: where (1-based line of the file where the row starts), why, and the details."""

    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.detail}"


@dataclass(slots=True)
class ReadReport:
    """What a pass over a file found: rows read, events made, rows rejected by reason (first examples kept)."""

    path: str
    max_examples: int = 5
    lines: int = 0  # physical lines read (header and blank lines included)
    rows: int = 0  # data rows: not the header, not blank
    blank_lines: int = 0  # empty lines: neither events nor rejections, counted so nothing vanishes unseen
    events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[RowProblem]] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        """Rows rejected, all reasons."""
        return sum(self.rejected.values())

    def reject(self, line: int, reason: str, detail: str) -> None:
        """Count a rejected row; keep it as an example while its reason has fewer than `max_examples`."""
        self.rejected[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < self.max_examples:
            kept.append(RowProblem(line, reason, detail))


@dataclass(frozen=True, slots=True)
class Row:
    """One event and the file line its row starts on (for reports of later checks, e.g. validation)."""

    line: int
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to read one file; `parse` builds it from the command-line strings and checks them.

    ``columns`` maps a field of `FIELDS` to a column: a header name or JSON key, or a 1-based column
    number (``"3"``). ``types`` maps a file's event-type value (case-folded) to a contract type, ``"*"``
    catching values not listed.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    types: Mapping[str, str] = field(default_factory=dict)
    format: str = "auto"
    delimiter: str | None = None
    header: bool | None = None
    ts_format: str = "auto"
    ordinal_unit: str = "ms"
    id_prefix: str | None = None
    encoding: str = "utf-8"
    max_examples: int = 5

    @classmethod
    def parse(
        cls,
        *,
        mapping: str | None = None,
        types: str | None = None,
        format: str = "auto",
        delimiter: str | None = None,
        header: bool | None = None,
        ts_format: str = "auto",
        ordinal_unit: str = "ms",
        id_prefix: str | None = None,
        encoding: str = "utf-8",
        max_examples: int = 5,
    ) -> ReadOptions:
        """Options from the CLI strings (``--map``, ``--types``, …); a `ConfigError` names the bad option."""
        fmt = format.strip().lower()
        if fmt not in FORMATS:
            msg = f"--format {format!r} is not one of {', '.join(FORMATS)}"
            raise ConfigError(msg)
        if fmt == "tsv":
            if delimiter is not None and parse_delimiter(delimiter) != "\t":
                msg = f"--format tsv means tab-delimited, but --delimiter is {delimiter!r}; pass one of them"
                raise ConfigError(msg)
            fmt, delimiter = "csv", "\t"
        if ts_format not in ("auto", "iso", *TS_UNITS) and "%" not in ts_format:
            msg = (f"--ts-format {ts_format!r} is not auto, iso, {', '.join(TS_UNITS)} or a strptime pattern "
                   "with % directives (e.g. '%d/%m/%Y %H:%M')")
            raise ConfigError(msg)
        if ordinal_unit not in ORDINAL_UNITS:
            msg = f"--ordinal-unit {ordinal_unit!r} is not one of {', '.join(ORDINAL_UNITS)}"
            raise ConfigError(msg)
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            msg = f"--encoding {encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)"
            raise ConfigError(msg) from exc
        if max_examples < 0:
            msg = f"the number of examples kept per reason must be >= 0, got {max_examples}"
            raise ConfigError(msg)
        if id_prefix is not None and not id_prefix.strip():
            msg = "--id-prefix is empty; pass a prefix such as 'retail-2025-01:' or leave it out"
            raise ConfigError(msg)
        return cls(
            columns=MappingProxyType(parse_mapping(mapping or "")),
            types=MappingProxyType(parse_types(types or "")),
            format=fmt,
            delimiter=None if delimiter is None else parse_delimiter(delimiter),
            header=header,
            ts_format=ts_format,
            ordinal_unit=ordinal_unit,
            id_prefix=id_prefix,
            encoding=encoding,
            max_examples=max_examples,
        )


def parse_mapping(spec: str) -> dict[str, str]:
    """``"user=visitorid,item=3"`` → ``{"user": "visitorid", "item": "3"}`` (contract names accepted as keys).

    >>> parse_mapping("user_id=visitor, item=itemid")
    {'user': 'visitor', 'item': 'itemid'}
    """
    by_contract = {v: k for k, v in FIELDS.items() if k not in ("date", "ordinal")}
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, column = (s.strip() for s in part.partition("="))
        name = key if key in FIELDS else by_contract.get(key)
        if not sep or not column or name is None:
            msg = (f"--map: {part!r} is not field=column with a field of {', '.join(FIELDS)} "
                   "(e.g. --map user=visitorid,item=itemid,ts=timestamp)")
            raise ConfigError(msg)
        if name in out:
            msg = f"--map: field {name!r} is mapped twice ({out[name]!r} and {column!r}); keep one"
            raise ConfigError(msg)
        out[name] = column
    if "ts" in out and ("date" in out or "ordinal" in out):
        msg = "--map: ts and date/ordinal both give the event time; map ts, or date (with an optional ordinal)"
        raise ConfigError(msg)
    if "ordinal" in out and "date" not in out:
        msg = "--map: ordinal counts within a date; map the date column too (date=COLUMN)"
        raise ConfigError(msg)
    return out


def parse_types(spec: str) -> dict[str, str]:
    """``"view=pageview|detail,purchase=transaction"`` → file value (case-folded) → contract type.

    >>> parse_types("view=PageView|detail, purchase=transaction")
    {'pageview': 'view', 'detail': 'view', 'transaction': 'purchase'}
    """
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        target, sep, values = (s.strip() for s in part.partition("="))
        if not sep or not values or target not in EVENT_TYPE_NAMES:
            msg = (f"--types: {part!r} is not type=value with a type of {', '.join(EVENT_TYPE_NAMES)} "
                   "(e.g. --types view=pageview,purchase=transaction; '|' separates several values)")
            raise ConfigError(msg)
        for value in (v.strip().casefold() for v in values.split("|")):
            if not value:
                continue
            if out.get(value, target) != target:
                msg = f"--types: value {value!r} is mapped to both {out[value]!r} and {target!r}"
                raise ConfigError(msg)
            out[value] = target
    return out


def parse_delimiter(text: str) -> str:
    r"""A one-character delimiter from ``;``, ``tab``, ``\t``, ``comma``, ``semicolon``, ``pipe`` or ``space``."""
    value = DELIMITER_NAMES.get(text.strip().lower(), text)
    if len(value) != 1:
        msg = (f"--delimiter {text!r} must be one character, or one of {', '.join(DELIMITER_NAMES)} "
               "(quote it in the shell: --delimiter ';')")
        raise ConfigError(msg)
    return value


@dataclass(frozen=True, slots=True)
class Layout:
    """What was detected (or given) about a file: printed before a replay so a wrong guess shows at once."""

    format: str  # csv | jsonl
    compression: str | None  # gzip | bz2 | xz | None
    delimiter: str | None  # csv only
    header: bool  # csv: the first row holds column names
    columns: Mapping[str, str]  # field → human-readable column ("visitorid (column 2)")
    fields_per_row: int  # csv: the count every row must have
    id_tag: str  # event ids are f"{id_tag}{line}" unless an event_id column is mapped
    user_from_session: bool  # the session column stands in for the user

    def describe(self) -> str:
        """One line for people: format, delimiter, header, the column of each field."""
        parts = [self.format if self.compression is None else f"{self.format} ({self.compression})"]
        if self.format == "csv":
            parts.append(f"delimiter {self.delimiter!r}")
            parts.append("header" if self.header else "no header")
        cols = ", ".join(f"{k}={v}" for k, v in self.columns.items())
        who = "; session ids stand in for users" if self.user_from_session else ""
        return f"{', '.join(parts)}; {cols}{who}"


class Interactions:
    """The events of one file, in file order; `report` fills in while they are iterated.

    Creating it opens the file and detects its layout, so a wrong option or an unknown column raises a
    `ConfigError` here, before anything is read or sent. Each iteration reads the file again and starts
    a new `report`.
    """

    def __init__(self, path: Path | str, options: ReadOptions | None = None) -> None:
        self.path = Path(path).expanduser()
        self.options = options or ReadOptions()
        if not self.path.is_file():
            what = "a folder" if self.path.is_dir() else "no file"
            msg = f"--data {self.path}: {what} there; pass the path of a CSV, TSV or JSON-lines file"
            raise ConfigError(msg)
        self.size = self.path.stat().st_size
        self.report = ReadReport(str(self.path), self.options.max_examples)
        self._raw: IO[bytes] | None = None
        self._compression_name: str | None = None
        self._indexes: dict[str, int] = {}  # csv: field → 0-based column
        self._keys: dict[str, str] = {}  # jsonl: field → key
        self.layout = self._detect()

    # -- public ------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The events, in file order (rows that do not parse are counted in `report` instead)."""
        return (row.event for row in self.rows())

    def rows(self) -> Iterator[Row]:
        """The events with the line their row starts on."""
        self.report = ReadReport(str(self.path), self.options.max_examples)
        with self._open_text() as text:
            try:
                if self.layout.format == "jsonl":
                    yield from self._json_rows(text)
                else:
                    yield from self._csv_rows(text)
            except (OSError, EOFError, lzma.LZMAError) as exc:  # e.g. a gzip file cut off in a copy
                msg = (f"--data {self.path}: cannot read past line {self.report.lines} ({type(exc).__name__}: "
                       f"{exc}); the file looks truncated or corrupt: copy or export it again")
                raise ConfigError(msg) from exc

    def position(self) -> int:
        """Bytes of the file (compressed, if it is) consumed so far: for a progress bar against `size`."""
        raw = self._raw
        if raw is None or raw.closed:
            return self.size
        return raw.tell()

    # -- opening -----------------------------------------------------------------------------------

    def _compression(self) -> str | None:
        with self.path.open("rb") as f:
            head = f.read(8)
        for magic, name in _UNSUPPORTED_MAGIC:
            if head.startswith(magic):
                msg = (f"--data {self.path} is {name}-compressed, which this reader does not open; "
                       "decompress it, or recompress it with gzip, bz2 or xz")
                raise ConfigError(msg)
        return next((name for magic, name in _MAGIC if head.startswith(magic)), None)

    def _open_text(self) -> io.TextIOWrapper:
        raw = self.path.open("rb")
        self._raw = raw
        binary: IO[bytes] = raw
        if self._compression_name == "gzip":
            binary = gzip.GzipFile(fileobj=raw, mode="rb")
        elif self._compression_name == "bz2":
            binary = bz2.BZ2File(raw, mode="rb")
        elif self._compression_name == "xz":
            binary = lzma.LZMAFile(raw, mode="rb")
        encoding = "utf-8-sig" if codecs.lookup(self.options.encoding).name == "utf-8" else self.options.encoding
        # surrogateescape: an undecodable byte becomes a lone surrogate, so one bad row is reported as
        # not_utf8 instead of a decode error ending the whole read. newline="": what `csv` requires.
        return io.TextIOWrapper(binary, encoding=encoding, errors="surrogateescape", newline="")  # type: ignore[arg-type]

    # -- detection ---------------------------------------------------------------------------------

    def _detect(self) -> Layout:
        opts = self.options
        self._compression_name = self._compression()
        try:
            with self._open_text() as text:
                sample = list(islice(text, _SAMPLE_LINES))
        except (OSError, EOFError, lzma.LZMAError) as exc:
            msg = f"--data {self.path}: cannot read it ({type(exc).__name__}: {exc}); is the file complete?"
            raise ConfigError(msg) from exc
        finally:
            self._raw = None
        first = next((line for line in sample if line.strip()), None)
        if first is None:
            msg = f"--data {self.path} has no rows (empty, or blank lines only)"
            raise ConfigError(msg)
        fmt = opts.format
        if fmt == "auto":
            fmt = "jsonl" if first.lstrip().startswith("{") and opts.delimiter is None else "csv"
        if fmt == "jsonl":
            return self._detect_json(first)
        return self._detect_csv(sample)

    def _tag(self) -> str:
        if self.options.id_prefix is not None:
            return self.options.id_prefix
        with self.path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha1").hexdigest()
        return f"f{digest[:12]}:"

    def _detect_json(self, first: str) -> Layout:
        cols = self.options.columns
        numeric = sorted(f"{k}={v}" for k, v in cols.items() if v.isdigit())
        if numeric:
            msg = (f"--map {', '.join(numeric)}: {self.path} is JSON lines, whose fields have names, not "
                   "column numbers; map them by key (e.g. user=visitorId)")
            raise ConfigError(msg)
        try:
            obj = json.loads(first)
        except ValueError:
            obj = None
        keys = list(obj) if isinstance(obj, dict) else []
        resolved = dict(cols)
        for name, defaults in DEFAULT_COLUMNS.items():
            if name not in resolved:
                hit = next((d for d in defaults if d in keys), None)
                if hit is not None and not (name == "ts" and "date" in resolved):
                    resolved[name] = hit
        self._check_required(resolved, f"keys of the first object: {', '.join(keys) or 'none'}")
        self._keys = resolved
        shown = {name: f"key {key}" for name, key in resolved.items()}
        return Layout("jsonl", self._compression_name, None, False, MappingProxyType(shown), 0,
                      self._tag(), "user" not in resolved)

    def _detect_csv(self, sample: list[str]) -> Layout:
        opts = self.options
        delimiter = opts.delimiter or self._sniff_delimiter(sample)
        records = [r for r in csv.reader(sample, delimiter=delimiter) if r]
        counts = Counter(len(r) for r in records)
        first = [c.strip() for c in records[0]]
        header = opts.header
        if header is None:
            header = self._sniff_header(first, records[1] if len(records) > 1 else None)
        fields_per_row = len(first) if header else counts.most_common(1)[0][0]
        names = first if header else []
        resolved: dict[str, int] = {}
        shown: dict[str, str] = {}
        for name, ref in opts.columns.items():
            idx = self._column_index(name, ref, names, fields_per_row, delimiter)
            resolved[name] = idx
            shown[name] = f"{names[idx]} (column {idx + 1})" if names else f"column {idx + 1}"
        if header:
            for name, defaults in DEFAULT_COLUMNS.items():
                if name in resolved or (name == "ts" and "date" in resolved):
                    continue
                hit = next((d for d in defaults if names.count(d) == 1), None)
                if hit is not None:
                    resolved[name] = names.index(hit)
                    shown[name] = f"{hit} (column {resolved[name] + 1})"
        where = f"columns: {', '.join(names)}" if header else f"{fields_per_row} columns, no header"
        self._check_required(resolved, where)
        self._indexes = resolved
        return Layout("csv", self._compression_name, delimiter, header, MappingProxyType(shown), fields_per_row,
                      self._tag(), "user" not in resolved)

    def _sniff_delimiter(self, sample: list[str]) -> str:
        best: tuple[float, int, int] | None = None
        choice = None
        for rank, cand in enumerate(_CANDIDATE_DELIMITERS):
            counts = Counter(len(r) for r in csv.reader(sample, delimiter=cand) if r)
            width, hits = counts.most_common(1)[0]
            if width < 2:
                continue
            score = (hits / sum(counts.values()), width, -rank)
            if best is None or score > best:
                best, choice = score, cand
        if choice is None or best is None or best[0] < 0.5:
            msg = (f"--data {self.path}: cannot tell the delimiter (tried tab, ';', ',' and '|' on the first "
                   f"{len(sample)} lines); pass --delimiter, or --format jsonl for JSON lines")
            raise ConfigError(msg)
        return choice

    def _sniff_header(self, first: list[str], second: list[str] | None) -> bool:
        cols = self.options.columns
        if any(not ref.isdigit() for ref in cols.values()):
            return True  # a column mapped by name: the names must be in the first row
        defaults = {d for names in DEFAULT_COLUMNS.values() for d in names}
        if defaults.intersection(first):
            return True
        if second is None:
            return False
        return not any(map(_is_number, first)) and any(_is_number(c.strip()) for c in second)

    def _column_index(self, name: str, ref: str, names: list[str], width: int, delimiter: str) -> int:
        if ref.isdigit():
            idx = int(ref) - 1
            if not 0 <= idx < width:
                msg = (f"--map {name}={ref}: {self.path} has {width} columns (delimiter {delimiter!r}); "
                       f"column numbers start at 1")
                raise ConfigError(msg)
            return idx
        if not names:
            msg = (f"--map {name}={ref}: {self.path} has no header (--no-header, or not detected), so columns "
                   f"are numbers 1..{width}; map {name}=N, or pass --header")
            raise ConfigError(msg)
        if names.count(ref) == 1:
            return names.index(ref)
        if names.count(ref) > 1:
            msg = (f"--map {name}={ref}: the header of {self.path} has {names.count(ref)} columns named {ref!r}; "
                   "map it by its 1-based number instead")
            raise ConfigError(msg)
        folded = [i for i, n in enumerate(names) if n.casefold() == ref.casefold()]
        if len(folded) == 1:
            return folded[0]
        looks = "; the first row looks like data, not names: pass --no-header and map columns by number" \
            if all(map(_is_number, names)) else ""
        msg = (f"--map {name}={ref}: no column {ref!r} in the header of {self.path} (delimiter {delimiter!r}; "
               f"columns: {', '.join(names)}); map an existing name or a 1-based number{looks}")
        raise ConfigError(msg)

    def _check_required(self, resolved: Mapping[str, object], where: str) -> None:
        missing = []
        if "user" not in resolved and "session" not in resolved:
            missing.append("user (or session, whose ids then stand in for users)")
        if "item" not in resolved:
            missing.append("item")
        if "ts" not in resolved and "date" not in resolved:
            missing.append("ts (or date, with an optional ordinal)")
        if missing:
            msg = (f"--map: no column for {'; '.join(missing)} in {self.path} ({where}); map them, e.g. "
                   "--map user=visitorid,item=itemid,ts=timestamp")
            raise ConfigError(msg)

    # -- rows --------------------------------------------------------------------------------------

    def _csv_rows(self, text: io.TextIOWrapper) -> Iterator[Row]:
        layout, report = self.layout, self.report
        reader = csv.reader(text, delimiter=layout.delimiter or ",")
        idx = self._indexes
        width = layout.fields_per_row
        convert = self._converter()
        header_pending = layout.header
        while True:
            line = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                report.lines = reader.line_num
                report.rows += 1
                report.reject(line, RowReason.BAD_CSV, f"the csv module refused the row: {exc}")
                if reader.line_num < line:  # nothing consumed: stop rather than loop
                    break
                continue
            report.lines = reader.line_num
            if not record:
                report.blank_lines += 1
                continue
            if header_pending:
                header_pending = False
                continue
            report.rows += 1
            if len(record) != width:
                report.reject(line, RowReason.FIELD_COUNT,
                              f"{len(record)} fields, the file has {width} (delimiter {layout.delimiter!r}): "
                              "an unquoted delimiter inside a value, or a cut-off row")
                continue
            if not _is_text(record):
                report.reject(line, RowReason.NOT_UTF8, f"bytes that are not valid {self.options.encoding}")
                continue
            out = convert(lambda name, r=record: r[idx[name]] if name in idx else None, line)
            if isinstance(out, RowProblem):
                report.reject(out.line, out.reason, out.detail)
                continue
            report.events += 1
            yield Row(line, out)

    def _json_rows(self, text: io.TextIOWrapper) -> Iterator[Row]:
        report = self.report
        keys = self._keys
        convert = self._converter()
        for line, raw in enumerate(text, start=1):
            report.lines = line
            if not raw.strip():
                report.blank_lines += 1
                continue
            report.rows += 1
            if not _is_text((raw,)):
                report.reject(line, RowReason.NOT_UTF8, f"bytes that are not valid {self.options.encoding}")
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                report.reject(line, RowReason.BAD_JSON, f"not JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                report.reject(line, RowReason.NOT_OBJECT, f"a JSON {type(obj).__name__}, expected an object")
                continue
            out = convert(lambda name, o=obj: _lookup(o, keys[name]) if name in keys else None, line)
            if isinstance(out, RowProblem):
                report.reject(out.line, out.reason, out.detail)
                continue
            report.events += 1
            yield Row(line, out)

    def _converter(self) -> Callable[[Callable[[str], Any], int], dict[str, Any] | RowProblem]:
        """A function (column getter, line) → event dict or problem, with the options bound once."""
        opts, layout = self.options, self.layout
        cols = layout.columns
        types = opts.types
        catch_all = types.get(CATCH_ALL)
        contract_types = set(EVENT_TYPE_NAMES)
        user_field = "session" if layout.user_from_session else "user"
        has_type, has_date = "type" in cols, "date" in cols
        ordinal_factor = ORDINAL_UNITS[opts.ordinal_unit]
        tag = layout.id_tag

        def convert(get: Callable[[str], Any], line: int) -> dict[str, Any] | RowProblem:
            def problem(reason: RowReason, detail: str) -> RowProblem:
                return RowProblem(line, reason, detail)

            def required(name: str, what: str) -> str | RowProblem:
                value = _text(get(name))
                if value is None:
                    return problem(RowReason.MISSING_VALUE, f"{what} is empty ({cols[name]})")
                if isinstance(value, _Bad):
                    return problem(RowReason.BAD_VALUE, f"{what} ({cols[name]}) {value.why}")
                return value

            user = required(user_field, "the session id (standing in for the user)"
                            if layout.user_from_session else "the user id")
            if isinstance(user, RowProblem):
                return user
            item = required("item", "the item id")
            if isinstance(item, RowProblem):
                return item
            if has_date:
                ts = _date_ordinal(get("date"), get("ordinal") if "ordinal" in cols else None,
                                   opts.ts_format, ordinal_factor)
                source = f"date {cols['date']}" + (f" + ordinal {cols['ordinal']}" if "ordinal" in cols else "")
            else:
                ts = _timestamp(get("ts"), opts.ts_format)
                source = cols["ts"]
            if isinstance(ts, str):
                return problem(RowReason.BAD_TIMESTAMP, f"{source}: {ts}")
            if has_type:
                raw_type = _text(get("type"))
                if raw_type is None or isinstance(raw_type, _Bad):
                    return problem(RowReason.MISSING_VALUE, f"the event type is empty ({cols['type']})")
                key = raw_type.casefold()
                kind = types.get(key) or (key if key in contract_types else catch_all)
                if kind is None:
                    return problem(RowReason.UNMAPPED_TYPE,
                                   f"{raw_type!r} ({cols['type']}) is not an event type "
                                   f"({', '.join(EVENT_TYPE_NAMES)}); map it, e.g. --types view={raw_type}")
            else:
                kind = catch_all or DEFAULT_TYPE
            if "event_id" in cols:
                event_id = required("event_id", "the event id")
                if isinstance(event_id, RowProblem):
                    return event_id
            else:
                event_id = f"{tag}{line}"
            event: dict[str, Any] = {"event_id": event_id, "user_id": user, "item_id": item, "type": kind, "ts": ts}
            for name in ("category", "session"):
                if name in cols:
                    value = _text(get(name))
                    if isinstance(value, _Bad):
                        return problem(RowReason.BAD_VALUE, f"the {name} ({cols[name]}) {value.why}")
                    if value is not None:
                        event[FIELDS[name]] = value
            if "dwell" in cols:
                dwell = _number(get("dwell"))
                if isinstance(dwell, float) and dwell.is_integer():
                    dwell = int(dwell)
                if isinstance(dwell, str) or isinstance(dwell, float):
                    return problem(RowReason.BAD_VALUE, f"dwell ({cols['dwell']}) {get('dwell')!r} "
                                   "is not a whole number of milliseconds")
                if dwell is not None:
                    event["dwell_ms"] = dwell
            if "price" in cols:
                price = _number(get("price"))
                if isinstance(price, str):
                    return problem(RowReason.BAD_VALUE, f"price ({cols['price']}) {get('price')!r} "
                                   "is not a number (use '.' for decimals)")
                if price is not None:
                    event["price"] = float(price)
            return event

        return convert


def read_interactions(path: Path | str, options: ReadOptions | None = None) -> Interactions:
    """Open ``path`` and detect its layout now (a `ConfigError` names a wrong option); iterate it for events."""
    return Interactions(path, options)


# -- value helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bad:
    why: str


def _is_text(values: list[str] | tuple[str, ...]) -> bool:
    try:
        "".join(values).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: an undecodable byte (surrogateescape)
        return False
    return True


def _is_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return value == value and abs(value) != float("inf")


def _text(value: Any) -> str | _Bad | None:
    """A string id or label from a CSV field or JSON value; None when empty or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return _Bad(f"is a boolean ({value!r}), expected a string or an integer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _Bad(f"is {value!r}, expected a string or an integer")


def _number(value: Any) -> int | float | str | None:
    """A JSON number or numeric text; the original text back when it is not a number (None when empty)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        return value if _finite(value) else repr(value)
    text = str(value).strip()
    if _INT_RE.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if _finite(number) else text


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _lookup(obj: dict[str, Any], key: str) -> Any:
    """``obj[key]``, else a dotted path into nested objects (``"page.item"``)."""
    if key in obj:
        return obj[key]
    node: Any = obj
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _epoch_ms(number: int | float, unit: str) -> int:
    factor = TS_UNITS[unit]
    if isinstance(number, int):
        return number * factor if factor > 0 else number // -factor
    return round(number * factor) if factor > 0 else round(number / -factor)


def _auto_unit(number: float) -> str:
    size = abs(number)
    if size < 1e11:
        return "s"
    if size < 1e14:
        return "ms"
    return "us" if size < 1e17 else "ns"


def _datetime_ms(text: str, fmt: str) -> int | str:
    try:
        dt = datetime.strptime(text, fmt) if "%" in fmt else datetime.fromisoformat(text)
    except ValueError:
        want = f"the pattern {fmt!r}" if "%" in fmt else "ISO 8601 (e.g. 2025-01-06T08:15:02Z)"
        return f"{text!r} is not a time in {want}; set --ts-format"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def _timestamp(value: Any, fmt: str) -> int | str:
    """Epoch milliseconds of a timestamp value, or a sentence saying why it is not one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "the timestamp is empty"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return f"{value!r} is not a timestamp"
    number = _number(value)
    if isinstance(number, int | float):
        if fmt == "iso" or "%" in fmt:
            if "%" in fmt:  # digits-only patterns such as %Y%m%d
                return _datetime_ms(str(value).strip(), fmt)
            return f"{value!r} is a number, not ISO 8601 (--ts-format iso); use --ts-format auto, s or ms"
        return _epoch_ms(number, _auto_unit(number) if fmt == "auto" else fmt)
    if fmt in TS_UNITS:
        return f"{value!r} is not a number of epoch {fmt} (--ts-format {fmt})"
    return _datetime_ms(str(value).strip(), "iso" if fmt == "auto" else fmt)


def _date_ordinal(date: Any, ordinal: Any, fmt: str, factor: int) -> int | str:
    """Midnight (or the time) of a date, plus an ordinal count of --ordinal-unit (ms by default)."""
    if date is None or (isinstance(date, str) and not date.strip()):
        return "the date is empty"
    text = str(date).strip()
    if "%" not in fmt and _INT_RE.fullmatch(text):
        return f"{text!r} is a number, not an ISO date; for dates like 20250106 pass --ts-format %Y%m%d"
    base = _datetime_ms(text, fmt if "%" in fmt else "iso")
    if isinstance(base, str) or ordinal is None:
        return base
    count = _number(ordinal)
    if count is None:
        return "the ordinal is empty"
    if isinstance(count, str) or count < 0:
        return f"ordinal {ordinal!r} is not a number >= 0"
    return base + round(count * factor)
