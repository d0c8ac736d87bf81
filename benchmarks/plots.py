"""Redraw the PNG beside every result JSON in benchmarks/results/ (or beside the JSON files given).

    .cache/venv/bin/python benchmarks/plots.py                       # every known kind of result
    .cache/venv/bin/python benchmarks/plots.py benchmarks/results/latency.json

The drawing is `pipeline/plots.py` (the scripts call it after writing their JSON, and so does
`liverec eval-pipeline --json`); this only walks the files. Exit 1 when a file could not be drawn.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.plots import MissingData, plot_for, plot_result

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    given = [Path(a) for a in argv]
    paths = given or sorted(p for p in RESULTS.glob("*.json") if plot_for(p) is not None)
    failed = 0
    for path in paths:
        try:
            print(f"{plot_result(path)}  ({path.with_suffix('.png').stat().st_size / 1000:,.0f} KB)")
        except MissingData as exc:
            print(f"{path}: skipped: {exc}", file=sys.stderr)
            failed += bool(given)  # asked for by name: a failure; found by the walk: an older result
        except (ValueError, KeyError, OSError) as exc:
            print(f"{path}: no plot: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
