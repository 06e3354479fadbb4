"""Each lesson executes once per test run; every check that needs its outputs shares that one execution."""

from __future__ import annotations

import os

import pytest

import nbgrader_harness as h
from kdlab import course


@pytest.fixture(scope="session")
def executed(tmp_path_factory):
    """``executed(lesson_name) -> (notebook with outputs, seconds)``: the solution run top to bottom in fast mode.

    The kernel starts in the notebook's folder, as JupyterLab starts it, with KDLAB_FAST=1 and one cache for
    the whole run (the course's teacher is trained once for every lesson that needs it).
    """
    cache = tmp_path_factory.mktemp("lesson_kernel_cache")
    runs: dict[str, tuple] = {}

    def run(name: str):
        if name not in runs:
            lesson = course.lesson(name)
            nb = h.solution(lesson.assignment, lesson.name)
            env = {"KDLAB_FAST": "1", "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "1",
                   "NBGRADER_EXECUTION": None}
            before = {key: os.environ.get(key) for key in env}
            try:
                for key, value in env.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                seconds = h.execute_fast(nb, (h.REPO / lesson.path).parent)
            finally:
                for key, value in before.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            runs[name] = (nb, seconds)
        return runs[name]

    return run
