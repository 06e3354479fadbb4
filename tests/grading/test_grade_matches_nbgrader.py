"""``kdlab grade`` on real part-1 hand-ins, side by side with plain ``nbgrader autograde``.

The class (tests/autograded_class.py): the solutions handed in (full marks), the released notebooks (0), every
bug of docs/course.md (in one exercise each), correct answers that print to stderr and warn (full marks), answers that
only call kdlab's reference (0) and tampered test cells. Plain sequential ``nbgrader autograde`` grades it once
per test session (shared with tests/course/test_autograding.py); ``kdlab grade`` with 2 workers grades
the same ``submitted/`` folder here, and every grade of every notebook must be the same.
"""

from __future__ import annotations

import csv

import pytest

import answer_banks
import nbgrader_harness as h
from autograded_class import course_bug_placement, on_its_worker, wrong_hand_ins
from kdlab.grading import Options, grade_class

ASSIGNMENT = "part1_foundations"
LESSONS = answer_banks.bank(ASSIGNMENT).lessons
PLACED = course_bug_placement(answer_banks.bank(ASSIGNMENT))   # {bug: (student, exercise)}; every bug applies to part 1

pytestmark = on_its_worker(ASSIGNMENT)   # the worker that graded the class with nbgrader


@pytest.fixture(scope="module")
def both(graded_class, tmp_path_factory):
    """(the class, kdlab grade's CSV rows, its per-grade scores, plain nbgrader's per-grade scores)."""
    part1 = graded_class(ASSIGNMENT)
    out = tmp_path_factory.mktemp("kdlab_grade") / "out"
    summary = grade_class(part1.course / "submitted", out, course=h.REPO,
                          options=Options(workers=2, progress=False, timeout=300))
    print(f"\nplain nbgrader autograde: {part1.seconds:.1f} s; kdlab grade --workers 2: "
          f"{summary.seconds:.1f} s\n" + summary.text())
    with open(out / "grades.csv", newline="") as f:
        rows = {(r["student"], r["notebook"]): r for r in csv.DictReader(f)}
    return part1.klass, rows, h.scores(out, ASSIGNMENT), part1.grades


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


@pytest.mark.parametrize("number", sorted(PLACED))
def test_each_course_bug_loses_exactly_its_exercises_points(both, number):
    """The student carrying bug ``number`` loses the points of its exercise and of its other bugs' only."""
    klass, rows, ours, _ = both
    student, exercise = PLACED[number]
    injected = set(wrong_hand_ins(answer_banks.bank(ASSIGNMENT))[student])
    assert exercise in injected
    for lesson in klass[student]:
        grades = ours[student][lesson]
        for test_id, (score, max_score) in grades.items():
            assert score == (0 if test_id.removeprefix("test_") in injected else max_score), (lesson, test_id, score)
        row = rows[(student, lesson)]
        assert row["status"] == "ok" and float(row["score"]) < float(row["max_score"])
    for lesson in set(LESSONS) - set(klass[student]):
        assert rows[(student, lesson)]["status"] == "missing"
