"""The course manifest: what the course holds, read from ``kdlab/course.json``.

One file lists the nbgrader assignments in order, their lessons, each
lesson's graded exercises and the ``kdlab experiment`` runs it makes, and the
numbered KD bugs every grader must catch (:mod:`kdlab.pitfalls` has them as
runnable losses, under the same numbers); the tests, the docs checks and the scripts read it here instead of repeating
lists. ``docs/course.md`` describes the course in words;
``tests/docs/test_course_manifest.py`` proves the manifest is the truth
(every graded cell of ``solutions/`` with its points, nothing else)::

    from kdlab import course

    course.assignments()                       # ['part1_foundations', ..., 'part4_interview']
    [l.name for l in course.lessons("part1_foundations")]
    course.exercise("softmax_t")               # Exercise(name='softmax_t', lesson='01_softmax_temperature', ...)
    course.max_score("part4_interview")        # 49: 37 autograded, 12 graded by hand
    [b.number for b in course.bugs()]          # [1, ..., 10]

An exercise's ``name`` is its answer cell's nbgrader ``grade_id`` (for a code,
multiple-choice or numeric exercise, the function the cell defines); its
``tests`` are the grade_ids of the test cells that grade it (``test_<name>``),
empty for a written answer, which is graded by hand with its rubric and
carries its points itself. Paths are relative to the course root (the
repository), where ``solutions/`` and ``notebooks/`` live.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

KINDS = ("code", "choice", "numeric", "written")


@dataclass(frozen=True)
class Bug:
    """One of the KD bugs every grader must catch (docs/course.md; :data:`kdlab.pitfalls.PITFALLS`)."""

    number: int
    title: str


@dataclass(frozen=True)
class Exercise:
    """One graded answer: ``name`` is its answer cell's grade_id."""

    name: str
    lesson: str
    assignment: str
    kind: str                       # "code" | "choice" | "numeric" | "written"
    tests: tuple[str, ...]          # grade_ids of the test cells that grade it; () for a written answer
    points: int                     # all its points, as in the solutions' nbgrader metadata
    minutes: int                    # the README's rough time for it (the lower end of a range)
    minutes_max: int | None = None  # the upper end, where the README gives a range ("1-2 min")
    label: str = ""                 # lesson 10's question number: "MC1" ... "MC17", "N1" ... "N12"
    rubric: str = ""                # a written answer's rubric cell (grade_id)

    @property
    def autograded(self) -> bool:
        """Graded by its test cells (``nbgrader autograde``, ``kdlab grade``), not by a person."""
        return self.kind != "written"


@dataclass(frozen=True)
class Lesson:
    """One notebook: ``solutions/ASSIGNMENT/NAME.ipynb``, released as ``notebooks/ASSIGNMENT/NAME.ipynb``."""

    name: str                       # e.g. "01_softmax_temperature"
    assignment: str
    title: str                      # the notebook's title, after "Lesson N — "
    minutes: int                    # the lesson's time in docs/instructors.md (the lower end of a range)
    exercises: tuple[Exercise, ...]
    experiments: tuple[str, ...]    # the kdlab experiments it runs (kdlab.experiments.get(name))
    path: str                       # "solutions/ASSIGNMENT/NAME.ipynb", relative to the course root
    released_path: str              # "notebooks/ASSIGNMENT/NAME.ipynb"
    minutes_max: int | None = None  # the upper end, where docs/instructors.md gives a range ("75–105 min")

    @property
    def number(self) -> int:
        """1 for ``01_softmax_temperature``."""
        return int(self.name.split("_", 1)[0])

    @property
    def max_score(self) -> int:
        return sum(e.points for e in self.exercises)


@functools.cache
def _load() -> dict:
    raw = json.loads(resources.files(__package__).joinpath("course.json").read_text(encoding="utf-8"))
    titles, lessons = {}, []
    for a in raw["assignments"]:
        titles[a["name"]] = a["title"]
        for entry in a["lessons"]:
            exercises = tuple(
                Exercise(name=e["name"], lesson=entry["name"], assignment=a["name"], kind=e["kind"],
                         tests=tuple(e["tests"]), points=e["points"], minutes=e["minutes"],
                         minutes_max=e.get("minutes_max"), label=e.get("label", ""), rubric=e.get("rubric", ""))
                for e in entry["exercises"])
            for e in exercises:
                if e.kind not in KINDS:
                    raise ValueError(f"course.json: exercise {e.name} has kind {e.kind!r}, not one of {KINDS}")
            lessons.append(Lesson(
                name=entry["name"], assignment=a["name"], title=entry["title"], minutes=entry["minutes"],
                minutes_max=entry.get("minutes_max"), exercises=exercises,
                experiments=tuple(entry["experiments"]),
                path=f"solutions/{a['name']}/{entry['name']}.ipynb",
                released_path=f"notebooks/{a['name']}/{entry['name']}.ipynb"))
    by_lesson = {l.name: l for l in lessons}
    by_exercise = {e.name: e for l in lessons for e in l.exercises}
    if len(by_lesson) != len(lessons) or len(by_exercise) != sum(len(l.exercises) for l in lessons):
        raise ValueError("course.json: a lesson or exercise name appears twice")
    bugs = tuple(Bug(b["number"], b["title"]) for b in raw["bugs"])
    if [b.number for b in bugs] != list(range(1, len(bugs) + 1)):
        raise ValueError("course.json: the bugs must be numbered 1, 2, ... in order")
    return {"titles": titles, "lessons": tuple(lessons), "by_lesson": by_lesson, "by_exercise": by_exercise,
            "bugs": bugs}


def _check_assignment(assignment: str | None) -> None:
    if assignment is not None and assignment not in _load()["titles"]:
        raise KeyError(f"no assignment {assignment!r} in the course; it has {', '.join(assignments())}")


def assignments() -> list[str]:
    """The nbgrader assignments, in course order: ``part1_foundations`` ... ``part4_interview``."""
    return list(_load()["titles"])


def assignment_title(assignment: str) -> str:
    """The part's short title: "foundations", "MNIST", "beyond logits", "interview drill"."""
    _check_assignment(assignment)
    return _load()["titles"][assignment]


def lessons(assignment: str | None = None) -> list[Lesson]:
    """Every lesson, in course order, or those of one assignment."""
    _check_assignment(assignment)
    return [l for l in _load()["lessons"] if assignment is None or l.assignment == assignment]


def exercises(assignment: str | None = None) -> list[Exercise]:
    """Every graded exercise, in course order (notebook order within a lesson), or those of one assignment."""
    return [e for l in lessons(assignment) for e in l.exercises]


def lesson(name: str) -> Lesson:
    """The lesson ``name`` (e.g. ``"03_kd_loss"``)."""
    try:
        return _load()["by_lesson"][name]
    except KeyError:
        raise KeyError(f"no lesson {name!r} in the course") from None


def exercise(name: str) -> Exercise:
    """The exercise whose answer cell's grade_id is ``name`` (e.g. ``"softmax_t"``)."""
    try:
        return _load()["by_exercise"][name]
    except KeyError:
        raise KeyError(f"no exercise {name!r} in the course") from None


def max_score(assignment: str | None = None, *, autograded_only: bool = False) -> int:
    """The points of an assignment (of the whole course with None), as nbgrader's max_score counts them.

    ``autograded_only`` leaves out the written answers that a person grades (lesson 10's 12 points).
    """
    return sum(e.points for e in exercises(assignment) if e.autograded or not autograded_only)


def bugs() -> list[Bug]:
    """The KD bugs every grader must catch, numbered 1 to 10 as in docs/course.md and kdlab/pitfalls.py."""
    return list(_load()["bugs"])


def lesson_of(assignment: str | None = None) -> dict[str, str]:
    """``{exercise: lesson}``, in course order."""
    return {e.name: e.lesson for e in exercises(assignment)}
