"""Every assignment's autograding, proven with the real nbgrader: right answers get full marks, wrong ones lose them.

Driven by the course manifest (kdlab/course.json) and each assignment's answer bank (tests/answer_banks.py).
Each assignment's class of hand-ins (tests/autograded_class.py) is generated from solutions/ (which also proves
notebooks/ is exactly what generation produces) and graded by one ``nbgrader autograde`` run per test session,
on the worker that runs every check of it (part 1's is shared with tests/grading/test_grade_matches_nbgrader.py).
Each exercise is graded by its own test cell, so one hand-in can carry a different wrong answer in each exercise.
Every answer of the banks then runs through the same test cells in-process (no kernel), which is fast. What
only one lesson has comes last.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import answer_banks
import nbgrader_harness as h
from answer_banks import BANKS, bank
from answer_tools import course_bug
from autograded_class import course_bug_placement, on_its_worker, wrong_hand_ins
from kdlab import course

ASSIGNMENTS = answer_banks.assignments()
full = h.full_marks


def cases(rows_of=lambda b: [()], *, graded: bool = False) -> list:
    """pytest params ``(assignment, *row)`` for each row of each assignment's bank, named by its strings.

    ``graded``: the test reads the assignment's graded class, so it runs on that class's worker; the in-process
    checks of each assignment are a group of their own, which either worker can take."""
    out = []
    for assignment in ASSIGNMENTS:
        group = on_its_worker(assignment) if graded else pytest.mark.xdist_group(f"in-process:{assignment}")
        for row in rows_of(bank(assignment)):
            row = row if isinstance(row, tuple) else (row,)
            named = [assignment, *(value for value in row if isinstance(value, str))]
            out.append(pytest.param(assignment, *row, id="-".join(named), marks=[group]))
    return out


@pytest.fixture
def graded(graded_class, assignment):
    """The assignment's graded class (tests/autograded_class.py), built once per test session."""
    return graded_class(assignment)


def test_every_assignment_has_a_bank():
    assert list(BANKS) == course.assignments()


@pytest.mark.parametrize("assignment", cases())
def test_the_bank_answers_every_exercise_of_the_manifest(assignment):
    """Wrong answers for every autograded exercise, a wrapper of kdlab for every code exercise, every bug of
    docs/course.md that applies injected somewhere."""
    b = bank(assignment)
    assert b.lesson_of == {e.name: e.lesson for e in course.exercises(assignment) if e.autograded}
    assert set(b.wrong) == set(b.exercises())
    assert {e.name for e in course.exercises(assignment) if e.kind == "code"} <= set(b.wrappers) <= set(b.wrong)
    covered = {course_bug(label) for variants in b.wrong.values() for label in variants}
    assert b.applicable_bugs <= covered


@pytest.mark.parametrize("assignment", cases())
def test_every_course_bug_goes_through_nbgrader_in_some_hand_in(assignment):
    """Each bug that applies to the assignment is carried by one wrong hand-in of the class, in an exercise whose
    answer there is a wrong answer of the bank with that bug (the others of its exercises: in-process, below)."""
    b = bank(assignment)
    placed, handed_in = course_bug_placement(b), wrong_hand_ins(b)
    assert set(placed) == set(b.applicable_bugs)
    for number, (student, exercise) in placed.items():
        source = handed_in[student][exercise]
        assert any(course_bug(label) == number and wrong == source for label, wrong in b.wrong[exercise].items()), (
            number, student, exercise)


# ----------------------------------------------------------------------------- nbgrader: the class

@pytest.mark.parametrize("assignment", cases(graded=True))
def test_released_notebooks_are_what_generation_produces(graded, assignment):
    generated = sorted((graded.course / "notebooks" / assignment).glob("*.ipynb"))
    committed = sorted((h.REPO / "notebooks" / assignment).glob("*.ipynb"))
    lessons = sorted(Path(lesson.released_path).name for lesson in course.lessons(assignment))
    assert [p.name for p in generated] == [p.name for p in committed] == lessons
    for new, old in zip(generated, committed):
        assert json.loads(new.read_text()) == json.loads(old.read_text()), (
            f"{old.relative_to(h.REPO)} differs from what `nbgrader generate_assignment {assignment}` produces: "
            "regenerate it")


@pytest.mark.parametrize("assignment", cases(graded=True))
def test_every_exercise_is_graded_with_its_points(graded, assignment):
    assert {e: s[1] for e, s in graded.scores["solution"].items()} == {
        e.name: e.points for e in course.exercises(assignment)}


@pytest.mark.parametrize("assignment", cases(graded=True))
def test_solutions_get_full_marks(graded, assignment):
    got = graded.scores["solution"]
    assert {e: got[e] for e in graded.bank.exercises() if not full(got[e])} == {}   # written answers: by hand


@pytest.mark.parametrize("assignment", cases(graded=True))
def test_released_notebooks_get_zero_without_crashing(graded, assignment):
    assert {e: s[0] for e, s in graded.scores["released"].items()} == {
        e.name: 0 for e in course.exercises(assignment)}   # an untouched written answer too
    for lesson in graded.bank.lessons:   # every notebook was executed and written back
        assert (graded.course / "autograded" / "released" / assignment / f"{lesson}.ipynb").is_file()


@pytest.mark.parametrize("assignment,student", cases(lambda b: list(wrong_hand_ins(b)), graded=True))
def test_each_wrong_hand_in_loses_the_points_of_its_wrong_exercises_only(graded, assignment, student):
    """``bugs_NN_...`` carries bugs NN... of docs/course.md, each in one exercise (autograded_class.
    course_bug_placement); ``wrongK`` the bank's k-th set of wrong answers. The other exercises of the notebooks
    handed in keep their points: each is graded alone."""
    injected = wrong_hand_ins(graded.bank)[student]
    assert injected, f"{student} is wrong in no exercise"
    got = graded.scores[student]
    assert {e: got[e][0] for e in injected} == {e: 0 for e in injected}
    others = [e for e in graded.bank.exercises(graded.klass[student]) if e not in injected]
    assert {e: got[e] for e in others if not full(got[e])} == {}


@pytest.mark.parametrize("assignment", cases(lambda b: [()] if b.right else [], graded=True))
def test_right_answers_written_differently_keep_full_marks(graded, assignment):
    got = graded.scores["alternative"]
    assert {e: got[e] for e in graded.bank.exercises(graded.klass["alternative"]) if not full(got[e])} == {}


@pytest.mark.parametrize("assignment", cases(graded=True))
def test_noise_on_stderr_and_warnings_cost_nothing(graded, assignment):
    got = graded.scores["noisy"]
    assert {e: got[e] for e in graded.bank.exercises() if not full(got[e])} == {}


@pytest.mark.parametrize("assignment", cases(graded=True))
def test_wrapping_kdlab_reference_earns_nothing(graded, assignment):
    got = graded.scores["wrapper"]
    assert {e: got[e][0] for e in graded.bank.wrappers} == {e: 0 for e in graded.bank.wrappers}
    others = [e for e in graded.bank.exercises(graded.klass["wrapper"]) if e not in graded.bank.wrappers]
    assert {e: got[e] for e in others if not full(got[e])} == {}


@pytest.mark.parametrize("assignment", cases(graded=True))
def test_edited_or_deleted_test_cells_are_restored_and_graded(graded, assignment):
    b, got = graded.bank, graded.scores["tampered"]
    handed_in = b.exercises(graded.klass["tampered"])
    assert {e: got[e][0] == 0 for e in handed_in} == {e: e in b.tampered_fails for e in handed_in}
    assert {e: got[e] for e in handed_in if e not in b.tampered_fails and not full(got[e])} == {}
    assert {e: got[e] for e in b.tampered_points} == b.tampered_points   # the gradebook's points, not the edited 100
    for lesson, test_id in b.tampered_restored:
        nb = h.load(graded.course / "autograded" / "tampered" / assignment / f"{lesson}.ipynb")
        assert "### BEGIN HIDDEN TESTS" in h.cell(nb, test_id).source, (lesson, test_id)


@pytest.mark.parametrize("assignment", cases(graded=True))
def test_autograder_skips_experiment_cells(graded, assignment):
    for lesson in graded.bank.lessons:
        nb = h.load(graded.course / "autograded" / "solution" / assignment / f"{lesson}.ipynb")
        setup = next(c for c in nb.cells if c.cell_type == "code")
        assert "experiment cells are skipped" in "".join(o.get("text", "") for o in setup.outputs), lesson
        experiments = [c for c in nb.cells if h.is_experiment(c)]
        assert experiments and all(not c.outputs for c in experiments), lesson


# ----------------------------------------------------------------------------- in-process: every answer

@pytest.mark.parametrize("assignment,exercise,label",
                         cases(lambda b: [(e, label) for e, variants in b.wrong.items() for label in variants]))
def test_hidden_tests_catch_each_wrong_answer(assignment, exercise, label):
    """Each wrong answer fails exactly its own test cell (an exercise calling another is graded on its own code)."""
    b = bank(assignment)
    results = h.run_graded_cells(b.solution(b.lesson_of[exercise]), {exercise: b.wrong[exercise][label]})
    assert {test for test, error in results.items() if error} == {f"test_{exercise}"}, results


@pytest.mark.parametrize("assignment,lesson", cases(lambda b: b.lessons))
def test_solutions_pass_visible_and_hidden_checks_in_process(assignment, lesson):
    b = bank(assignment)
    assert h.run_graded_cells(b.solution(lesson)) == {f"test_{e}": None for e in b.exercises([lesson])}


@pytest.mark.parametrize("assignment,lesson", cases(lambda b: b.lessons))
def test_solutions_pass_the_released_visible_checks(assignment, lesson):
    b = bank(assignment)
    sol = b.solution(lesson)
    fixed = {e: h.cell(sol, e).source for e in b.exercises([lesson])}
    assert h.run_graded_cells(h.released(assignment, lesson), fixed) == {f"test_{e}": None for e in fixed}


@pytest.mark.parametrize("assignment,exercise,label",
                         cases(lambda b: [(e, label) for e, variants in b.right.items() for label in variants]))
def test_right_answers_written_differently_pass_in_process(assignment, exercise, label):
    b = bank(assignment)
    results = h.run_graded_cells(b.solution(b.lesson_of[exercise]), {exercise: b.right[exercise][label]})
    assert {test for test, error in results.items() if error} == set(), results


@pytest.mark.parametrize("assignment,exercise", cases(lambda b: list(b.bases)))
def test_the_answer_bases_are_right_answers(assignment, exercise):
    """The wrong answers are one edit away from a right one, so each failure is that one mistake's."""
    b = bank(assignment)
    results = h.run_graded_cells(b.solution(b.lesson_of[exercise]), {exercise: b.bases[exercise]})
    assert results[f"test_{exercise}"] is None


@pytest.mark.parametrize("assignment,exercise", cases(lambda b: list(b.wrappers)))
def test_kdlab_wrappers_fail_in_process_naming_kdlab(assignment, exercise):
    b = bank(assignment)
    results = h.run_graded_cells(b.solution(b.lesson_of[exercise]), {exercise: b.wrappers[exercise]})
    assert "kdlab" in (results[f"test_{exercise}"] or "")


@pytest.mark.parametrize("assignment,exercise,label,words",
                         cases(lambda b: [(e, label, words) for wrong, words in b.visible_checks
                                          for e, label in wrong.items()]))
def test_the_released_visible_checks_catch_a_wrong_answer_and_say_what_failed(assignment, exercise, label, words):
    """The released notebook, its other exercises answered right: the wrong answer fails its visible check, whose
    message names the case, what was expected, what came, a hint (the bank lists the words)."""
    b = bank(assignment)
    lesson = b.lesson_of[exercise]
    fixed = {e: h.cell(b.solution(lesson), e).source for e in b.exercises([lesson])}
    message = h.run_graded_cells(h.released(assignment, lesson), {**fixed, exercise: b.wrong[exercise][label]})[
        f"test_{exercise}"]
    assert message and all(word in message for word in words), message


# ----------------------------------------------------------------------------- what only one lesson has

def test_fix_kd_step_starts_from_a_step_with_three_planted_course_bugs():
    """Lesson 3's starter cell: a plain (graded-run) cell defining buggy_kd_step, tagged for the audit; as an
    answer it fails the visible check and the hidden tests; each of its bugs alone is in the bank of wrong answers."""
    for nb in (h.solution("part1_foundations", "03_kd_loss"), h.released("part1_foundations", "03_kd_loss")):
        starters = [c for c in nb.cells if "starter:fix_kd_step" in c.metadata.get("tags", [])]
        assert len(starters) == 1 and not h.is_experiment(starters[0])
        assert starters[0].source.startswith("def buggy_kd_step(student, teacher, optimizer, x, y, T, alpha):")
        as_answer = starters[0].source.replace("def buggy_kd_step(", "def fix_kd_step(")
        assert h.run_graded_cells(nb, {"fix_kd_step": as_answer})["test_fix_kd_step"]
    planted = {course_bug(label) for label in bank("part1_foundations").wrong["fix_kd_step"] if "starter" not in label}
    assert {1, 7, 8} <= planted


def test_course_bug_8_is_caught_in_both_feature_losses():
    """Lesson 7: the teacher's features not detached is a wrong answer of both hint_loss and attention_transfer_loss."""
    wrong = bank("part3_beyond").wrong
    for exercise in ("hint_loss", "attention_transfer_loss"):
        assert [label for label in wrong[exercise] if course_bug(label) == 8], exercise


def test_lesson9_wrong_answers_cover_the_three_families_of_the_issue():
    """Lesson 9: each exercise's wrong answers cover its families (the direction, probabilities in place of
    log-probabilities, the averaging; gkd_step's policy, gradient and models too)."""
    import lesson9_answers as lesson9

    for name in lesson9.EXERCISES:
        families = {label.split(":")[0] for label in lesson9.WRONG[name]}
        assert set(lesson9.FAMILIES[name]) <= families


def test_the_drills_wrong_hand_ins_cover_every_wrong_choice():
    """Lesson 10: the three wrong hand-ins answer each multiple-choice question with each of its wrong letters."""
    import part4_answers as drill

    for name in drill.CHOICES:
        handed_in = {drill.WRONG[name][picks[name]] for picks in drill.WRONG_HANDINS}
        assert handed_in == {drill.letter_source(name, x) for x in "ABCD" if x != drill.right_letter(name)}, name


@pytest.mark.parametrize("assignment", [pytest.param("part4_interview", marks=on_its_worker("part4_interview"))])
def test_the_drills_written_answers_wait_for_the_instructor(graded, assignment):
    """Lesson 10: a written answer is left for manual grading; an untouched prompt scores 0 without one."""
    from nbgrader.api import Gradebook

    written = [e for e in course.exercises(assignment) if e.kind == "written"]
    assert written
    with Gradebook(f"sqlite:///{graded.course / 'gradebook.db'}") as gb:
        for student, needs in (("solution", True), ("released", False)):
            nb = gb.find_submission_notebook("10_interview_drill", assignment, student)
            grades = {g.name: g for g in nb.grades}
            for exercise in written:
                g = grades[exercise.name]
                assert g.max_score == exercise.points == 3
                assert g.needs_manual_grade is needs, (student, exercise.name)
                if not needs:
                    assert g.score == 0
            assert nb.max_score == course.max_score(assignment)
