"""Part 1's class of hand-ins, autograded once per test run by plain ``nbgrader autograde``.

Two suites read it (through the session fixture ``part1_class`` of tests/conftest.py):
tests/course/test_part1_autograding.py checks what each student scored, and
tests/grading/test_grade_matches_nbgrader.py grades the same ``submitted/`` folder with ``kdlab grade`` and
compares every grade. Every scenario is a student: the solutions, the released notebooks, one student per
bug of docs/course.md (injected into every exercise it applies to; only the notebooks touched are handed
in), correct answers that make noise, answers that only call kdlab's reference, and tampered test cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import nbgrader_harness as h
import part1_answers as answers
from kdlab import course as manifest

ASSIGNMENT = "part1_foundations"
LESSONS = [lesson.name for lesson in manifest.lessons(ASSIGNMENT)]
EXERCISES = list(answers.LESSON)
BUGS = [bug.number for bug in manifest.bugs()]

solution = partial(h.solution, ASSIGNMENT)
with_answers = partial(h.with_answers, ASSIGNMENT, answers.LESSON)


def course_bug_answers(number: int) -> dict:
    """{exercise: wrong source} for every exercise to which bug ``number`` of docs/course.md applies."""
    return {exercise: source for exercise, variants in answers.WRONG.items()
            for label, source in variants.items() if answers.course_bug(label) == number}


def tampered() -> dict:
    """Submissions whose test cells were edited, stripped of metadata, or deleted."""
    l1 = with_answers({"softmax_t": answers.WRONG["softmax_t"]["bug 9: exp without the max shift overflows"]})
    nb = l1["01_softmax_temperature"]
    h.set_source(nb, "test_softmax_t", "pass  # tests removed")
    h.delete_cell(nb, "test_entropy")
    l2 = with_answers({"class_similarity": answers.WRONG["class_similarity"]["transposed (columns are the true classes)"]})
    nb = l2["02_dark_knowledge"]
    test = h.cell(nb, "test_class_similarity")
    test.metadata.pop("nbgrader")
    test.source = 'print("looks fine")'
    l3 = with_answers({"kd_kl": answers.WRONG["kd_kl"]["bug 3: T^2 factor missing"]})
    nb = l3["03_kd_loss"]
    h.delete_cell(nb, "test_kd_kl")
    h.set_source(nb, "test_distillation_loss", "assert True")
    h.cell(nb, "test_kd_logit_grad").metadata.nbgrader["points"] = 100
    return {**l1, **l2, **l3}


# Which exercises the tampered submission must fail (the rest keep full marks).
TAMPERED_FAILS = {"softmax_t", "class_similarity", "kd_kl"}


def hand_ins(released_dir: Path) -> dict:
    """``{student: {lesson: notebook node or path}}``."""
    klass = {"solution": {lesson: solution(lesson) for lesson in LESSONS},
             "released": {lesson: released_dir / f"{lesson}.ipynb" for lesson in LESSONS},
             "noisy": with_answers({e: answers.noisy(h.cell(solution(answers.LESSON[e]), e).source, e)
                                    for e in EXERCISES}),
             "wrapper": with_answers(answers.WRAPPERS),
             "tampered": tampered()}
    for number in BUGS:
        klass[f"bug{number:02d}"] = with_answers(course_bug_answers(number))
    return klass


@dataclass
class GradedClass:
    course: Path          # the scratch course: submitted/, autograded/, gradebook.db
    klass: dict           # what each student handed in
    grades: dict          # {student: {notebook: {grade_id: (score, max_score)}}}, nbgrader's gradebook
    scores: dict          # {student: {exercise: (score, max_score)}}
    seconds: float        # the one `nbgrader autograde` run


def autograde(root: Path) -> GradedClass:
    """Generate part 1 into a scratch course under ``root``, hand in the class, autograde it once."""
    env = h.grading_env(root / "cache", OMP_NUM_THREADS="1")
    course = h.make_course(root / "course", [ASSIGNMENT], env=env)
    klass = hand_ins(course / "notebooks" / ASSIGNMENT)
    for student, notebooks in klass.items():
        h.submit(course, student, ASSIGNMENT, notebooks)
    seconds = h.autograde(course, ASSIGNMENT, env=env)
    print(f"\nnbgrader autograde: {len(klass)} part-1 students in {seconds:.1f} s")
    return GradedClass(course, klass, h.scores(course, ASSIGNMENT), h.exercise_scores(course, ASSIGNMENT), seconds)
