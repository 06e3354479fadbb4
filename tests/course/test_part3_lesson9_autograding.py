"""Lesson 9's autograding, proven with the real nbgrader: right answers get full marks, wrong ones lose them.

A scratch course holding only this lesson is generated from solutions/ (which also proves the committed
notebooks/ copy is what generation produces), a few submissions are autograded in one ``nbgrader autograde``
run, and every wrong answer below is then run through the test cells in-process (no kernel).
"""

from __future__ import annotations

import json
import shutil

import pytest

import nbgrader_harness as h
from lesson9_answers import (ASSIGNMENT, EXERCISES, FAMILIES, LESSON, RIGHT, SOLUTION, WRAPPERS, WRONG,
                             WRONG_SUBMISSIONS, noisy)


def solution():
    return h.load(SOLUTION)


def with_answers(answers: dict):
    nb = solution()
    for name, source in answers.items():
        h.set_source(nb, name, source)
    return nb


def make_course(dest, env):
    """A scratch course holding this lesson only (other lessons of the part are other people's)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(h.REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    (dest / "solutions" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy2(SOLUTION, dest / "solutions" / ASSIGNMENT / SOLUTION.name)
    h.nbgrader(dest, "generate_assignment", ASSIGNMENT, "--force", env=env)
    return dest


# ----------------------------------------------------------------------------------------------------- nbgrader

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesson9_course")
    env = h.grading_env(root / "cache")
    course = make_course(root / "course", env)
    released = course / "notebooks" / ASSIGNMENT / SOLUTION.name
    h.submit(course, "solution", ASSIGNMENT, {LESSON: solution()})
    h.submit(course, "released", ASSIGNMENT, {LESSON: released})
    for k in range(WRONG_SUBMISSIONS):   # one wrong answer of an exercise's k-th family, for each exercise that has one
        picks = {name: next(s for lab, s in WRONG[name].items() if lab.startswith(FAMILIES[name][k] + ":"))
                 for name in EXERCISES if k < len(FAMILIES[name])}
        h.submit(course, f"wrong_{k}", ASSIGNMENT, {LESSON: with_answers(picks)})
    h.submit(course, "alternative", ASSIGNMENT, {LESSON: with_answers(RIGHT)})
    h.submit(course, "noisy", ASSIGNMENT, {LESSON: with_answers(
        {name: noisy(h.cell(solution(), name).source, name) for name in EXERCISES})})
    h.submit(course, "wrapper", ASSIGNMENT, {LESSON: with_answers(WRAPPERS)})
    tampered = with_answers({"reverse_kl": WRONG["reverse_kl"]["direction: forward KL"]})
    h.delete_cell(tampered, "test_reverse_kl")
    h.set_source(tampered, "test_forward_kl", "pass")
    h.submit(course, "tampered", ASSIGNMENT, {LESSON: tampered})
    seconds = h.autograde(course, ASSIGNMENT, env=env)
    print(f"\nautograded {len(h.exercise_scores(course, ASSIGNMENT))} submissions in {seconds:.1f} s")
    return course, h.exercise_scores(course, ASSIGNMENT)


def full(score) -> bool:
    return score[1] > 0 and score[0] == score[1]


def test_released_notebook_is_what_generation_produces(graded):
    course, _ = graded
    generated = course / "notebooks" / ASSIGNMENT / SOLUTION.name
    committed = h.REPO / "notebooks" / ASSIGNMENT / SOLUTION.name
    assert json.loads(generated.read_text()) == json.loads(committed.read_text()), (
        f"{committed.relative_to(h.REPO)} differs from what `nbgrader generate_assignment {ASSIGNMENT}` produces")


def test_solution_gets_full_marks(graded):
    _, scores = graded
    assert set(scores["solution"]) == set(EXERCISES)
    assert all(full(s) for s in scores["solution"].values()), scores["solution"]


def test_released_notebook_gets_zero(graded):
    _, scores = graded
    assert {e: s[0] for e, s in scores["released"].items()} == {e: 0 for e in EXERCISES}


@pytest.mark.parametrize("k", range(WRONG_SUBMISSIONS))
def test_each_family_of_wrong_answers_is_penalised(graded, k):
    _, scores = graded
    wrong = {e for e in EXERCISES if k < len(FAMILIES[e])}
    got = scores[f"wrong_{k}"]
    assert {e: got[e][0] for e in wrong} == {e: 0 for e in wrong}, got
    assert all(full(got[e]) for e in set(EXERCISES) - wrong), got


def test_correct_answers_written_differently_and_noisy_ones_keep_full_marks(graded):
    _, scores = graded
    assert all(full(s) for s in scores["alternative"].values()), scores["alternative"]
    assert all(full(s) for s in scores["noisy"].values()), scores["noisy"]


def test_wrapping_kdlab_earns_nothing(graded):
    _, scores = graded
    assert {e: s[0] for e, s in scores["wrapper"].items()} == {e: 0 for e in EXERCISES}


def test_deleted_or_emptied_test_cells_are_restored(graded):
    _, scores = graded
    student = scores["tampered"]
    assert student["reverse_kl"][0] == 0          # its deleted test cell was put back, and it fails
    assert full(student["forward_kl"]) and full(student["generalized_jsd"])


# ----------------------------------------------------------------------------------------------------- in-process

CASES = [(name, label) for name, variants in WRONG.items() for label in variants]


@pytest.mark.parametrize("name,label", CASES, ids=[f"{n}-{l}" for n, l in CASES])
def test_hidden_tests_catch_each_wrong_answer(name, label):
    results = h.run_graded_cells(solution(), {name: WRONG[name][label]})
    assert {t for t, error in results.items() if error} == {f"test_{name}"}, results


@pytest.mark.parametrize("name", EXERCISES)
def test_visible_checks_alone_pass_the_solution_and_catch_the_direction(name):
    released = h.load(h.REPO / "notebooks" / ASSIGNMENT / SOLUTION.name)
    fixed = {n: h.cell(solution(), n).source for n in EXERCISES}
    assert set(h.run_graded_cells(released, fixed).values()) == {None}
    wrong = next(s for label, s in WRONG[name].items() if label.startswith("direction"))
    assert h.run_graded_cells(released, {**fixed, name: wrong})[f"test_{name}"] is not None


def test_the_solutions_and_alternatives_pass_in_process():
    assert set(h.run_graded_cells(solution()).values()) == {None}
    assert set(h.run_graded_cells(solution(), RIGHT).values()) == {None}


def test_wrong_families_cover_the_issue():
    for name in EXERCISES:
        families = {label.split(":")[0] for label in WRONG[name]}
        assert set(FAMILIES[name]) <= families
