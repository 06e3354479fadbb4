"""An assignment's class of hand-ins, built from its answer bank and autograded once per test run by plain nbgrader.

Every scenario is a student: the solutions, the released notebooks, one student per bug of docs/course.md that
applies to the assignment (injected into every exercise it applies to), the bank's other wrong hand-ins, right
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
from answer_tools import noisy


def on_its_worker(assignment: str):
    """The xdist group of every test that reads ``assignment``'s graded class: they all run where it was built."""
    return pytest.mark.xdist_group(f"autograde:{assignment}")


def wrong_hand_ins(bank: Bank) -> dict:
    """``{student: {exercise: wrong source}}``: ``bugNN`` for each applicable bug, ``wrongK`` for the bank's others."""
    out = {f"bug{number:02d}": bank.course_bug_answers(number) for number in sorted(bank.applicable_bugs)}
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
