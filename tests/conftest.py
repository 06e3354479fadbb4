"""Shared fixtures: an isolated cache per test, a small data folder, and the `quick` subset."""

import os
from pathlib import Path

import pytest

from data_helpers import write_dataset


# Two xdist workers share the two cores: torch in each (and in the kernels, CLIs and graders they start) gets
# one thread, since two processes spinning two threads each on two cores slow each other down several-fold.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty user cache, so nothing leaks into ~/.cache."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    return cache


@pytest.fixture
def small_data_root(tmp_path):
    """A KDLAB_DATA-style folder with a small mnist/ inside."""
    write_dataset(tmp_path / "data" / "mnist")
    return tmp_path / "data"


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """``graded_class(assignment)``: its class of hand-ins after one plain `nbgrader autograde`, run on first use
    (tests/autograded_class.py). Tests that call it carry ``autograded_class.on_its_worker(assignment)``, so that
    under xdist each class is built once, on the worker that runs all of them; part 1's serves two suites."""
    import autograded_class

    classes: dict = {}

    def get(assignment: str):
        if assignment not in classes:
            classes[assignment] = autograded_class.autograde(assignment, tmp_path_factory.mktemp(f"class_{assignment}"))
        return classes[assignment]

    return get


# The edit loop's subset, `python -m pytest -m quick` (under 2 minutes): the unit tests, the docs checks and
# the course's static checks, less any test marked `slow`. The rest runs lessons, kernels, nbgrader or a browser.
QUICK = ("unit/", "docs/", "course/test_lesson_conventions.py", "course/test_assessment.py",
         "course/test_notebook_metadata.py")


# The groups that take longest, longest first (seconds each on an idle 2-core machine, roughly, measured with
# `python -m pytest --durations=0`). The workers take groups in this order (--no-loadscope-reorder), so no long
# group starts last while the other worker sits idle; the rest keep their collection order.
LONGEST_FIRST = ("grading/test_redteam.py", "grading/test_grade_a_class.py", "unit/test_cli.py",
                 "autograde:part1_foundations", "docs/test_docs.py", "course/test_browser.py",
                 "autograde:part2_mnist", "autograde:part3_beyond", "experiments/test_benchmark_scripts.py",
                 "experiments/test_lesson6_experiments.py", "grading/test_scorer_replay.py",
                 "autograde:part4_interview", "lesson:09_distilling_language_models", "in-process:part2_mnist",
                 "in-process:part4_interview", "in-process:part3_beyond", "in-process:part1_foundations")


def _group(item) -> str:
    marker = item.get_closest_marker("xdist_group")
    return (marker.args[0] if marker.args else marker.kwargs.get("name", "")) if marker else ""


@pytest.hookimpl(tryfirst=True)   # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        where = item.path.resolve().relative_to(tests).as_posix()
        if where.startswith(QUICK) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.quick)
        # `python -m pytest` runs on 2 xdist workers, a module at a time (--dist loadgroup): a module's
        # fixtures are built once, on the worker that runs all of its tests. Tests that share a session
        # fixture across modules name their group themselves (a lesson's execution, an assignment's graded class).
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(where))
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))   # stable: the rest keep their order
