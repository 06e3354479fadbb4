"""``kdlab grade`` against plain, sequential nbgrader on the same class, side by side in one run.

    python benchmarks/grade_vs_nbgrader.py                  # 15 students x 3 part-1 notebooks, feedback on
    python benchmarks/grade_vs_nbgrader.py --no-feedback    # autograde only, on both sides
    python benchmarks/grade_vs_nbgrader.py --students 6 --repeat 2

The class is built from part 1 (solutions/part1_foundations): students cycle
through the solutions, the released notebooks, each KD bug of docs/course.md
injected into every exercise it applies to, and correct answers that print to
stderr.
Every student hands in all three notebooks, so every hand-in is valid.

Plain nbgrader does what an instructor runs, in one scratch course:
``nbgrader generate_assignment``, ``nbgrader autograde`` (all students, one
after the other), and, with feedback, ``nbgrader generate_feedback``.
``kdlab grade SUBMITTED --out OUT --workers N`` does the same work (it builds
its own gradebook from solutions/ too) on the very same files. Both run with
OMP_NUM_THREADS=1 unless --plain-threads says otherwise, so the speedup is
the parallel grading's and not torch's thread settings'. The scores of every
grade in both gradebooks must be identical; the script fails otherwise.

It prints the seconds of each side, the speedup, and the load average before
and after (a time measured while other work runs is an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

ASSIGNMENT = "part1_foundations"


def build_class(course: Path, students: int) -> list:
    """Hand-ins under ``course/submitted``: STUDENT/part1_foundations/LESSON.ipynb, all three lessons each."""
    import nbgrader_harness as h
    import part1_answers as answers

    from kdlab import course as manifest

    lessons = h.lesson_names(ASSIGNMENT)      # the course manifest's (kdlab/course.json)

    def solution(lesson):
        return h.load(course / "solutions" / ASSIGNMENT / f"{lesson}.ipynb")

    def with_bug(number):
        out = {lesson: solution(lesson) for lesson in lessons}
        for exercise, variants in answers.WRONG.items():
            for label, source in variants.items():
                if answers.course_bug(label) == number:
                    h.set_source(out[answers.LESSON[exercise]], exercise, source)
        return out

    def noisy():
        out = {lesson: solution(lesson) for lesson in lessons}
        for exercise, lesson in answers.LESSON.items():
            h.set_source(out[lesson], exercise, answers.noisy(h.cell(solution(lesson), exercise).source, exercise))
        return out

    variants = [("solution", lambda: {lesson: solution(lesson) for lesson in lessons}),
                ("released", lambda: {lesson: course / "notebooks" / ASSIGNMENT / f"{lesson}.ipynb"
                                      for lesson in lessons}),
                ("noisy", noisy)]
    variants += [(f"bug{b.number:02d}", lambda n=b.number: with_bug(n)) for b in manifest.bugs()]
    names = []
    for i in range(students):
        kind, make = variants[i % len(variants)]
        name = f"s{i:02d}_{kind}"
        h.submit(course, name, ASSIGNMENT, make())
        names.append(name)
    return names


def run(cmd, cwd, env) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")
    return seconds


def plain_nbgrader(root: Path, submitted: Path, env: dict, feedback: bool) -> dict:
    course = root / "plain"
    course.mkdir()
    shutil.copy2(REPO / "nbgrader_config.py", course)
    shutil.copytree(REPO / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    shutil.copytree(submitted, course / "submitted")
    nb = [sys.executable, "-m", "nbgrader"]
    times = {"generate_assignment": run(nb + ["generate_assignment", ASSIGNMENT, "--force"], course, env),
             "autograde": run(nb + ["autograde", ASSIGNMENT, "--force"], course, env)}
    if feedback:
        times["generate_feedback"] = run(nb + ["generate_feedback", ASSIGNMENT, "--force"], course, env)
    return {"seconds": sum(times.values()), "steps": times, "gradebook": course / "gradebook.db"}


def kdlab_grade(root: Path, submitted: Path, env: dict, workers: int, feedback: bool, tag: str,
                sandbox: bool = True) -> dict:
    out = root / f"kdlab-out-{tag}"
    extra = ([] if feedback else ["--no-feedback"]) + ([] if sandbox else ["--no-sandbox"])
    cmd = [sys.executable, "-m", "kdlab.cli", "grade", str(submitted), "--out", str(out), "--workers", str(workers),
           "--course", str(REPO), "--no-progress"] + extra
    seconds = run(cmd, root, env)
    jobs = []
    for p in (out / ".kdlab-grade" / "results").rglob("*.json"):
        timings = json.loads(p.read_text()).get("timings") or {}
        if "sandbox" in timings and "prepare" in timings:
            jobs.append(timings["sandbox"] - timings["prepare"])
    return {"seconds": seconds, "gradebook": out / "gradebook.db", "csv": out / "grades.csv",
            "sandbox_seconds": jobs,
            "command": "kdlab grade SUBMITTED --out OUT --workers %d --no-progress%s" % (workers, "".join(
                " " + e for e in extra))}


def container_start(repeats: int = 5) -> tuple[float, float]:
    """Median seconds of ``python -I -c pass`` in a bubblewrap sandbox as kdlab grade builds it, and without."""
    from kdlab.grading import bwrap

    job = Path(tempfile.mkdtemp(prefix="bwrap-cost-"))
    for d in ("in", "work", "out"):
        (job / d).mkdir()
    lib = bwrap.build_lib(job / "lib")
    boxed = bwrap.command(job, lib)
    boxed = boxed[:boxed.index("--") + 1] + [os.path.realpath(sys.executable), "-I", "-c", "pass"]
    plain = [os.path.realpath(sys.executable), "-I", "-c", "pass"]
    times = {"boxed": [], "plain": []}
    for _ in range(repeats):
        for name, cmd in (("boxed", boxed), ("plain", plain)):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
    shutil.rmtree(job, ignore_errors=True)
    return sorted(times["boxed"])[repeats // 2], sorted(times["plain"])[repeats // 2]


def grades(db: Path) -> dict:
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{db}") as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            for nb in sub.notebooks:
                for g in nb.grades:
                    out[(sub.student.id, nb.name, g.name)] = (g.score, g.max_score)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=15)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="pairs of runs; the order alternates")
    p.add_argument("--no-feedback", action="store_true", help="autograde only, on both sides")
    p.add_argument("--plain-threads", default="1",
                   help="OMP_NUM_THREADS for plain nbgrader's kernels ('' leaves torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--sandbox-cost", action="store_true",
                   help="also run kdlab grade --no-sandbox beside it, and time the container's start alone")
    args = p.parse_args(argv)
    feedback = not args.no_feedback

    root = Path(tempfile.mkdtemp(prefix="grade-bench-"))
    base_env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
    base_env["XDG_CACHE_HOME"] = str(root / "cache")
    kd_env = {**base_env, "OMP_NUM_THREADS": "1"}
    plain_env = dict(base_env)
    if args.plain_threads:
        plain_env["OMP_NUM_THREADS"] = args.plain_threads
    else:
        plain_env.pop("OMP_NUM_THREADS", None)
    try:
        import nbgrader_harness as h

        build = root / "build"
        h.make_course(build, [ASSIGNMENT], env={**plain_env, "OMP_NUM_THREADS": "1"})
        students = build_class(build, args.students)
        submitted = build / "submitted"
        n_notebooks = sum(1 for _ in submitted.glob("*/*/*.ipynb"))
        print(f"class: {len(students)} students, {n_notebooks} notebooks of {ASSIGNMENT}; "
              f"{os.cpu_count()} CPUs; feedback {'on' if feedback else 'off'}")

        results = []
        for i in range(args.repeat):
            load_before = os.getloadavg()
            order = ["plain", "kdlab"] if i % 2 == 0 else ["kdlab", "plain"]
            if args.sandbox_cost:
                order.append("unsandboxed")
            pair = {}
            for side in order:
                sub_root = root / f"run{i}-{side}"
                sub_root.mkdir()
                if side == "plain":
                    pair[side] = plain_nbgrader(sub_root, submitted, plain_env, feedback)
                else:
                    pair[side] = kdlab_grade(sub_root, submitted, kd_env, args.workers, feedback, str(i),
                                             sandbox=side == "kdlab")
            load_after = os.getloadavg()
            plain_grades, kd_grades = grades(pair["plain"]["gradebook"]), grades(pair["kdlab"]["gradebook"])
            if plain_grades != kd_grades:
                diff = sorted(k for k in set(plain_grades) | set(kd_grades) if plain_grades.get(k) != kd_grades.get(k))
                raise SystemExit(f"scores differ on {len(diff)} grades, e.g. {diff[:5]}")
            speedup = pair["plain"]["seconds"] / pair["kdlab"]["seconds"]
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in pair["plain"]["steps"].items())
            print(f"run {i + 1} ({' then '.join(order)}): plain nbgrader {pair['plain']['seconds']:.1f} s ({steps}); "
                  f"kdlab grade --workers {args.workers} {pair['kdlab']['seconds']:.1f} s; "
                  f"speedup {speedup:.2f}x; identical scores on {len(kd_grades)} grades; "
                  f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
            if "unsandboxed" in pair:
                boxed, bare = pair["kdlab"]["sandbox_seconds"], pair["unsandboxed"]["sandbox_seconds"]
                mean = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
                print(f"  the sandbox's cost: kdlab grade --no-sandbox {pair['unsandboxed']['seconds']:.1f} s in all; "
                      f"running a hand-in's cells and probes took {mean(boxed):.2f} s per notebook in bubblewrap, "
                      f"{mean(bare):.2f} s without (+{mean(boxed) - mean(bare):.2f} s per hand-in)")
            results.append({"plain_seconds": pair["plain"]["seconds"], "plain_steps": pair["plain"]["steps"],
                            "kdlab_seconds": pair["kdlab"]["seconds"], "speedup": speedup,
                            "grades_compared": len(kd_grades), "load_before": load_before, "load_after": load_after,
                            "order": order})
        if args.sandbox_cost:
            boxed, plain = container_start()
            print(f"the container alone: `python -I -c pass` takes {boxed * 1000:.0f} ms in bubblewrap, "
                  f"{plain * 1000:.0f} ms without (+{(boxed - plain) * 1000:.0f} ms per hand-in; median of 5)")
        best = max(r["speedup"] for r in results)
        print(f"speedup of kdlab grade --workers {args.workers} over sequential nbgrader: "
              + ", ".join(f"{r['speedup']:.2f}x" for r in results) + f" (best {best:.2f}x)")
        print(f"kdlab command: {pair['kdlab']['command']}")
        if args.json:
            args.json.write_text(json.dumps({"students": len(students), "notebooks": n_notebooks,
                                             "workers": args.workers, "feedback": feedback, "runs": results},
                                            indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
