"""Lessons 7 and 8 as course notebooks: structure and conventions, and that they run top to bottom."""

from __future__ import annotations

import re

import nbformat
import pytest

import nbgrader_harness as h

ASSIGNMENT = "part3_beyond"
EXERCISES = {
    "07_feature_distillation": ["hint_loss", "attention_map", "attention_transfer_loss"],
    "08_compress_for_deployment": ["model_size_bytes", "sparsity"],
}
SECTIONS = ["Learning goals", "Pitfalls", "What we learned"]


def solution(lesson):
    return h.load(h.REPO / "solutions" / ASSIGNMENT / f"{lesson}.ipynb")


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
        assert f"Checker({name}" in h.cell(nb, f"test_{name}").source


@pytest.mark.parametrize("lesson", sorted(EXERCISES))
def test_lessons_read_like_a_chapter(lesson):
    nb = solution(lesson)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for section in SECTIONS:
        assert section in markdown, f"{lesson} lacks a '{section}' section"
    assert "$$" in markdown, "key equations in LaTeX"
    for name in EXERCISES[lesson]:
        assert re.search(rf"## \d+\. Exercise \d+ — `{name}\(", markdown), f"{lesson}: no exercise section for {name}"
    for tier in ("Hint 1 · a nudge", "Hint 2 · the key idea"):
        assert markdown.count(f"<summary><b>{tier}</b></summary>") == len(EXERCISES[lesson]), tier
    assert "<summary><b>Hint</b></summary>" not in markdown, "a single-tier hint left"
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert sum("plt.show()" in c.source for c in experiments) >= 2, "experiments with plots"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "setup()" in first_code.source
    # the lesson's numbers come from cells, not from the text: no accuracy or size is written into the prose
    prose = re.sub(r"\$[^$]*\$", "", markdown)
    assert not re.search(r"\b\d+\.\d\d\s*%", prose), "a measured percentage hard-coded in the text"


def test_lesson_8_runs_the_registered_compress_experiment():
    source = "\n".join(c.source for c in solution("08_compress_for_deployment").cells)
    assert "pipeline.experiment(" in source and "kdlab experiment compress" in source
    lesson7 = "\n".join(c.source for c in solution("07_feature_distillation").cells)
    assert "feature_kd.experiment(" in lesson7 and "Fashion-MNIST" in lesson7


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
        assert not [o for o in h.cell(nb, f"test_{name}").outputs if o.get("name") == "stderr"]
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert all(c.outputs for c in experiments), "every experiment cell shows something"
    images = sum("image/png" in o.get("data", {}) for c in experiments for o in c.outputs)
    assert images >= 2, "the plots are drawn"
    text = "".join(o.get("text", "") for c in experiments for o in c.outputs)
    if lesson == "08_compress_for_deployment":
        assert "keeps" in text and "of its size" in text and "times faster" in text
        assert "restores identical logits: True" in text
    else:
        assert "student alone" in text and "attention transfer" in text and "KD + hints + AT" in text
