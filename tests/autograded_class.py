"""An assignment's class of hand-ins, built from its answer bank and autograded once per test run by plain nbgrader.

Every scenario is a student: the solutions, the released notebooks, students carrying each bug of docs/course.md
that applies to the assignment in one exercise (:func:`course_bug_placement`), the bank's other wrong hand-ins, right
answers written differently, correct answers that make noise, answers that only call kdlab's reference, and
tampered test cells. Only the notebooks a student touched are handed in. The session fixture ``graded_class``
of tests/conftest.py builds each class on first use; tests/course/test_autograding.py checks what every student
scored, and tests/grading/test_grade_matches_nbgrader.py grades part 1's ``submitted/`` folder again with
``kdlab grade``. The tests that read an assignment's class carry :func:`on_its_worker`, so that under xdist
one worker builds it and runs all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import answer_banks
import nbgrader_harness as h
from answer_banks import Bank
from answer_tools import course_bug, noisy


def on_its_worker(assignment: str):
    """The xdist group of every test that reads ``assignment``'s graded class: they all run where it was built."""
    return pytest.mark.xdist_group(f"autograde:{assignment}")


def course_bug_placement(bank: Bank) -> dict:
    """``{bug number: (student, exercise)}``: where each applicable bug of docs/course.md goes through nbgrader.

    A bug that one of the bank's ``wrongK`` hand-ins carries goes through in it. Each other bug goes into one
    exercise it applies to, the least used so far (the bugs with the fewest exercises are placed first), and the
    k-th bug placed in an exercise into student ``k``'s hand-in; so a student carries at most one bug per
    exercise, and is named for its bugs (``bugs_01_04_06_07``). The in-process checks of
    tests/course/test_autograding.py run every wrong answer of every exercise through the same test cells, and
    each exercise is graded by its own test cell; so one nbgrader run per bug proves the pipeline without a
    kernel for every (bug, exercise) pair (part 1 needs 3 bug notebooks instead of 13, part 2 6 instead of 13).
    """
    placed: dict = {}
    for k, picks in enumerate(bank.wrong_handins):
        for exercise, label in picks.items():
            if course_bug(label) is not None:
                placed.setdefault(course_bug(label), (f"wrong{k}", exercise))
    order = bank.exercises()
    slots: dict = {}   # {exercise: [bug, ...]} in placement order
    rest = [n for n in sorted(bank.applicable_bugs) if n not in placed]
    for number in sorted(rest, key=lambda n: len(bank.course_bug_answers(n))):
        candidates = bank.course_bug_answers(number)
        exercise = min(candidates, key=lambda e: (len(slots.get(e, [])), order.index(e)))
        slots.setdefault(exercise, []).append(number)
    by_student: dict = {}
    for exercise, numbers in slots.items():
        for k, number in enumerate(numbers):
            by_student.setdefault(k, {})[number] = exercise
    for bugs in by_student.values():
        student = "bugs_" + "_".join(f"{n:02d}" for n in sorted(bugs))
        placed.update({number: (student, exercise) for number, exercise in bugs.items()})
    return dict(sorted(placed.items()))


def wrong_hand_ins(bank: Bank) -> dict:
    """``{student: {exercise: wrong source}}``: the ``bugs_...`` students of :func:`course_bug_placement`, then
    ``wrongK`` for the bank's k-th set of wrong answers."""
    out: dict = {}
    for number, (student, exercise) in course_bug_placement(bank).items():
        if not student.startswith("wrong"):
            out.setdefault(student, {})[exercise] = bank.course_bug_answers(number)[exercise]
    for k, picks in enumerate(bank.wrong_handins):
        out[f"wrong{k}"] = {exercise: bank.wrong[exercise][label] for exercise, label in picks.items()}
    return out


def hand_ins(bank: Bank, released_dir: Path) -> dict:
    """``{student: {lesson: notebook node or path}}``."""
    exercises = bank.exercises()
    klass = {"solution": {lesson: bank.solution(lesson) for lesson in bank.lessons},
             "released": {lesson: released_dir / f"{lesson}.ipynb" for lesson in bank.lessons},
             "noisy": bank.with_answers({e: noisy(h.cell(bank.solution(bank.lesson_of[e]), e).source, e)
                                         for e in exercises}),
             "wrapper": bank.with_answers(bank.wrappers),
             "tampered": bank.tampered()}
    if bank.right:   # each exercise's first right answer written differently
        klass["alternative"] = bank.with_answers({e: next(iter(variants.values())) for e, variants in bank.right.items()})
    for student, answers in wrong_hand_ins(bank).items():
        klass[student] = bank.with_answers(answers)
    return klass


@dataclass
class GradedClass:
    bank: Bank
    course: Path          # the scratch course: submitted/, autograded/, gradebook.db
    klass: dict           # what each student handed in: {student: {lesson: notebook}}
    grades: dict          # {student: {notebook: {grade_id: (score, max_score)}}}, nbgrader's gradebook
    scores: dict          # {student: {exercise: (score, max_score)}}
    seconds: float        # the one `nbgrader autograde` run


def autograde(assignment: str, root: Path) -> GradedClass:
    """Generate ``assignment`` into a scratch course under ``root``, hand in its class, autograde it once."""
    bank = answer_banks.bank(assignment)
    env = h.grading_env(root / "cache", OMP_NUM_THREADS="1")
    course = h.make_course(root / "course", [assignment], env=env)
    klass = hand_ins(bank, course / "notebooks" / assignment)
    for student, notebooks in klass.items():
        h.submit(course, student, assignment, notebooks)
    seconds = h.autograde(course, assignment, env=env)
    print(f"\nnbgrader autograde: {len(klass)} students of {assignment} in {seconds:.1f} s")
    return GradedClass(bank, course, klass, h.scores(course, assignment), h.exercise_scores(course, assignment),
                       seconds)
