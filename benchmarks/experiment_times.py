"""The lessons' experiments timed before and after a change, side by side in one run.

    KDLAB_DATA=../shared/datasets python benchmarks/experiment_times.py --before /tmp/before [--repeats 1]

``--before`` is a checkout of the code to compare against (``git worktree add
/tmp/before COMMIT``); "after" is this checkout. Each experiment runs as
``kdlab experiment NAME --seed S`` from each checkout in turn (the order
alternates between repeats), on the full data, with one teacher cache shared by
both sides and filled before any timing, so neither side trains a teacher
while timed. For each run it records the wall time of the whole command
(Python and torch start-up included) and the experiment's own total from its
JSON (``seconds.total``; ``seconds`` or ``total_seconds`` in older JSON), and
whether the two sides report the same test-error counts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("omitted-digit", "few-labels", "temperature-vs-width", "soft-targets", "feature-kd", "compress")
# The teacher each experiment loads, (recipe, data set), trained once, untimed, into the shared cache.
TEACHERS = {name: ("cnn-teacher", "mnist") for name in EXPERIMENTS}
TEACHERS["feature-kd"] = ("cnn-teacher-long", "fashion-mnist")


FAST = "0"   # "1" with --fast: a smoke test of this script on small slices


def side_env(root: Path, cache: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(root), "XDG_CACHE_HOME": str(cache), "KDLAB_FAST": FAST}


def check_side(root: Path, cache: Path) -> None:
    """The side's own kdlab is the one that runs (not an installed copy)."""
    out = subprocess.run([sys.executable, "-c", "import kdlab; print(kdlab.__file__)"], cwd=root,
                         env=side_env(root, cache), capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"{root}: runs {out}, not its own kdlab")


def fill_cache(cache: Path, seed: int, experiments) -> None:
    """Train the teachers ``experiments`` load, and only those, into ``cache``."""
    needed = sorted({TEACHERS[name] for name in experiments if name in TEACHERS})
    code = ("import sys; from kdlab import zoo; from kdlab.data import load\n"
            f"for recipe, dataset in {needed!r}:\n"
            f"    zoo.pretrained(recipe, load(dataset), seed={seed}, progress=False)\n")
    subprocess.run([sys.executable, "-c", code], cwd=HERE, env=side_env(HERE, cache), check=True)


def own_total(result: dict) -> float:
    seconds = result.get("seconds")
    if isinstance(seconds, dict) and "total" in seconds:
        return seconds["total"]
    return result["total_seconds"] if "total_seconds" in result else seconds


def test_errors(value, path: str = "", inside: bool = False) -> dict:
    """Every integer under a key that names errors, by its path (the layout may differ between sides)."""
    found = {}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found.update(test_errors(v, f"{path}{k}.", inside or "errors" in str(k)))
    if inside and isinstance(value, int) and not isinstance(value, bool):
        found[path.rstrip(".")] = value
    return found


def run_once(root: Path, cache: Path, name: str, seed: int, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kdlab.cli", "experiment", name, "--seed", str(seed), "--json",
                           str(out), "--no-progress"], cwd=root, env=side_env(root, cache),
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed in {root}:\n{proc.stderr[-3000:]}")
    return wall, json.loads(out.read_text())


def table(rows: list, repeats: int) -> str:
    head = ("experiment", "before wall", "after wall", "after/before", "before own", "after own", "same errors")
    lines = [(r["experiment"], f"{r['before_wall']:.1f} s", f"{r['after_wall']:.1f} s",
              f"{r['after_wall'] / r['before_wall']:.2f}", f"{r['before_own']:.1f} s", f"{r['after_own']:.1f} s",
              "yes" if r["same_test_errors"] else "NO") for r in rows]
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    out = [f"median of {repeats}; wall: the whole command; own: the experiment's JSON total (seconds.total)"]
    for i, line in enumerate([head, *lines]):
        out.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths))))
        if i == 0:
            out.append("-" * len(out[-1]))
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before the change")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), metavar="NAME")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for both sides (default: torch's own choice)")
    parser.add_argument("--cache", type=Path, default=None, help="the shared teacher cache (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the times, after each experiment; the experiments it holds already "
                             "are not run again (delete it to start over)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep each side's last result as DIR/SIDE/NAME-sSEED.json")
    parser.add_argument("--fast", action="store_true", help="KDLAB_FAST=1: check that the script runs, in seconds")
    args = parser.parse_args(argv)
    global FAST
    FAST = "1" if args.fast else "0"
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sides = {"before": args.before.resolve(), "after": HERE}
    done = json.loads(args.json.read_text())["rows"] if args.json and args.json.exists() else []
    rows = [r for r in done if r["experiment"] in args.experiments]
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "cache"
        for root in sides.values():
            check_side(root, cache)
        fill_cache(cache, args.seed, args.experiments)
        print(f"torch threads: {args.threads or 'default'}", flush=True)
        for i, name in enumerate(args.experiments):
            if any(r["experiment"] == name for r in rows):
                continue
            times = {side: {"wall": [], "own": []} for side in sides}
            errors, load = {}, [os.getloadavg()[0]]
            for r in range(args.repeats):
                # Alternate which side goes first, so a drift in the machine's load hits both alike.
                for side in (("before", "after") if (i + r) % 2 == 0 else ("after", "before")):
                    out = (args.keep / side if args.keep else Path(tmp)) / f"{name}-s{args.seed}.json"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    wall, result = run_once(sides[side], cache, name, args.seed, out)
                    times[side]["wall"].append(wall)
                    times[side]["own"].append(own_total(result))
                    errors[side] = test_errors(result)
                    load.append(os.getloadavg()[0])
                    print(f"  {name:22s} {side:6s} wall {wall:7.1f} s, own total {own_total(result):7.1f} s, "
                          f"load average {load[-1]:.2f}", flush=True)
            # Compared as sets of counts: the new header repeats the teacher's errors that old layouts kept elsewhere.
            values = {side: set(errors[side].values()) for side in sides}
            rows.append({"experiment": name, **{f"{side}_{kind}": statistics.median(times[side][kind])
                                                for side in sides for kind in ("wall", "own")},
                         "times": times, "load_average": load,
                         "same_test_errors": values["before"] == values["after"], "test_errors": errors})
            if args.json:
                args.json.write_text(json.dumps({"before": str(sides["before"]), "repeats": args.repeats,
                                                 "threads": args.threads, "rows": rows}, indent=2) + "\n")
    print("\n" + table(rows, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
