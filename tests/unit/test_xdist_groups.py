"""The suite's parallel layout takes effect: under xdist, every test runs in its group (tests/conftest.py).

`--dist loadgroup` sends a group's tests to one worker by appending ``@group`` to their node ids. With pytest 9.2
that suffix silently stops taking effect (pytest-xdist#1386): nothing fails, but every session fixture that a group
shares (an assignment's graded class, a lesson's execution) is built again on the other worker, and the suite
takes far longer. requirements.txt keeps pytest below 9.2; this test says so if the grouping is lost again.
"""

from __future__ import annotations

import os

import pytest


def test_each_test_runs_in_its_xdist_group(request):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("not under xdist (-n 0): nothing is grouped")
    if not getattr(request.config.option, "loadgroup", False):   # xdist sets it on each worker
        pytest.skip("not run with --dist loadgroup")
    assert request.node.nodeid.endswith("@unit/test_xdist_groups.py"), (
        f"{request.node.nodeid}: xdist did not keep this test in its group; the suite's shared fixtures will be "
        f"built once per worker (pytest {pytest.__version__}: see pytest-xdist#1386 and requirements.txt's pin)")
