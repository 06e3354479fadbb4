"""``kdlab grade`` on real part-1 hand-ins, side by side with plain ``nbgrader autograde``.

The class: the solutions handed in (full marks), the released notebooks (0),
one student per bug of docs/course.md (injected into every part-1 exercise it
applies to; only the notebooks touched are handed in), and a student whose
correct answers print to stderr and warn (full marks). ``kdlab grade`` with 2
workers and plain sequential ``nbgrader autograde`` (tests/nbgrader_harness.py)
grade the same files; every grade of every notebook must be the same.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

h = pytest.importorskip("nbgrader_harness")
answers = pytest.importorskip("part1_answers")

from kdlab.grading import Options, grade_class  # noqa: E402

ASSIGNMENT = "part1_foundations"
SOLUTIONS = h.REPO / "solutions" / ASSIGNMENT
if not SOLUTIONS.is_dir():  # pragma: no cover - part 1 not there yet
    pytest.skip("solutions/part1_foundations is not in this checkout", allow_module_level=True)
LESSONS = sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))


def solution(lesson: str):
    return h.load(SOLUTIONS / f"{lesson}.ipynb")


def bug_answers(number: int) -> dict:
    """``{lesson: notebook}``: the solutions with bug ``number`` of docs/course.md in every exercise it applies to."""
    out = {}
    for exercise, variants in answers.WRONG.items():
        for label, source in variants.items():
            if answers.course_bug(label) == number:
                lesson = answers.LESSON[exercise]
                h.set_source(out.setdefault(lesson, solution(lesson)), exercise, source)
    return out


def noisy() -> dict:
    out = {lesson: solution(lesson) for lesson in LESSONS}
    for exercise, lesson in answers.LESSON.items():
        h.set_source(out[lesson], exercise, answers.noisy(h.cell(solution(lesson), exercise).source, exercise))
    return out


def hand_ins(released_dir: Path) -> dict:
    """``{student: {lesson: notebook node or path}}``."""
    klass = {"solution": {lesson: solution(lesson) for lesson in LESSONS},
             "released": {lesson: released_dir / f"{lesson}.ipynb" for lesson in LESSONS},
             "noisy": noisy()}
    for number in range(1, 11):
        klass[f"bug{number:02d}"] = bug_answers(number)
    return klass


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(kdlab grade's CSV rows, its per-grade scores, plain nbgrader's per-grade scores)."""
    root = tmp_path_factory.mktemp("part1_class")
    env = h.grading_env(root / "cache", OMP_NUM_THREADS="1")
    course = h.make_course(root / "plain", [ASSIGNMENT], env=env)
    klass = hand_ins(course / "notebooks" / ASSIGNMENT)
    for student, notebooks in klass.items():
        h.submit(course, student, ASSIGNMENT, notebooks)   # plain nbgrader's submitted/ ...
    seconds = h.autograde(course, ASSIGNMENT, env=env)
    plain = h.scores(course, ASSIGNMENT)

    out = root / "out"   # ... is exactly the class folder kdlab grade reads
    summary = grade_class(course / "submitted", out, course=h.REPO,
                          options=Options(workers=2, progress=False, timeout=300))
    print(f"\nplain nbgrader autograde: {seconds:.1f} s; kdlab grade --workers 2: {summary.seconds:.1f} s\n"
          + summary.text())
    with open(out / "grades.csv", newline="") as f:
        rows = {(r["student"], r["notebook"]): r for r in csv.DictReader(f)}
    ours = h.scores(out, ASSIGNMENT)
    return klass, rows, ours, plain


def test_scores_are_identical_to_plain_nbgrader(both):
    klass, _, ours, plain = both
    assert set(plain) == set(klass)
    assert ours == plain   # every grade of every notebook, those not handed in (0) included


def test_solutions_get_full_marks_and_released_notebooks_zero(both):
    _, rows, _, _ = both
    for lesson in LESSONS:
        sol, rel = rows[("solution", lesson)], rows[("released", lesson)]
        assert sol["status"] == "ok" and sol["score"] == sol["max_score"] != "0", sol
        assert rel["status"] == "ok" and rel["score"] == "0", rel
        assert rows[("noisy", lesson)]["score"] == sol["max_score"], rows[("noisy", lesson)]


@pytest.mark.parametrize("number", range(1, 11))
def test_each_course_bug_loses_exactly_its_exercises_points(both, number):
    klass, rows, ours, _ = both
    student = f"bug{number:02d}"
    injected = {e for e, v in answers.WRONG.items() for label in v if answers.course_bug(label) == number}
    assert injected
    for lesson in klass[student]:
        grades = ours[student][lesson]
        for test_id, (score, max_score) in grades.items():
            exercise = test_id.removeprefix("test_")
            assert score == (0 if exercise in injected else max_score), (lesson, test_id, score)
        row = rows[(student, lesson)]
        assert row["status"] == "ok" and float(row["score"]) < float(row["max_score"])
    for lesson in set(LESSONS) - set(klass[student]):
        assert rows[(student, lesson)]["status"] == "missing"
