"""Part 1 as an nbgrader course: the config, the lessons' structure and conventions, and that they run."""

from __future__ import annotations

import re

import nbformat
import pytest

import nbgrader_harness as h

ASSIGNMENT = "part1_foundations"
EXERCISES = {
    "01_softmax_temperature": ["softmax_t", "entropy"],
    "02_dark_knowledge": ["class_similarity", "most_similar_pairs"],
    "03_kd_loss": ["kd_kl", "distillation_loss", "fix_kd_step", "kd_logit_grad"],
}
SECTIONS = ["Learning goals", "Pitfalls", "What we learned"]


def solution(lesson):
    return h.load(h.REPO / "solutions" / ASSIGNMENT / f"{lesson}.ipynb")


def test_nbgrader_config_follows_course_md():
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(h.REPO)).load_config()
    assert config.CourseDirectory.source_directory == "solutions"
    assert config.CourseDirectory.release_directory == "notebooks"
    assert config.OverwriteCells.add_missing_cells is True
    assert 0 < config.ExecutePreprocessor.timeout <= 300


def test_the_assignment_holds_exactly_the_three_lessons():
    for folder in ("solutions", "notebooks"):
        names = sorted(p.stem for p in (h.REPO / folder / ASSIGNMENT).iterdir())
        assert names == sorted(EXERCISES), folder


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_notebooks_are_committed_clean(folder, lesson):
    nb = h.load(h.REPO / folder / ASSIGNMENT / f"{lesson}.ipynb")
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)


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
        visible = h.cell(nb, f"test_{name}").source
        assert any(f"check.{kind}" in visible for kind in ("matches", "equals", "call")), f"test_{name} checks nothing"


@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_lessons_read_like_a_chapter(lesson):
    nb = solution(lesson)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for section in SECTIONS:
        assert section in markdown, f"{lesson} lacks a '{section}' section"
    assert "$$" in markdown, "key equations in LaTeX"
    for name in EXERCISES[lesson]:
        assert re.search(rf"## Exercise \d+ — `{name}\(", markdown), f"{lesson}: no exercise section for {name}"
    # every exercise has tiered hints: a nudge first, then the key idea (tests/course/test_assessment.py checks their content)
    assert markdown.count("<summary><b>Hint 1 · a nudge</b></summary>") == len(EXERCISES[lesson])
    assert markdown.count("<summary><b>Hint 2 ") == len(EXERCISES[lesson])
    assert "<summary><b>Hint</b></summary>" not in markdown
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert any("plt.show()" in c.source for c in experiments), "an experiment with a plot"
    # the setup cell comes first, so that the autograder skips the experiments after it
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "setup()" in first_code.source


@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_solution_notebook_runs_top_to_bottom_in_fast_mode(lesson, lesson_env):
    nb = solution(lesson)
    seconds = h.execute_fast(nb)
    print(f"\n{lesson}: executed in {seconds:.1f} s under KDLAB_FAST=1")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    for name in EXERCISES[lesson]:
        text = "".join(o.get("text", "") for o in h.cell(nb, f"test_{name}").outputs)
        assert f"{name}: all" in text and "checks passed" in text
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert all(c.outputs for c in experiments), "every experiment cell shows something"
    if lesson == "01_softmax_temperature":
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for c in experiments for o in c.outputs), "the temperature widget is displayed"
