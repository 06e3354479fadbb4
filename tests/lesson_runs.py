"""Running a lesson's solution top to bottom in fast mode, once per test run (tests/course/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import nbgrader_harness as h
from kdlab import course


def on_the_worker_of(lesson_name: str):
    """The xdist group of every test that reads ``lesson_name``'s execution: they all run where it ran."""
    return pytest.mark.xdist_group(f"lesson:{lesson_name}")


def execute(lesson_name: str, cache: Path) -> tuple:
    """(the solution with its outputs, seconds): the kernel starts in the notebook's folder, as JupyterLab
    starts it, with KDLAB_FAST=1, one thread, and ``cache`` as its user cache (a trained teacher is reused)."""
    lesson = course.lesson(lesson_name)
    nb = h.solution(lesson.assignment, lesson.name)
    env = {"KDLAB_FAST": "1", "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "1", "NBGRADER_EXECUTION": None}
    before = {key: os.environ.get(key) for key in env}
    try:
        _apply(env)
        seconds = h.execute_fast(nb, (h.REPO / lesson.path).parent)
    finally:
        _apply(before)
    return nb, seconds


def _apply(env: dict) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
