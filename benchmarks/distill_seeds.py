"""`kdlab distill` over several seeds: test errors per model (mean, min, max) and whole-run seconds.

    KDLAB_DATA=../shared/datasets python benchmarks/distill_seeds.py --preset quick --seeds 0 1 2 \\
        [--out docs/results]

Each seed is exactly `kdlab distill --preset P --seed S` (same function); with ``--out``
each run's JSON is kept as ``distill-P-mnist-sS.json`` and the summary as ``distill-P-seeds.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kdlab.jobs import PRESETS, results_table, run_distill, run_seconds, save_results

ROLES = {"teacher": "teacher", "student_scratch": "student alone", "student_distilled": "student distilled"}
# Hinton, Vinyals & Dean (2015), MNIST test errors: 1200-1200 dropout teacher, 800-800 alone, 800-800 distilled.
PAPER = {"hinton": {"teacher": 67, "student_scratch": 146, "student_distilled": 74}}


def summarize(runs: list[dict]) -> dict:
    out = {}
    for role in ROLES:
        errors = [r[role]["test_errors"] for r in runs]
        out[role] = {"arch": runs[0][role]["arch"], "test_errors": errors, "mean": statistics.mean(errors),
                     "sd": statistics.stdev(errors) if len(errors) > 1 else 0.0,
                     "min": min(errors), "max": max(errors)}
    seconds = [run_seconds(r) for r in runs]   # seconds.total; total_seconds in runs written before it
    out["total_seconds"] = {"each": seconds, "mean": statistics.mean(seconds), "max": max(seconds)}
    out["seeds"] = [r["seed"] for r in runs]
    return out


def summary_table(preset: str, s: dict) -> str:
    paper = PAPER.get(preset)
    lines = [f"kdlab distill --preset {preset}, seeds {' '.join(map(str, s['seeds']))}: test errors",
             f"{'model':<18} {'architecture':<22} {'per seed':<18} {'mean':>6} {'sd':>5}  {'min-max':>8}"
             + ("  paper" if paper else "")]
    for role, label in ROLES.items():
        r = s[role]
        lines.append(f"{label:<18} {r['arch']:<22} {' '.join(map(str, r['test_errors'])):<18} "
                     f"{r['mean']:6.1f} {r['sd']:5.1f}  {r['min']:>3}-{r['max']:<4}"
                     + (f"  {paper[role]:>5}" if paper else ""))
    t = s["total_seconds"]
    each = " ".join(f"{x:.0f}" for x in t["each"])
    lines.append(f"whole run: {each} s (mean {t['mean']:.0f} s, max {t['max']:.0f} s)")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, help="folder for the runs' JSON and the summary")
    args = parser.parse_args(argv)
    runs = []
    for seed in args.seeds:
        result = run_distill(args.preset, seed=seed, progress=False)
        print(results_table(result), "\n", flush=True)
        if args.out:
            save_results(result, args.out / f"distill-{args.preset}-mnist-s{seed}.json", None)
        runs.append(result)
    s = summarize(runs)
    print(summary_table(args.preset, s))
    if args.out:
        (args.out / f"distill-{args.preset}-seeds.json").write_text(json.dumps(s, indent=2) + "\n")


if __name__ == "__main__":
    main()
