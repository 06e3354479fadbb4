"""The scorer outside the sandbox judges every answer as the test cells judge it in the learner's kernel.

For every wrong answer of the answer banks (the bugs of docs/course.md and the other
plausible mistakes of parts 1 to 3) and for the solutions, each lesson's test
cells run twice in this process: once on the answer itself, as nbgrader runs
them, and once as ``kdlab grade`` does (the answer called on the plan's
hidden inputs, what it did turned into data and back, the test cells run on
that data with :class:`kdlab.grading.replay.JudgeProxy`). Every test cell must
pass or fail the same way in both.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from functools import lru_cache

import pytest
import torch

from kdlab.grading import replay, scoring

h = pytest.importorskip("nbgrader_harness")
part1 = pytest.importorskip("part1_answers")
part2 = pytest.importorskip("part2_answers")
part3 = pytest.importorskip("part3_answers")
lesson9 = pytest.importorskip("lesson9_answers")

BANKS = [(part1.WRONG, part1.LESSON), (part2.WRONG, part2.LESSON), (part3.WRONG, part3.LESSON),
         (lesson9.WRONG, lesson9.LESSON)]
CASES = [(lesson_of[ex], ex, label, src) for wrong, lesson_of in BANKS for ex, variants in wrong.items()
         for label, src in variants.items()]


@lru_cache(maxsize=None)
def lesson(name: str):
    path = next(h.REPO.glob(f"solutions/*/{name}.ipynb"))
    nb = json.loads(path.read_text())
    return nb, scoring.build_plan(nb)


@contextlib.contextmanager
def grading_mode():
    before = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if before is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = before


def _answers(nb, overrides: dict) -> tuple[dict, list]:
    ns = {"__name__": "__main__"}
    cells = scoring.lesson_cells(nb)
    torch.manual_seed(0)
    for c in cells:
        if c.kind in ("code", "answer"):
            with contextlib.suppress(Exception):
                exec(overrides.get(c.grade_id, c.source), ns)  # noqa: S102 - the course's answer banks
    return ns, cells


def in_kernel(nb, plan, overrides: dict, only: set | None = None) -> dict:
    """Each test cell's pass/fail when it runs on the answer itself (nbgrader's way).

    ``only``: the test cells to run (each from the RNG state the plan gives it, as the scorer does); None: all.
    """
    ns, cells = _answers(nb, overrides)
    out = {}
    for c in cells:
        if c.kind == "test" and (only is None or c.grade_id in only):
            if only is not None and c.grade_id in plan.get("rng", {}):
                torch.set_rng_state(plan["rng"][c.grade_id])
            try:
                exec(c.source, ns)  # noqa: S102
                out[c.grade_id] = True
            except Exception:  # noqa: BLE001
                out[c.grade_id] = False
    return out


def replayed(nb, plan, overrides: dict, only: set | None = None) -> dict:
    """Each test cell's verdict when the scorer judges the recorded answers (kdlab grade's way, no sandbox)."""
    ns, _ = _answers(nb, overrides)
    if only is not None:   # the notebook and its plan cut down to those test cells
        nb = {**nb, "cells": [c for c in nb["cells"]
                              if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in
                              set(plan["tests"]) - only]}
        plan = {**plan, "tests": {tid: calls for tid, calls in plan["tests"].items() if tid in only}}
    observed = {}
    for tid, calls in plan["tests"].items():
        records = []
        for call in calls:
            fn = ns.get(call["fn"])
            records.append(json.loads(json.dumps(replay.perform(fn, call, None))) if callable(fn) else None)
        observed[tid] = records
    verdicts = scoring.judge(nb, plan, observed)
    for v in verdicts.values():   # a failed hidden case names itself and its hint, never the expected value
        if v.hidden:
            assert "expected" not in v.message and "\n  got" not in v.message, v.message
    return {tid: v.passed for tid, v in verdicts.items()}


def seen_by(nb, plan, exercise: str) -> set:
    """The test cells that call ``exercise`` on the solution: the only ones a wrong answer to it can change
    (the others call kdlab's reference in its place, and pass with every answer as with the solution's)."""
    return {tid for tid, calls in plan["tests"].items() if any(c["fn"] == exercise for c in calls)}


@pytest.mark.parametrize("name", ["01_softmax_temperature", "02_dark_knowledge", "03_kd_loss", "04_teacher",
                                  "05_distill", "06_dark_knowledge_experiments", "07_feature_distillation",
                                  "08_compress_for_deployment", "09_distilling_language_models",
                                  "10_interview_drill"])
def test_solutions_pass_every_test_cell_when_replayed(name):
    nb, plan = lesson(name)
    with grading_mode():
        verdicts = replayed(nb, plan, {})
    assert verdicts and all(verdicts.values()), verdicts


@pytest.mark.parametrize("lesson_name, exercise, label, source", CASES,
                         ids=[f"{ex}: {label[:50]}" for _, ex, label, _ in CASES])
def test_every_wrong_answer_is_judged_as_in_the_kernel(lesson_name, exercise, label, source):
    nb, plan = lesson(lesson_name)
    with grading_mode():
        only = seen_by(nb, plan, exercise)
        direct = in_kernel(nb, plan, {exercise: source}, only)
        judged = replayed(nb, plan, {exercise: source}, only)
    assert judged == direct
    assert judged[f"test_{exercise}"] is False, "the bank's wrong answer passes its test"
