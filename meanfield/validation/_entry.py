"""What every validation script does: run its catalogue cases (``meanfield.validate``) into a report directory
and print their numbers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(doc: str, name: str, cases: tuple[str, ...], argv=None) -> int:
    """Run ``cases`` (full size) into -o DIR (default validation-out): DIR/report.md, DIR/results.json and a figure
    per case, as ``meanfield validate --case ...`` writes them, plus DIR/NAME.json with each case's numbers, which
    are also printed.  Exit status 1 if a case fails."""
    from .. import validate

    p = argparse.ArgumentParser(prog=f"python -m meanfield.validation.{name}", description=doc.splitlines()[0])
    p.add_argument("-o", "--out", default="validation-out", help="report directory (default: %(default)s)")
    out = Path(p.parse_args(argv).out)
    outcomes = validate.run(list(cases), out=out)
    numbers = {c: {"measured": o.measured, "predicted": o.predicted, "verdict": o.verdict, **o.numbers}
               for c, o in outcomes.items()}
    text = json.dumps(numbers, indent=2, default=str)
    validate.write_text(out / f"{name}.json", text + "\n", locked=False)
    print(text)
    return 1 if validate.failed(outcomes) else 0
