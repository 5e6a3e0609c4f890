"""Write the measured numbers of docs/validation.md from a full report: the table of every case's verdict,
measured and predicted numbers, criterion and time, and each case's measurements (its section of the report),
as `meanfield validate` found them.

    meanfield validate -j 2 -o REPORT
    python docs/scripts/validation_numbers.py REPORT
        # -> docs/generated/validation_results.md, docs/generated/validation_measured.md

A quick report (`--quick`) or one that lacks a case of the catalogue is refused: the docs quote the full
catalogue.  docs/validation.md includes both files and its prose quotes no measured number of its own: what
the page says was measured is the report's and cannot drift.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "generated"
HEAD = "<!-- written by docs/scripts/validation_numbers.py from a full report: do not edit -->\n\n"


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


def measured(results: dict) -> str:
    """Each case's measurements as the report gives them (its body), under the label ``measured-<case>`` that
    the page's derivations point to."""
    out = []
    for name, r in results.items():
        out += [f"(measured-{name})=", f"### `{name}`", "", f"*{r['claim']}* — **{r['verdict'].upper()}** "
                f"(measured {_fmt(r['measured'])}, predicted {_fmt(r['predicted'])}; {_fmt(r['tolerance'])}).", "",
                (r.get("body") or "").strip(), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", help="the report directory of a full `meanfield validate` run")
    p.add_argument("-o", "--out", default=str(OUT), help="the folder of the generated files (docs/generated)")
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
    out = Path(args.out)
    (out / "validation_results.md").write_text(HEAD + table(results) + "\n")
    (out / "validation_measured.md").write_text(HEAD + measured(results))
    print(f"wrote {out / 'validation_results.md'} and {out / 'validation_measured.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
