"""Write a generated retail session log, in a layout unlike MovieLens, for `liverec replay` and its docs.

Layout: a header, ';' as delimiter, ISO 8601 timestamps with milliseconds, session ids and no user ids,
string item ids, RetailRocket-like event names (pageview, addtocart, transaction) and a decimal price.
Rows are written session by session, so the file is *not* in timestamp order (replay sorts it). Each
session leans to one category (80% of its items), so a learner has something to find. Same seed, same
file. The data is generated: no public dataset is copied (their licences forbid redistribution).

    .cache/venv/bin/python benchmarks/make_retail_log.py /tmp/retail.csv --rows 10000 --bad-every 2000

A path ending in .gz is gzip-compressed. ``--bad-every N`` makes every N-th row malformed in one of
three ways (a timestamp that is not one, an empty item id, a missing field), to show the report.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

CATEGORIES = ("books", "music", "garden", "sports", "toys", "kitchen", "games", "travel")
ITEMS_PER_CATEGORY = 125
HEADER = ("sessionId", "timestamp", "event", "itemId", "categoryId", "price")


def rows(n: int, *, seed: int, start: datetime, days: float, bad_every: int = 0) -> list[tuple[str, ...]]:
    """``n`` data rows (header excluded), session by session."""
    rng = random.Random(seed)
    prices = {(c, i): round(rng.uniform(2, 200), 2) for c in CATEGORIES for i in range(ITEMS_PER_CATEGORY)}
    out: list[tuple[str, ...]] = []
    session = 0
    span_ms = int(days * 86_400_000)
    while len(out) < n:
        session += 1
        sid = f"S{seed:02d}-{session:06d}"
        favourite = rng.choice(CATEGORIES)
        t = start + timedelta(milliseconds=rng.randrange(span_ms))
        in_cart: list[tuple[str, int]] = []
        for _ in range(rng.randint(1, 14)):
            if len(out) >= n:
                break
            t += timedelta(milliseconds=rng.randrange(3_000, 150_000))
            r = rng.random()
            if in_cart and r < 0.06:
                cat, item = in_cart.pop(rng.randrange(len(in_cart)))
                event = "transaction"
            else:
                cat = favourite if rng.random() < 0.8 else rng.choice(CATEGORIES)
                item = rng.randrange(ITEMS_PER_CATEGORY)
                event = "addtocart" if r < 0.16 else "pageview"
                if event == "addtocart":
                    in_cart.append((cat, item))
            stamp = t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            row = (sid, stamp, event, f"sku-{cat[:3]}-{item:04d}", cat, f"{prices[cat, item]:.2f}")
            if bad_every and (len(out) + 1) % bad_every == 0:
                kind = (len(out) // bad_every) % 3
                row = ((sid, "yesterday", *row[2:]) if kind == 0 else
                       (*row[:3], "", *row[4:]) if kind == 1 else row[:4])
            out.append(row)
    return out


def write(path: Path, data: list[tuple[str, ...]]) -> None:
    """Header and rows, ';'-separated (no value here contains ';', so nothing needs quoting)."""
    text = "\n".join(";".join(r) for r in (HEADER, *data)) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="where to write the log (.gz: gzip); never inside the repository")
    parser.add_argument("--rows", type=int, default=10_000, help="data rows (default 10000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--start", default="2025-01-06T00:00:00+00:00", help="earliest session start, ISO 8601")
    parser.add_argument("--days", type=float, default=7.0, help="sessions start within this many days")
    parser.add_argument("--bad-every", type=int, default=0, help="every N-th row malformed (0: none)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.days <= 0 or args.bad_every < 0:
        parser.error("--rows must be >= 1, --days > 0 and --bad-every >= 0")
    start = datetime.fromisoformat(args.start)
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    data = rows(args.rows, seed=args.seed, start=start, days=args.days, bad_every=args.bad_every)
    write(args.path, data)
    sessions = len({r[0] for r in data})
    print(f"wrote {len(data)} rows of {sessions} sessions to {args.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
