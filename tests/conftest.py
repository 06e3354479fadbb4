"""Shared fixtures: an isolated cache per test, a small data folder, and the `quick` subset."""

from pathlib import Path

import pytest

from data_helpers import write_dataset


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


# The edit loop's subset, `python -m pytest -m quick` (under 2 minutes): the unit tests, the docs checks and
# the course's static checks, less any test marked `slow`. The rest runs lessons, kernels, nbgrader or a browser.
QUICK = ("unit/", "docs/", "course/test_lesson_conventions.py", "course/test_assessment.py",
         "course/test_notebook_metadata.py")


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        where = item.path.resolve().relative_to(tests).as_posix()
        if where.startswith(QUICK) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.quick)
