"""Each lesson executes once per test run; every check that needs its outputs shares that one execution."""

from __future__ import annotations

import pytest

import lesson_runs


@pytest.fixture(scope="session")
def executed(tmp_path_factory):
    """``executed(lesson_name) -> (notebook with outputs, seconds)``, run on first use (tests/lesson_runs.py).

    Tests that call it for a lesson carry ``lesson_runs.on_the_worker_of(lesson)``, so that under xdist the
    lesson runs once, on the worker that runs all of them.
    """
    cache = tmp_path_factory.mktemp("lesson_kernel_cache")
    runs: dict[str, tuple] = {}

    def run(name: str):
        if name not in runs:
            runs[name] = lesson_runs.execute(name, cache)
        return runs[name]

    return run
