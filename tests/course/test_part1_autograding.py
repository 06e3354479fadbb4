"""Part 1's autograding, proven with the real nbgrader: right answers get full marks, wrong ones lose them.

The class of hand-ins (tests/part1_class.py) is generated from solutions/ (which also proves notebooks/ is
exactly what generation produces) and graded by one ``nbgrader autograde`` run per test session, which
tests/grading/test_grade_matches_nbgrader.py shares; each exercise is graded by its own test cell, so one
submission can carry a different wrong answer in each exercise. Many more wrong answers are then run
through the same test cells in-process (no kernel), which is fast.
"""

from __future__ import annotations

import json
from functools import partial

import pytest

import nbgrader_harness as h
import part1_answers as answers
from part1_class import ASSIGNMENT, BUGS, EXERCISES, LESSONS, TAMPERED_FAILS, course_bug_answers

pytestmark = pytest.mark.xdist_group("part1_class")   # one worker grades the class for both suites

solution = partial(h.solution, ASSIGNMENT)
released = partial(h.released, ASSIGNMENT)
full = h.full_marks


@pytest.fixture(scope="module")
def graded(part1_class):
    """(the scratch course, {student: {exercise: (score, max_score)}}, seconds of the autograde run)."""
    return part1_class.course, part1_class.scores, part1_class.seconds


def test_released_notebooks_are_what_generation_produces(graded):
    course, _, _ = graded
    generated = sorted((course / "notebooks" / ASSIGNMENT).glob("*.ipynb"))
    committed = sorted((h.REPO / "notebooks" / ASSIGNMENT).glob("*.ipynb"))
    assert [p.name for p in generated] == [p.name for p in committed]
    for new, old in zip(generated, committed):
        assert json.loads(new.read_text()) == json.loads(old.read_text()), (
            f"{old.relative_to(h.REPO)} differs from what `nbgrader generate_assignment {ASSIGNMENT}` produces: "
            "regenerate it")


def test_every_exercise_is_graded(graded):
    _, scores, _ = graded
    assert set(scores["solution"]) == set(EXERCISES)
    assert all(points > 0 for _, points in scores["solution"].values())


def test_solutions_get_full_marks(graded):
    _, scores, _ = graded
    assert {e: s for e, s in scores["solution"].items() if not full(s)} == {}


def test_released_notebooks_get_zero_without_crashing(graded):
    course, scores, _ = graded
    assert {e: s[0] for e, s in scores["released"].items()} == {e: 0 for e in EXERCISES}
    for lesson in LESSONS:   # every notebook was executed and written back
        assert (course / "autograded" / "released" / ASSIGNMENT / f"{lesson}.ipynb").is_file()


@pytest.mark.parametrize("number", BUGS)
def test_each_course_bug_loses_the_points_of_its_exercise(graded, number):
    _, scores, _ = graded
    injected = course_bug_answers(number)
    assert injected, f"bug {number} applies to no exercise"
    student = scores[f"bug{number:02d}"]
    assert {e: student[e][0] for e in injected} == {e: 0 for e in injected}
    # the other exercises of the notebooks submitted keep their points: each is graded on its own
    submitted = {answers.LESSON[e] for e in injected}
    others = [e for e in EXERCISES if answers.LESSON[e] in submitted and e not in injected]
    assert {e: student[e] for e in others if not full(student[e])} == {}


def test_course_bugs_cover_the_list():
    covered = {answers.course_bug(label) for variants in answers.WRONG.values() for label in variants}
    assert set(BUGS) <= covered


def test_noise_on_stderr_and_warnings_cost_nothing(graded):
    _, scores, _ = graded
    assert {e: s for e, s in scores["noisy"].items() if not full(s)} == {}


def test_wrapping_kdlab_reference_earns_nothing(graded):
    _, scores, _ = graded
    assert {e: s[0] for e, s in scores["wrapper"].items()} == {e: 0 for e in EXERCISES}


def test_edited_or_deleted_test_cells_are_restored_and_graded(graded):
    course, scores, _ = graded
    student = scores["tampered"]
    assert {e: student[e][0] == 0 for e in EXERCISES} == {e: e in TAMPERED_FAILS for e in EXERCISES}
    assert student["kd_logit_grad"] == (2.0, 2.0)   # the points the gradebook holds, not the edited 100
    for lesson, test_id in [("01_softmax_temperature", "test_entropy"), ("03_kd_loss", "test_kd_kl"),
                            ("03_kd_loss", "test_distillation_loss"), ("02_dark_knowledge", "test_class_similarity")]:
        nb = h.load(course / "autograded" / "tampered" / ASSIGNMENT / f"{lesson}.ipynb")
        assert "### BEGIN HIDDEN TESTS" in h.cell(nb, test_id).source


def test_autograder_skips_experiment_cells(graded):
    course, _, _ = graded
    nb = h.load(course / "autograded" / "solution" / ASSIGNMENT / "03_kd_loss.ipynb")
    setup_output = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "experiment cells are skipped" in setup_output
    assert all(not c.outputs for c in nb.cells if h.is_experiment(c))


# ----------------------------------------------------------------------------- in-process: every wrong answer

WRONG_CASES = [(e, label) for e, variants in answers.WRONG.items() for label in variants]


@pytest.mark.parametrize("exercise,label", WRONG_CASES, ids=[f"{e}-{l.split(':')[0]}" for e, l in WRONG_CASES])
def test_hidden_tests_catch_each_wrong_answer(exercise, label):
    lesson = answers.LESSON[exercise]
    results = h.run_graded_cells(solution(lesson), {exercise: answers.WRONG[exercise][label]})
    failing = {test for test, error in results.items() if error}
    assert failing == {f"test_{exercise}"}, results


@pytest.mark.parametrize("lesson", LESSONS)
def test_solutions_pass_visible_and_hidden_checks_in_process(lesson):
    assert h.run_graded_cells(solution(lesson)) == {f"test_{e}": None for e in EXERCISES if answers.LESSON[e] == lesson}


@pytest.mark.parametrize("lesson", LESSONS)
def test_solutions_pass_the_released_visible_checks(lesson):
    nb = released(lesson)
    sol = solution(lesson)
    fixed = {e: h.cell(sol, e).source for e in EXERCISES if answers.LESSON[e] == lesson}
    assert set(h.run_graded_cells(nb, fixed).values()) == {None}


def test_an_exercise_is_graded_on_its_own_code():
    """distillation_loss calling a buggy kd_kl keeps its points: its check substitutes kdlab's kd_kl."""
    results = h.run_graded_cells(solution("03_kd_loss"), {"kd_kl": answers.WRONG["kd_kl"]["bug 3: T^2 factor missing"]})
    assert results["test_kd_kl"] and results["test_distillation_loss"] is None


def test_failure_messages_name_the_case_the_expectation_and_the_result():
    label = "bug 10: softmax over the batch dimension"
    results = h.run_graded_cells(released("01_softmax_temperature"), {"softmax_t": answers.WRONG["softmax_t"][label]})
    message = results["test_softmax_t"]
    assert "a batch of two rows" in message and "expected" in message and "got" in message
    assert "hint:" in message


def test_fix_kd_step_starts_from_a_step_with_three_planted_course_bugs():
    """Lesson 3's starter cell: a plain (graded-run) cell defining buggy_kd_step, tagged for the audit; as an
    answer it fails the visible check and the hidden tests; each of its bugs alone is in the bank of wrong answers."""
    for nb in (solution("03_kd_loss"), released("03_kd_loss")):
        starters = [c for c in nb.cells if "starter:fix_kd_step" in c.metadata.get("tags", [])]
        assert len(starters) == 1 and not h.is_experiment(starters[0])
        assert starters[0].source.startswith("def buggy_kd_step(student, teacher, optimizer, x, y, T, alpha):")
        as_answer = starters[0].source.replace("def buggy_kd_step(", "def fix_kd_step(")
        assert h.run_graded_cells(nb, {"fix_kd_step": as_answer})["test_fix_kd_step"]
    planted = {answers.course_bug(label) for label in answers.WRONG["fix_kd_step"] if "starter" not in label}
    assert {1, 7, 8} <= planted
