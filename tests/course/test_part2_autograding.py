"""Part 2's autograding, proven with the real nbgrader, as for part 1: right answers get full marks,
the untouched release gets 0, each applicable bug of docs/course.md and other wrong answers lose the points of
their exercise, stderr noise costs nothing, kdlab wrappers earn nothing, tampered tests are restored.

One scratch course is generated from solutions/part2_mnist (which also proves notebooks/part2_mnist is
exactly what generation produces); every scenario is a student, and one ``nbgrader autograde`` run
grades them all. Every wrong answer is also run through the test cells in-process (fast).
"""

from __future__ import annotations

import json
from functools import partial

import pytest

import nbgrader_harness as h
import part2_answers as answers

ASSIGNMENT = "part2_mnist"
LESSONS = ["04_teacher", "05_distill", "06_dark_knowledge_experiments"]
EXERCISES = list(answers.LESSON)


solution = partial(h.solution, ASSIGNMENT)
released = partial(h.released, ASSIGNMENT)
with_answers = partial(h.with_answers, ASSIGNMENT, answers.LESSON)
full = h.full_marks


def course_bug_answers(number: int) -> dict:
    """{exercise: wrong source} for every exercise to which bug ``number`` of docs/course.md applies.

    Where several wrong answers inject the same bug into one exercise, the first is submitted to
    nbgrader (the in-process tests below run all of them).
    """
    out = {}
    for exercise, variants in answers.WRONG.items():
        for label, source in variants.items():
            if answers.course_bug(label) == number and exercise not in out:
                out[exercise] = source
    return out


def tampered() -> dict:
    nb4 = with_answers({"count_errors": answers.WRONG["count_errors"]["counts the correct predictions"]})["04_teacher"]
    h.set_source(nb4, "test_count_errors", "pass  # tests removed")
    h.delete_cell(nb4, "test_jitter")
    nb5 = with_answers({"distill_step": answers.WRONG["distill_step"]["bug 3: the T^2 factor missing"]})["05_distill"]
    test = h.cell(nb5, "test_distill_step")
    test.metadata.pop("nbgrader")
    test.source = 'print("looks fine")'
    nb6 = solution("06_dark_knowledge_experiments")
    h.cell(nb6, "test_bias_shift_for_class").metadata.nbgrader["points"] = 100
    return {"04_teacher": nb4, "05_distill": nb5, "06_dark_knowledge_experiments": nb6}


# The exercises each tampered submission must fail (the deleted test_jitter is put back and passes).
TAMPERED_FAILS = {"count_errors", "distill_step"}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The scratch course after one autograde run over every scenario: (course, exercise scores)."""
    root = tmp_path_factory.mktemp("part2_course")
    env = h.grading_env(root / "cache")
    course = h.make_course(root / "course", [ASSIGNMENT], env=env)
    h.submit(course, "solution", ASSIGNMENT, {n: solution(n) for n in LESSONS})
    h.submit(course, "released", ASSIGNMENT, {n: course / "notebooks" / ASSIGNMENT / f"{n}.ipynb" for n in LESSONS})
    for number in sorted(answers.APPLICABLE_BUGS):
        h.submit(course, f"bug{number:02d}", ASSIGNMENT, with_answers(course_bug_answers(number)))
    h.submit(course, "noisy", ASSIGNMENT, with_answers(
        {e: answers.noisy(h.cell(solution(answers.LESSON[e]), e).source, e) for e in EXERCISES}))
    h.submit(course, "wrapper", ASSIGNMENT, with_answers(answers.WRAPPERS))
    h.submit(course, "tampered", ASSIGNMENT, tampered())
    seconds = h.autograde(course, ASSIGNMENT, env=env)
    print(f"\nautograded {len(h.exercise_scores(course, ASSIGNMENT))} part 2 students in {seconds:.1f} s")
    return course, h.exercise_scores(course, ASSIGNMENT)


def test_released_notebooks_are_what_generation_produces(graded):
    course, _ = graded
    generated = sorted((course / "notebooks" / ASSIGNMENT).glob("*.ipynb"))
    committed = sorted((h.REPO / "notebooks" / ASSIGNMENT).glob("*.ipynb"))
    assert [p.name for p in generated] == [p.name for p in committed] == [f"{n}.ipynb" for n in LESSONS]
    for new, old in zip(generated, committed):
        assert json.loads(new.read_text()) == json.loads(old.read_text()), (
            f"{old.relative_to(h.REPO)} differs from what `nbgrader generate_assignment {ASSIGNMENT}` produces: "
            "regenerate it")


def test_solutions_get_full_marks(graded):
    _, scores = graded
    assert set(scores["solution"]) == set(EXERCISES)
    assert {e: s for e, s in scores["solution"].items() if not full(s)} == {}


def test_released_notebooks_get_zero_without_crashing(graded):
    course, scores = graded
    assert {e: s[0] for e, s in scores["released"].items()} == {e: 0 for e in EXERCISES}
    for lesson in LESSONS:
        assert (course / "autograded" / "released" / ASSIGNMENT / f"{lesson}.ipynb").is_file()


@pytest.mark.parametrize("number", sorted(answers.APPLICABLE_BUGS))
def test_each_applicable_course_bug_loses_the_points_of_its_exercise(graded, number):
    _, scores = graded
    injected = course_bug_answers(number)
    assert injected, f"bug {number} applies to no exercise"
    student = scores[f"bug{number:02d}"]
    assert {e: student[e][0] for e in injected} == {e: 0 for e in injected}
    submitted = {answers.LESSON[e] for e in injected}
    others = [e for e in EXERCISES if answers.LESSON[e] in submitted and e not in injected]
    assert {e: student[e] for e in others if not full(student[e])} == {}


def test_noise_on_stderr_and_warnings_cost_nothing(graded):
    _, scores = graded
    assert {e: s for e, s in scores["noisy"].items() if not full(s)} == {}


def test_wrapping_kdlab_earns_nothing(graded):
    _, scores = graded
    assert {e: s[0] for e, s in scores["wrapper"].items()} == {e: 0 for e in EXERCISES}


def test_edited_or_deleted_test_cells_are_restored_and_graded(graded):
    course, scores = graded
    student = scores["tampered"]
    assert {e: student[e][0] == 0 for e in EXERCISES} == {e: e in TAMPERED_FAILS for e in EXERCISES}
    assert student["bias_shift_for_class"][1] == 2.0     # the gradebook's points, not the edited 100
    for lesson, test_id in [("04_teacher", "test_count_errors"), ("04_teacher", "test_jitter"),
                            ("05_distill", "test_distill_step")]:
        nb = h.load(course / "autograded" / "tampered" / ASSIGNMENT / f"{lesson}.ipynb")
        assert "### BEGIN HIDDEN TESTS" in h.cell(nb, test_id).source


def test_autograder_skips_experiment_cells(graded):
    course, _ = graded
    for lesson in LESSONS:
        nb = h.load(course / "autograded" / "solution" / ASSIGNMENT / f"{lesson}.ipynb")
        assert all(not c.outputs for c in nb.cells if h.is_experiment(c)), lesson


# ----------------------------------------------------------------------------- in-process: every wrong answer

WRONG_CASES = [(e, label) for e, variants in answers.WRONG.items() for label in variants]


@pytest.mark.parametrize("exercise,label", WRONG_CASES, ids=[f"{e}-{l.split(':')[0][:40]}" for e, l in WRONG_CASES])
def test_hidden_tests_catch_each_wrong_answer(exercise, label):
    results = h.run_graded_cells(solution(answers.LESSON[exercise]), {exercise: answers.WRONG[exercise][label]})
    assert {test for test, error in results.items() if error} == {f"test_{exercise}"}, results


@pytest.mark.parametrize("exercise", EXERCISES)
def test_kdlab_wrappers_fail_in_process(exercise):
    results = h.run_graded_cells(solution(answers.LESSON[exercise]), {exercise: answers.WRAPPERS[exercise]})
    assert "kdlab" in (results[f"test_{exercise}"] or "")


@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_answer_bases_are_the_solutions(exercise):
    """The wrong answers are one edit away from the solution, so each failure is that one mistake's."""
    results = h.run_graded_cells(solution(answers.LESSON[exercise]), {exercise: answers.SOLUTIONS[exercise]})
    assert results[f"test_{exercise}"] is None


@pytest.mark.parametrize("lesson", LESSONS)
def test_solutions_pass_the_released_visible_checks(lesson):
    nb, sol = released(lesson), solution(lesson)
    fixed = {e: h.cell(sol, e).source for e in EXERCISES if answers.LESSON[e] == lesson}
    assert set(h.run_graded_cells(nb, fixed).values()) == {None}


def test_failure_messages_name_the_bug():
    results = h.run_graded_cells(released("05_distill"),
                                 {"distill_step": answers.WRONG["distill_step"]["bug 5: KL direction reversed"]})
    message = results["test_distill_step"]
    assert "T = 4, alpha = 0.9" in message and "expected" in message and "got" in message
    assert "hint: your loss matches bug 5" in message


def test_train_distilled_failure_messages_point_at_the_mistake():
    """The visible checks of exercise 2 name a loss bug, and send a misaligned cache back to the batch's rows."""
    fixed = {"distill_step": h.cell(solution("05_distill"), "distill_step").source}
    bug6 = h.run_graded_cells(released("05_distill"), {
        **fixed, "train_distilled": answers.WRONG["train_distilled"]["bug 6: alpha weights the hard term"]})
    assert "hint: your loss matches bug 6" in bug6["test_train_distilled"]
    misaligned = h.run_graded_cells(released("05_distill"), {
        **fixed, "train_distilled": answers.WRONG["train_distilled"][
            "the cached logits read by position, not with the shuffled rows (misaligned)"]})
    message = misaligned["test_train_distilled"]
    assert "lr = 0" in message and "own rows" in message
