"""What lessons 1 to 8 show when they run: the widgets, the experiments' tables, the terminal commands they name.

The executions are the session's (tests/course/conftest.py); lessons 9 and 10 have their own files.
"""

from __future__ import annotations

import nbgrader_harness as h
from kdlab import course
from lesson_runs import on_the_worker_of


def experiment_outputs(nb) -> tuple[list, str]:
    cells = [c for c in nb.cells if h.is_experiment(c)]
    return cells, "".join(o.get("text", "") for c in cells for o in c.outputs)


def source_of(name: str, cell_type: str | None = None) -> str:
    nb = h.load(h.REPO / course.lesson(name).path)
    return "\n".join(c.source for c in nb.cells if cell_type is None or c.cell_type == cell_type)


@on_the_worker_of("01_softmax_temperature")
def test_lesson_1_displays_the_temperature_widget(executed):
    cells, _ = experiment_outputs(executed("01_softmax_temperature")[0])
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in cells for o in c.outputs)


@on_the_worker_of("03_kd_loss")
def test_lesson_3_measures_the_soft_gradient_against_t_with_the_registered_experiment(executed):
    nb = executed("03_kd_loss")[0]
    by_id = {c.get("id"): c for c in nb.cells}
    run = by_id["l03-t2-run"]
    text = "".join(o.get("text", "") for o in run.outputs)
    assert "t_squared.experiment(seed=0" in run.source and "kdlab experiment t-squared --seed 0" in source_of("03_kd_loss")
    for student in ("fresh", "trained"):
        assert f"{student} student: with T², the soft gradient at T = 8 is" in text
    assert "T -> inf" in text and any("image/png" in o.get("data", {}) for o in run.outputs)
    pitfalls = "".join(o.get("text", "") for o in by_id["l03-15"].outputs)
    assert "bug 7, the hard term alone, fresh" in pitfalls and "bug 7, the hard term alone, trained" in pitfalls


@on_the_worker_of("05_distill")
def test_lesson_5_shows_what_each_model_costs_beside_its_errors(executed):
    """Section 3's table has the cost columns; the paper's pairing and the alpha sweep are measured and plotted."""
    nb = executed("05_distill")[0]
    text = {c.id: "".join(o.get("text", "") for o in c.outputs) for c in nb.cells if h.is_experiment(c)}
    for column in ("params", "MACs/image", "CPU ms", "test errors"):
        assert column in text["c007"], column
    assert "4,241,152" in text["c007"] and "1,275,200" in text["c007"] and "3.03x the parameters" in text["c007"]
    assert "mlp-1200x2" in text["c008m"] and "2,392,800" in text["c008m"] and "0.53x" in text["c008m"]
    assert "kdlab distill --preset quick --teacher mlp-teacher --seed 0" in source_of("05_distill", "markdown")
    for cell_id in ("c008m", "c014", "c015a"):
        cell = next(c for c in nb.cells if c.id == cell_id)
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell_id
    assert "best alpha here" in text["c015a"]


def test_lesson_6_names_the_terminal_commands_of_its_experiments():
    markdown = source_of("06_dark_knowledge_experiments", "markdown")
    for command in ("kdlab experiment omitted-digit --digit 3 --seed 0 --json",
                    "kdlab experiment few-labels --fraction 0.01 --seed 0 --json",
                    "kdlab experiment temperature-vs-width --seed 0 --json",
                    "kdlab experiment capacity-gap --seed 0 --json", "kdlab experiment label-smoothing --seed 0 --json"):
        assert command in markdown


@on_the_worker_of("06_dark_knowledge_experiments")
def test_lesson_6_runs_and_plots_the_capacity_gap_and_label_smoothing(executed):
    nb = executed("06_dark_knowledge_experiments")[0]
    by_id = {c.get("id"): c for c in nb.cells}
    for cell_id, call, words in (("c020", "capacity_gap.experiment(seed=0", "Does a better teacher always give a better"),
                                 ("c023", "label_smoothing.experiment(seed=0", "the smoothed teacher's students")):
        cell = by_id[cell_id]
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert call in cell.source and words in text, cell_id
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell_id
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("## ")]
    numbered = [h for h in headings if h[3].isdigit()]
    assert [int(h[3:].split(".")[0]) for h in numbered] == list(range(1, 8))
    assert numbered[-2:] == ["## 6. The capacity gap", "## 7. Why KD works: label smoothing"]


@on_the_worker_of("07_feature_distillation")
def test_lesson_7_compares_the_feature_methods_on_fashion_mnist(executed):
    assert "Fashion-MNIST" in source_of("07_feature_distillation")
    cells, text = experiment_outputs(executed("07_feature_distillation")[0])
    assert "student alone" in text and "attention transfer" in text and "KD + hints + AT" in text
    assert sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs) >= 2


@on_the_worker_of("08_compress_for_deployment")
def test_lesson_8_prints_its_headline_from_the_registered_compress_experiment(executed):
    assert "kdlab experiment compress" in source_of("08_compress_for_deployment")
    cells, text = experiment_outputs(executed("08_compress_for_deployment")[0])
    assert "keeps" in text and "of its size" in text and ("times faster" in text or "times slower" in text)
    assert "test errors against its" in text and ("of the gap between the student trained alone" in text
                                                  or "no gap to close" in text)
    assert "int8 alone makes the float32 student" in text
    assert "restores identical logits: True" in text
    # the fine-tuning comparison: three losses from the same pruned weights, the zeros kept
    assert "cross-entropy on the labels" in text and "KD, the unpruned student's logits" in text
    assert "pruned weights still exactly zero after every fine-tuning: True" in text
    assert "against cross-entropy: fewer test errors on" in text
    assert sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs) >= 3
