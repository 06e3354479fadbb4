"""Part 2 (lessons 4-6) as an nbgrader assignment: structure, conventions, and that the lessons run."""

from __future__ import annotations

import re

import nbformat
import pytest

import nbgrader_harness as h

ASSIGNMENT = "part2_mnist"
EXERCISES = {
    "04_teacher": ["count_errors", "jitter"],
    "05_distill": ["distill_step", "train_distilled"],
    "06_dark_knowledge_experiments": ["bias_shift_for_class"],
}
SECTIONS = ["Learning goals", "Pitfalls", "What we learned"]


def solution(lesson):
    return h.load(h.REPO / "solutions" / ASSIGNMENT / f"{lesson}.ipynb")


def test_the_assignment_holds_exactly_the_three_lessons():
    for folder in ("solutions", "notebooks"):
        names = sorted(p.name for p in (h.REPO / folder / ASSIGNMENT).iterdir())
        assert names == [f"{lesson}.ipynb" for lesson in sorted(EXERCISES)], folder


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_notebooks_are_committed_clean(folder, lesson):
    nb = h.load(h.REPO / folder / ASSIGNMENT / f"{lesson}.ipynb")
    nbformat.validate(nb)
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_exercise_cells_follow_the_grade_id_conventions(lesson):
    nb = solution(lesson)
    h.check_exercise_cells(nb, EXERCISES[lesson])


@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_released_notebooks_hide_tests_and_solutions(lesson):
    nb = h.load(h.REPO / "notebooks" / ASSIGNMENT / f"{lesson}.ipynb")
    text = "\n".join(c.source for c in nb.cells)
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
    for name in EXERCISES[lesson]:
        assert "raise NotImplementedError()" in h.cell(nb, name).source
        assert "check.call(" in h.cell(nb, f"test_{name}").source   # visible checks remain


@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_lessons_read_like_a_chapter(lesson):
    nb = solution(lesson)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for section in SECTIONS:
        assert section in markdown, f"{lesson} lacks a '{section}' section"
    assert "$$" in markdown, "key equations in LaTeX"
    for name in EXERCISES[lesson]:
        assert re.search(rf"## Exercise \d+ — `{name}\(", markdown), f"{lesson}: no exercise section for {name}"
    for tier in ("Hint 1 · a nudge", "Hint 2 · the key idea"):       # tiered hints, one set per exercise
        assert markdown.count(f"<summary><b>{tier}</b></summary>") == len(EXERCISES[lesson]), tier
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert any("plt.show()" in c.source for c in experiments), "an experiment with a plot"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "setup()" in first_code.source


def test_lesson_6_names_the_terminal_commands():
    markdown = "\n".join(c.source for c in solution("06_dark_knowledge_experiments").cells if c.cell_type == "markdown")
    for command in ("kdlab experiment omitted-digit --digit 3 --seed 0 --json",
                    "kdlab experiment few-labels --fraction 0.01 --seed 0 --json",
                    "kdlab experiment temperature-vs-width --seed 0 --json"):
        assert command in markdown


@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_solution_notebook_runs_top_to_bottom_in_fast_mode(lesson, lesson_env):
    nb = solution(lesson)
    seconds = h.execute_fast(nb)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    for name in EXERCISES[lesson]:
        out = "".join(o.get("text", "") for o in h.cell(nb, f"test_{name}").outputs)
        assert f"{name}: all" in out and "checks passed" in out
        assert not [o for o in h.cell(nb, f"test_{name}").outputs if o.get("name") == "stderr"]
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert all(c.execution_count is not None for c in experiments)   # they ran (not skipped) outside nbgrader
    print(f"{lesson}: {seconds:.0f} s under KDLAB_FAST=1")
