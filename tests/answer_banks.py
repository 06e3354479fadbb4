"""Every assignment's answer bank behind one interface: what its class of hand-ins and its checks differ in.

An assignment's bank is one module or more (lessons 7-8 and lesson 9 keep theirs apart), each defining, for its
lessons:

- ``ASSIGNMENT``; ``LESSON``: ``{exercise: lesson}`` for the autograded exercises (lesson 10's written answers
  are graded by hand);
- ``WRONG``: ``{exercise: {label: wrong source}}``, a label ``"bug N: ..."`` injecting bug N of docs/course.md;
  ``APPLICABLE_BUGS``: the bugs that apply to its exercises (each is injected somewhere in ``WRONG``);
- ``WRAPPERS``: ``{exercise: source that is, or only calls, kdlab's reference}`` (every code exercise has one);
- ``BASES``: ``{exercise: the right source its wrong answers are one edit away from}`` (where there is one);
- ``tampered()``: a hand-in with edited, stripped or deleted test cells, ``{lesson: notebook}``;
  ``TAMPERED_FAILS`` (the exercises it fails), ``TAMPERED_POINTS`` (``{exercise: (score, max)}`` where a test
  cell claims other points), ``TAMPERED_RESTORED`` (``[(lesson, test grade_id)]`` put back with hidden tests);
- ``VISIBLE_CHECKS``: ``[({exercise: wrong label}, [words])]``, wrong answers the released notebook's visible
  checks catch, with words their message holds;

and optionally ``WRONG_HANDINS`` (``[{exercise: wrong label}]``: more wrong students, each wrong in several
exercises at once) and ``RIGHT`` (``{exercise: {label: a right answer written differently}}``). Noisy answers come from
:func:`answer_tools.noisy`, the bug a label injects from :func:`answer_tools.course_bug`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import zip_longest

import nbgrader_harness as h
from answer_tools import course_bug
from kdlab import course

# The modules of each assignment's bank.
BANKS = {"part1_foundations": ("part1_answers",), "part2_mnist": ("part2_answers",),
         "part3_beyond": ("part3_answers", "lesson9_answers"), "part4_interview": ("part4_answers",)}


@dataclass(frozen=True)
class Bank:
    assignment: str
    lesson_of: dict                 # {exercise: lesson}
    wrong: dict                     # {exercise: {label: source}}
    applicable_bugs: frozenset
    wrappers: dict
    bases: dict
    right: dict                     # {exercise: {label: source}}
    wrong_handins: tuple            # ({exercise: label}, ...)
    tampered: Callable[[], dict]
    tampered_fails: frozenset
    tampered_points: dict
    tampered_restored: tuple
    visible_checks: tuple

    @property
    def lessons(self) -> list[str]:
        """The bank's lessons, in course order."""
        return list(dict.fromkeys(self.lesson_of.values()))

    def exercises(self, lessons=None) -> list[str]:
        """The exercises (of ``lessons``, or all), in course order."""
        return [e for e, lesson in self.lesson_of.items() if lessons is None or lesson in lessons]

    def course_bug_answers(self, number: int) -> dict:
        """``{exercise: wrong source}``: the first wrong answer with bug ``number``, in every exercise that has one."""
        out: dict = {}
        for exercise, variants in self.wrong.items():
            for label, source in variants.items():
                if course_bug(label) == number:
                    out.setdefault(exercise, source)
        return out

    def with_answers(self, replacements: dict) -> dict:
        """The solution notebooks with some answer cells replaced: ``{lesson: notebook}``, the lessons touched."""
        return h.with_answers(self.assignment, self.lesson_of, replacements)

    def solution(self, lesson: str):
        return h.solution(self.assignment, lesson)


@functools.cache
def bank(assignment: str) -> Bank:
    """The bank of ``assignment``, its modules merged (their lessons are disjoint)."""
    modules = [importlib.import_module(name) for name in BANKS[assignment]]
    assert all(m.ASSIGNMENT == assignment for m in modules), assignment

    def merged(name: str, default=None) -> dict:
        return {k: v for m in modules for k, v in getattr(m, name, default or {}).items()}

    def tampered() -> dict:
        return {lesson: nb for m in modules for lesson, nb in m.tampered().items()}

    handins = zip_longest(*(getattr(m, "WRONG_HANDINS", []) for m in modules), fillvalue={})
    return Bank(
        assignment=assignment, lesson_of=merged("LESSON"), wrong=merged("WRONG"),
        applicable_bugs=frozenset().union(*(m.APPLICABLE_BUGS for m in modules)),
        wrappers=merged("WRAPPERS"), bases=merged("BASES"), right=merged("RIGHT"),
        wrong_handins=tuple({k: v for picks in row for k, v in picks.items()} for row in handins),
        tampered=tampered, tampered_fails=frozenset().union(*(m.TAMPERED_FAILS for m in modules)),
        tampered_points=merged("TAMPERED_POINTS"),
        tampered_restored=tuple(r for m in modules for r in m.TAMPERED_RESTORED),
        visible_checks=tuple(c for m in modules for c in m.VISIBLE_CHECKS))


def assignments() -> list[str]:
    """The manifest's assignments, in course order (each has a bank)."""
    return course.assignments()
