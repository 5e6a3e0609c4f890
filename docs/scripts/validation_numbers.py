"""Write the measured numbers of docs/validation.md from a full report: the table of every case's verdict,
measured and predicted numbers, criterion and time, as `meanfield validate` found them.

    meanfield validate -j 2 -o REPORT
    python docs/scripts/validation_numbers.py REPORT          # -> docs/generated/validation_results.md

A quick report (`--quick`) or one that lacks a case of the catalogue is refused: the docs quote the full
catalogue.  docs/validation.md includes the table, so its numbers are the report's and cannot drift.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "generated" / "validation_results.md"


def _fmt(x) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, (int, float)):
        return "nan" if isinstance(x, float) and math.isnan(x) else f"{x:.4g}"
    return str(x).replace("|", "\\|")


def table(results: dict) -> str:
    """The markdown table of a report's results (cases in the report's order)."""
    rows = ["| case | verdict | measured | predicted | criterion | time |", "|---|---|---|---|---|---|"]
    total = 0.0
    for name, r in results.items():
        crit = "; ".join([str(r["tolerance"])] + [f"{c} ({'yes' if ok else 'NO'})" for c, ok in r["conditions"].items()])
        rows.append(f"| `{name}` | {r['verdict'].upper()} | {_fmt(r['measured'])} | {_fmt(r['predicted'])} | "
                    f"{_fmt(crit)} | {r['seconds']:.0f} s |")
        total += float(r["seconds"])
    counts = {v: sum(r["verdict"] == v for r in results.values()) for v in ("pass", "fail", "error", "not run")}
    head = (f"{len(results)} cases: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n) +
            f"; {total / 60:.1f} minutes of case time (summed over the worker processes).")
    return head + "\n\n" + "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", help="the report directory of a full `meanfield validate` run")
    p.add_argument("-o", "--out", default=str(OUT))
    args = p.parse_args(argv)
    report = Path(args.report)
    first = (report / "report.md").read_text().splitlines()[0]
    if "(quick)" in first:
        raise SystemExit(f"{report}: a quick report; the docs quote the full catalogue")
    results = json.loads((report / "results.json").read_text())
    from meanfield.validate import CASES

    missing = sorted(set(CASES) - set(results))
    if missing:
        raise SystemExit(f"{report}: lacks the cases {', '.join(missing)}")
    Path(args.out).write_text("<!-- written by docs/scripts/validation_numbers.py from a full report: do not edit "
                              "-->\n\n" + table(results) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
