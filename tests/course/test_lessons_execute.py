"""Every lesson runs top to bottom in fast mode: no error, every visible check passes, every experiment shows.

One execution per lesson (the session's ``executed`` fixture, tests/course/conftest.py); what a lesson's
experiments must print is checked in that lesson's own file, on the same execution.
"""

from __future__ import annotations

import pytest

import nbgrader_harness as h
from kdlab import course
from lesson_runs import on_the_worker_of

LESSONS = course.lessons()


def stderr_of(cell) -> list[str]:
    """What a cell wrote to stderr, progress bars aside."""
    return [o.text for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == "stderr"
            and "it/s" not in o.text and "%|" not in o.text and "s/it" not in o.text]


@pytest.mark.parametrize("lesson", [pytest.param(lesson, id=lesson.name, marks=on_the_worker_of(lesson.name))
                                    for lesson in LESSONS])
def test_the_solution_runs_top_to_bottom_and_its_checks_pass(lesson, executed):
    nb, seconds = executed(lesson.name)
    print(f"\n{lesson.name}: executed in {seconds:.1f} s under KDLAB_FAST=1")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, [(e.ename, e.evalue) for e in errors]
    for exercise in lesson.exercises:
        if exercise.kind == "written":
            continue
        test = h.cell(nb, f"test_{exercise.name}")
        text = "".join(o.get("text", "") for o in test.outputs)
        if exercise.kind == "code":
            assert f"{exercise.name}: all" in text and "checks passed" in text, text
        else:
            assert f"{exercise.name}: your answer" in text and "recorded" in text, text
        assert not stderr_of(test), stderr_of(test)
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert all(c.outputs for c in experiments), "every experiment cell shows something"
    assert any("image/png" in o.get("data", {}) for c in experiments for o in c.outputs), "the plots are drawn"
