"""Lessons 7 and 8's autograding, proven with the real nbgrader: right answers get full marks, wrong ones lose them.

A scratch course holds only these two notebooks of part3_beyond (generation
handles each notebook on its own, so lesson 9, built alongside, neither
affects nor is affected by this test); it is generated from solutions/, which
also proves notebooks/part3_beyond/07 and 08 are exactly what generation
produces. Every scenario is submitted as its own student and one
``nbgrader autograde`` run grades them all. Many more wrong answers then run
through the same test cells in-process (no kernel), which is fast.
"""

from __future__ import annotations

import json
from functools import partial
import shutil

import pytest

import nbgrader_harness as h
import part3_answers as answers

ASSIGNMENT = "part3_beyond"
LESSONS = ["07_feature_distillation", "08_compress_for_deployment"]
EXERCISES = list(answers.LESSON)
POINTS = {"hint_loss": 2, "attention_map": 2, "attention_transfer_loss": 2, "model_size_bytes": 1, "sparsity": 2}


solution = partial(h.solution, ASSIGNMENT)
released = partial(h.released, ASSIGNMENT)
with_answers = partial(h.with_answers, ASSIGNMENT, answers.LESSON)
full = h.full_marks


def first_wrong() -> dict:
    """One wrong answer per exercise (the first listed), all in one submission."""
    return with_answers({e: next(iter(variants.values())) for e, variants in answers.WRONG.items()})


def last_wrong() -> dict:
    return with_answers({e: list(variants.values())[-1] for e, variants in answers.WRONG.items()})


def tampered() -> dict:
    """Submissions whose test cells were edited, stripped of metadata, or deleted."""
    l7 = with_answers({"hint_loss": answers.WRONG["hint_loss"]["sum instead of mean"],
                       "attention_map": answers.WRONG["attention_map"]["not normalised"]})
    nb = l7["07_feature_distillation"]
    h.set_source(nb, "test_hint_loss", "pass  # tests removed")
    h.delete_cell(nb, "test_attention_map")
    h.cell(nb, "test_attention_transfer_loss").metadata.nbgrader["points"] = 100
    l8 = with_answers({"sparsity": answers.WRONG["sparsity"]["includes the biases"]})
    nb = l8["08_compress_for_deployment"]
    test = h.cell(nb, "test_sparsity")
    test.metadata.pop("nbgrader")
    test.source = 'print("looks fine")'
    return {**l7, **l8}


TAMPERED_FAILS = {"hint_loss", "attention_map", "sparsity"}


def make_course(dest, env):
    """A scratch course with this part's config and only lessons 7 and 8, generated."""
    dest.mkdir(parents=True)
    shutil.copy2(h.REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    (dest / "solutions" / ASSIGNMENT).mkdir(parents=True)
    for lesson in LESSONS:
        shutil.copy2(h.REPO / "solutions" / ASSIGNMENT / f"{lesson}.ipynb", dest / "solutions" / ASSIGNMENT)
    h.nbgrader(dest, "generate_assignment", ASSIGNMENT, "--force", env=env)
    return dest


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The scratch course after one autograde run over every scenario: (course, exercise scores)."""
    root = tmp_path_factory.mktemp("part3_78_course")
    env = h.grading_env(root / "cache")
    course = make_course(root / "course", env)
    h.submit(course, "solution", ASSIGNMENT, {n: solution(n) for n in LESSONS})
    h.submit(course, "released", ASSIGNMENT, {n: course / "notebooks" / ASSIGNMENT / f"{n}.ipynb" for n in LESSONS})
    h.submit(course, "wrong1", ASSIGNMENT, first_wrong())
    h.submit(course, "wrong2", ASSIGNMENT, last_wrong())
    h.submit(course, "noisy", ASSIGNMENT, with_answers(
        {e: answers.noisy(h.cell(solution(answers.LESSON[e]), e).source, e) for e in EXERCISES}))
    h.submit(course, "wrapper", ASSIGNMENT, with_answers(answers.WRAPPERS))
    h.submit(course, "tampered", ASSIGNMENT, tampered())
    seconds = h.autograde(course, ASSIGNMENT, env=env)
    print(f"\nautograded 7 students x 2 notebooks in {seconds:.1f} s")
    return course, h.exercise_scores(course, ASSIGNMENT)


def mine(student_scores: dict) -> dict:
    return {e: s for e, s in student_scores.items() if e in POINTS}


def test_released_notebooks_are_what_generation_produces(graded):
    course, _ = graded
    for lesson in LESSONS:
        new = course / "notebooks" / ASSIGNMENT / f"{lesson}.ipynb"
        old = h.REPO / "notebooks" / ASSIGNMENT / f"{lesson}.ipynb"
        assert json.loads(new.read_text()) == json.loads(old.read_text()), (
            f"{old.relative_to(h.REPO)} differs from what `nbgrader generate_assignment {ASSIGNMENT}` produces: "
            "regenerate it")


def test_every_exercise_is_graded_with_its_points(graded):
    _, scores = graded
    assert {e: s[1] for e, s in mine(scores["solution"]).items()} == POINTS


def test_solutions_get_full_marks(graded):
    _, scores = graded
    assert {e: s for e, s in mine(scores["solution"]).items() if not full(s)} == {}


def test_released_notebooks_get_zero_without_crashing(graded):
    course, scores = graded
    assert {e: s[0] for e, s in mine(scores["released"]).items()} == {e: 0 for e in POINTS}
    for lesson in LESSONS:
        assert (course / "autograded" / "released" / ASSIGNMENT / f"{lesson}.ipynb").is_file()


@pytest.mark.parametrize("student", ["wrong1", "wrong2"])
def test_wrong_answers_lose_their_points(graded, student):
    _, scores = graded
    assert {e: s[0] for e, s in mine(scores[student]).items()} == {e: 0 for e in POINTS}


def test_noise_on_stderr_and_warnings_cost_nothing(graded):
    _, scores = graded
    assert {e: s for e, s in mine(scores["noisy"]).items() if not full(s)} == {}


def test_wrapping_kdlab_reference_earns_nothing(graded):
    _, scores = graded
    assert {e: s[0] for e, s in mine(scores["wrapper"]).items()} == {e: 0 for e in POINTS}


def test_edited_or_deleted_test_cells_are_restored_and_graded(graded):
    course, scores = graded
    student = mine(scores["tampered"])
    assert {e: student[e][0] == 0 for e in POINTS} == {e: e in TAMPERED_FAILS for e in POINTS}
    assert student["attention_transfer_loss"] == (2.0, 2.0)   # the gradebook's points, not the edited 100
    for lesson, test_id in [("07_feature_distillation", "test_hint_loss"),
                            ("07_feature_distillation", "test_attention_map"),
                            ("08_compress_for_deployment", "test_sparsity")]:
        nb = h.load(course / "autograded" / "tampered" / ASSIGNMENT / f"{lesson}.ipynb")
        assert "### BEGIN HIDDEN TESTS" in h.cell(nb, test_id).source


def test_autograder_skips_experiment_cells(graded):
    course, _ = graded
    for lesson in LESSONS:
        nb = h.load(course / "autograded" / "solution" / ASSIGNMENT / f"{lesson}.ipynb")
        setup_output = "".join(o.get("text", "") for c in nb.cells[:3] if c.cell_type == "code" for o in c.outputs)
        assert "experiment cells are skipped" in setup_output
        assert all(not c.outputs for c in nb.cells if h.is_experiment(c))


# ----------------------------------------------------------------------------- in-process: every wrong answer

WRONG_CASES = [(e, label) for e, variants in answers.WRONG.items() for label in variants]


@pytest.mark.parametrize("exercise,label", WRONG_CASES, ids=[f"{e}-{l[:40]}" for e, l in WRONG_CASES])
def test_hidden_tests_catch_each_wrong_answer(exercise, label):
    results = h.run_graded_cells(solution(answers.LESSON[exercise]), {exercise: answers.WRONG[exercise][label]})
    failing = {test for test, error in results.items() if error}
    assert failing == {f"test_{exercise}"}, results


@pytest.mark.parametrize("lesson", LESSONS)
def test_solutions_pass_visible_and_hidden_checks_in_process(lesson):
    expected = {f"test_{e}": None for e in EXERCISES if answers.LESSON[e] == lesson}
    assert h.run_graded_cells(solution(lesson)) == expected


@pytest.mark.parametrize("lesson", LESSONS)
def test_solutions_pass_the_released_visible_checks(lesson):
    sol = solution(lesson)
    fixed = {e: h.cell(sol, e).source for e in EXERCISES if answers.LESSON[e] == lesson}
    assert set(h.run_graded_cells(released(lesson), fixed).values()) == {None}


def test_course_bug_8_is_caught_in_both_feature_losses():
    for exercise in ("hint_loss", "attention_transfer_loss"):
        labels = [label for label in answers.WRONG[exercise] if answers.course_bug(label) == 8]
        assert labels, exercise


def test_attention_transfer_loss_is_graded_on_its_own_code():
    """attention_transfer_loss calling a buggy attention_map keeps its points: its check substitutes kdlab's."""
    results = h.run_graded_cells(solution("07_feature_distillation"),
                                 {"attention_map": answers.WRONG["attention_map"]["not normalised"]})
    assert results["test_attention_map"] and results["test_attention_transfer_loss"] is None


def test_failure_messages_name_the_case_the_expectation_and_the_result():
    label = "the authors' .mean() (also divides by H*W)"
    nb = released("07_feature_distillation")
    fixed = {"attention_map": h.cell(solution("07_feature_distillation"), "attention_map").source,
             "attention_transfer_loss": answers.WRONG["attention_transfer_loss"][label]}
    message = h.run_graded_cells(nb, fixed)["test_attention_transfer_loss"]
    assert "student (2, 3, 4, 4)" in message and "expected" in message and "got" in message and "hint:" in message
    size_message = h.run_graded_cells(released("08_compress_for_deployment"), {
        "model_size_bytes": answers.WRONG["model_size_bytes"]["4 bytes per parameter"],
        "sparsity": h.cell(solution("08_compress_for_deployment"), "sparsity").source})["test_model_size_bytes"]
    assert "a small MLP" in size_message and "io.BytesIO" in size_message
