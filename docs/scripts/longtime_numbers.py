"""Regenerate the measured numbers of docs/longtime.md: the resolution study (section 7) and the table of the
long-time examples (section 6).  Run from the repository root:

    python docs/scripts/longtime_numbers.py [--only study|runs] [-j 2]

It writes docs/generated/longtime_resolution.md and docs/generated/longtime_runs.md, which docs/longtime.md
includes: the numbers the page quotes are the numbers this script measured (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "generated"
#: (label, example, overrides) of the resolution study: the examples' settings, run past their first mergers.
#: On S^1 the grid sets the token count (K = 256 is the default); on S^2 the token count dominates the error, so
#: the refinement is the hand-off's oversampling at the default L = 32 (oversample 2 is the default), and the
#: reference a finer density phase with still more tokens
CIRCLE = [(f"K = {K}" + (" (default)" if K == 256 else ""), "longtime_circle", ["time.t_end=3000", f"grid.modes={K}"])
          for K in (128, 256, 512, 1024, 2048)]
CIRCLE_ORDER, CIRCLE_REF = (1, 2, 3), 4
SPHERE = [("L = 24, oversample 1", "longtime_sphere", ["time.t_end=400", "grid.modes=24", "longtime.oversample=1"])] + \
         [(f"L = 32, oversample {o}" + (" (default)" if o == 2 else ""), "longtime_sphere",
           ["time.t_end=400", "grid.modes=32", f"longtime.oversample={o}"]) for o in (1, 2, 4)] + \
         [("L = 48, oversample 3", "longtime_sphere", ["time.t_end=400", "grid.modes=48", "longtime.oversample=3"])]
SPHERE_ORDER, SPHERE_REF = (1, 2, 3), 4
RUNS = ["longtime_circle", "longtime_sphere", "longtime_zonal", "longtime_usa"]


def _pin_threads() -> None:
    from meanfield.processes import die_with_parent

    die_with_parent()
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _solve(example: str, sets: list[str]) -> dict:
    """One run in memory: its hand-off, mergers, final clusters, steps and wall time."""
    import meanfield
    from meanfield import io
    from meanfield.simulation import solve
    from meanfield.simulation.resolution import merger_times
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        start = time.perf_counter()
        h = solve(meanfield.load_config(meanfield.example(example), sets))
        wall = time.perf_counter() - start
    a, d = h["attrs"], h["diagnostics"]
    last = h["cluster_mass"][-1]
    return {"handoff": float(a.get("handoff_time", math.nan)), "reason": str(a.get("handoff_reason", "")),
            "tokens": int(a.get("handoff_tokens", 0)), "departure": float(a.get("handoff_departure", math.nan)),
            "mergers": [(m["time"], m["clusters_before"], m["clusters_after"]) for m in io.cluster_mergers(h)],
            "merger_times": merger_times(h).tolist(),
            "final": np.sort(last[np.isfinite(last)])[::-1].tolist(), "clusters": int(d["n_clusters"][-1]),
            "accepted": int(a.get("token_steps_accepted", 0)), "rejected": int(a.get("token_steps_rejected", 0)),
            "merges": int(np.sum(np.isfinite(h["merges"]["time"]))) if "merges" in h else 0, "wall": wall,
            "dropped": int(a.get("handoff_dropped", 0)), "jump": float(a.get("handoff_energy_jump", math.nan)),
            "mass": float(np.max(np.abs(d["mass"] - 1))),
            "decrease": float(np.max(np.maximum(-np.diff(d["energy"]), 0) / np.abs(d["energy"][1:]))),
            "t_end": float(h["time"][-1])}


def _order(a: float, b: float, c: float) -> float:
    """Observed order from three grids refined by 2 (coarse a, b, fine c): log2 |a - b| / |b - c|."""
    return math.log2(abs(a - b) / abs(b - c)) if abs(b - c) > 0 and abs(a - b) > 0 else math.nan


def study_table(title: str, rows: list, results: list, mergers: int, ref: int, three: tuple) -> str:
    """The markdown table of one geometry's study: the first ``mergers`` cluster mergers (merge records of two
    whole clusters, ``resolution.merger_times``, in order), their times and relative difference to the run
    ``ref`` (the finest), and the observed order from the runs ``three`` (each refined by 2 over the last)."""
    times = [r["merger_times"][:mergers] for r in results]
    head = "| grid | tokens | hand-off (t, departure) | " + " | ".join(f"merger {i + 1}: t (vs finest)"
                                                                 for i in range(mergers)) + " | final masses |"
    out = [f"**{title}**", "", head, "|" + "---|" * (4 + mergers)]
    for (label, _, _), r, ts in zip(rows, results, times):
        cells = [(f"{x:.5g}" + (f" ({(x - times[ref][i]) / times[ref][i]:+.2%})" if r is not results[ref]
                                and i < len(times[ref]) else "")) if i < len(ts) else "-" for i, x in
                 enumerate(list(ts) + [math.nan] * (mergers - len(ts)))]
        out.append(f"| {label} | {r['tokens']} | {r['handoff']:.4g}, {r['departure']:.2f} | " + " | ".join(cells)
                   + " | " + ", ".join(f"{m:.4f}" for m in r["final"][:4]) + " |")
    seq = [times[k] for k in three]
    orders = [_order(*(ts[i] for ts in seq)) for i in range(mergers) if all(i < len(ts) for ts in seq)]
    out += ["", "Observed order of the merger times from " + "; ".join(rows[k][0] for k in three) + " (log2 of the "
            "ratio of successive differences): " + ", ".join(f"{p:.2f}" for p in orders) + "."]
    return "\n".join(out)


def runs_table(results: dict) -> str:
    """The table of the four long-time examples, as `meanfield run` runs them (one thread)."""
    out = ["| example | hand-off | tokens (nodes dropped) | cluster mergers: t (count) | at the end | token steps "
           "accepted / rejected | merges | max \\|mass - 1\\| | energy: largest relative decrease, jump at the "
           "hand-off | wall |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        mergers = ", ".join(f"{t:.3g} ({a}->{b})" if k in (0, len(r["mergers"]) - 1) or len(r["mergers"]) <= 6
                            else f"{t:.3g}" for k, (t, a, b) in enumerate(r["mergers"]))
        out.append(f"| `{name}` | t = {r['handoff']:.4g} ({r['reason']}) | {r['tokens']} ({r['dropped']}) | "
                   f"{mergers or '-'} | {r['clusters']} cluster{'s' if r['clusters'] != 1 else ''} | "
                   f"{r['accepted']} / {r['rejected']} | {r['merges']} | {r['mass']:.1e} | {r['decrease']:.1e}, "
                   f"{r['jump']:.1e} | {r['wall']:.1f} s |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("study", "runs"))
    p.add_argument("-j", type=int, default=2)
    p.add_argument("-o", "--out", default=str(OUT), help="folder of the generated tables (default docs/generated)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    with ProcessPoolExecutor(args.j, initializer=_pin_threads) as pool:
        if args.only in (None, "study"):
            circle = list(pool.map(_solve, *zip(*[(e, s) for _, e, s in CIRCLE])))
            sphere = list(pool.map(_solve, *zip(*[(e, s) for _, e, s in SPHERE])))
            text = ("<!-- written by docs/scripts/longtime_numbers.py: do not edit -->\n\n"
                    + study_table("S^1 (the longtime_circle example to t = 3000)", CIRCLE, circle, 3, CIRCLE_REF,
                                  CIRCLE_ORDER) + "\n\n"
                    + study_table("S^2 (the longtime_sphere example to t = 400)", SPHERE, sphere, 4, SPHERE_REF,
                                  SPHERE_ORDER) + "\n")
            (out / "longtime_resolution.md").write_text(text)
        if args.only in (None, "runs"):
            runs = dict(zip(RUNS, pool.map(_solve, RUNS, [[] for _ in RUNS])))
            (out / "longtime_runs.md").write_text("<!-- written by docs/scripts/longtime_numbers.py: do not edit "
                                                  "-->\n\n" + runs_table(runs) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
