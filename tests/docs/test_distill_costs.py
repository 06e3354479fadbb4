"""What `kdlab distill` compresses, as the README and lesson 5 say it: every number from the JSON its command wrote.

* docs/results/model-costs.json (``python benchmarks/model_costs.py``) holds the parameters and MACs kdlab
  counts and the latencies it measured; the README's cost table is that JSON;
* docs/results/distill-quick-mlp-teacher-mnist-s0.json is the paper's pairing (``kdlab distill --teacher
  mlp-teacher``), with the experiments' common header; the README and lesson 5 quote its numbers;
* lesson 5's compression text uses the counted parameters and MACs and the measured latencies.
"""

from __future__ import annotations

import json
import re
import statistics

import nbgrader_harness as h
from markdown_tools import json_numbers, table_rows

from kdlab import costs, models

RESULTS = h.REPO / "docs" / "results"
README = h.REPO / "README.md"
LESSON = h.REPO / "solutions" / "part2_mnist" / "05_distill.ipynb"
PAIRING = "distill-quick-mlp-teacher-mnist-s0.json"
PAIRING_COMMAND = f"kdlab distill --preset quick --teacher mlp-teacher --seed 0 --json docs/results/{PAIRING}"
COSTS_COMMAND = "python benchmarks/model_costs.py --json docs/results/model-costs.json"
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")
ROLES = ("teacher", "student_scratch", "student_distilled")


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def main_job() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## The main job")
    return text[start:text.index("\n## ", start + 1)]


def lesson_cell(cell_id: str) -> str:
    return next(c.source for c in h.load(LESSON).cells if c.id == cell_id)


def paragraph_with(text: str, marker: str) -> str:
    return next(p for p in re.split(r"\n\s*\n", text) if marker in p)


def shown(value: float) -> set[str]:
    """The ways the docs write a measured number."""
    if float(value).is_integer():
        return {f"{int(value)}", f"{int(value):,}"}
    return {f"{value:.{d}f}" for d in range(4)} | {f"{value:.0f}"}


def available(*results: dict) -> set[str]:
    return {text for x in json_numbers(*results) for text in shown(x)}


def ratios(a: dict, b: dict) -> set[str]:
    return {f"{a[k] / b[k]:.2f}" for k in ("params", "macs", "latency_ms")}


def test_model_costs_json_holds_what_kdlab_counts():
    r = load("model-costs.json")
    assert set(r["models"]) == {"cnn-small", "mlp-1200x2", "mlp-800x2"}
    for arch, e in r["models"].items():
        model = models.build(arch)
        assert (e["params"], e["macs"]) == (models.count_params(model), costs.macs(model)), arch
        assert e["latency_ms"] == statistics.median(e["latency_ms_rounds"]) > 0
    assert r["latency_settings"]["batch_size"] == 1 and r["latency_settings"]["threads"] == 1


def test_the_readme_cost_table_is_the_benchmarks():
    r, text = load("model-costs.json"), main_job()
    assert COSTS_COMMAND in text
    rows = [row for row in table_rows(text) if row[0].startswith("`") and "MACs" not in row[0]]
    seen = set()
    for row in rows:
        arch = re.match(r"`([^`]+)`", row[0]).group(1)
        if arch not in r["models"]:
            continue
        e, seen = r["models"][arch], seen | {arch}
        assert row[1:4] == [f"{e['params']:,}", f"{e['macs']:,}", f"{e['latency_ms']:.2f}"], (arch, row)
    assert seen == set(r["models"])


def test_the_paper_pairing_ran_on_the_full_data_with_the_common_header():
    r = load(PAIRING)
    assert (r["seed"], r["fast_mode"], r["test_size"], r["train_size"]) == (0, False, 10_000, 60_000)
    assert r["teacher_recipe"] == "mlp-teacher" and r["teacher"]["arch"] == "mlp-1200x2"
    assert r["student_distilled"]["arch"] == r["student_scratch"]["arch"] == "mlp-800x2"
    assert "total_seconds" not in r and r["seconds"]["total"] > 0
    for role in ROLES:
        model = models.build(r[role]["arch"])
        assert r[role]["macs"] == costs.macs(model) and r[role]["params"] == models.count_params(model)


# uptime's load average at the start and the end of the pairing run, quoted beside its time (not in any JSON)
PAIRING_LOAD = {"7.49", "8.68"}


def test_the_readme_and_lesson_5_quote_the_pairing_run():
    r, cnn, seeds, m = (load(name) for name in (PAIRING, "distill-quick-mnist-s0.json", "distill-quick-seeds.json",
                                                "model-costs.json"))
    student = m["models"]["mlp-800x2"]
    allowed = (available(r, cnn, seeds, m) | ratios(student, m["models"]["mlp-1200x2"]) | PAIRING_LOAD
               | {"0", "2", "3", "4", "8", "800", "1200"})   # seed 0, lessons 2-3, 4 and 8 epochs, the widths
    for where, text in (("README", paragraph_with(main_job(), PAIRING_COMMAND)), ("lesson 5", lesson_cell("c008n"))):
        assert PAIRING_COMMAND in text, where
        for role in ROLES:
            assert str(r[role]["test_errors"]) in text, (where, role)
        assert f"{r['seconds']['total']:.0f} s" in text, where
        prose = re.sub(r"\]\([^)]*\)", "]", text.replace(PAIRING_COMMAND, ""))   # without the command and link targets
        stray = [n for n in NUMBER.findall(prose) if n not in allowed]
        assert stray == [], f"{where}: {stray} are in none of the JSON it cites"
    lesson = lesson_cell("c008n")
    for arch, role in (("cnn-small", cnn), ("mlp-1200x2", r)):
        e = m["models"][arch]
        row = f"| `{arch}` | {e['params']:,} | {e['macs']:,} | " + " | ".join(
            str(role[k]["test_errors"]) for k in ROLES) + " |"
        assert row in lesson, row


def test_lesson_5_and_the_readme_say_what_the_presets_compress():
    m = load("model-costs.json")["models"]
    cnn, mlp, student = m["cnn-small"], m["mlp-1200x2"], m["mlp-800x2"]
    readme = main_job()
    compressed = lesson_cell("c008")
    learned = lesson_cell("c015b")
    for text in (readme, compressed):
        for n in (f"{cnn['params']:,}", f"{student['params']:,}", f"{cnn['macs']:,}", f"{student['macs']:,}",
                  f"{student['params'] / cnn['params']:.2f}", f"{student['macs'] / cnn['macs']:.2f}"):
            assert n in text, n
    for ms in (cnn["latency_ms"], student["latency_ms"]):
        assert f"{ms:.2f} ms" in compressed and f"{ms:.2f}" in readme
    latency = f"{student['latency_ms'] / cnn['latency_ms']:.2f} times"
    assert latency in compressed.replace("\n", " ").replace("(", "") and f"{latency} its" in readme.replace("\n", " ")
    assert "not the **size**" in compressed and "*more* parameters" in compressed
    assert f"{student['params'] / cnn['params']:.2f} times" in learned and f"{student['macs'] / cnn['macs']:.2f} times" in learned
    assert f"{student['params'] / mlp['params']:.2f} times" in learned and f"{student['macs'] / mlp['macs']:.2f}" in learned
    # the hand count in the text is kdlab's: the second convolution of cnn-small
    conv2 = models.build("cnn-small").features[3]
    assert f"{sum(p.numel() for p in conv2.parameters()):,} parameters" in compressed
    assert f"{costs.macs(conv2, (32, 14, 14)):,} MACs" in compressed


def test_lesson_5_states_the_t_squared_gradient_as_lesson_3_measures_it():
    r = load("t-squared-s0.json")
    text = lesson_cell("c002")
    assert "whatever $T$ is" not in text and "same scale" not in text
    assert "T\\,(q_i - p_i)" in text and "large against the gaps" in text and "T = 1, \\dots, 64" in text
    assert "kdlab experiment t-squared --seed 0" in text and "docs/results/t-squared-s0.json" in text
    assert r["ratio_between"] == [1.0, 8.0] and not r["fast_mode"]
    assert (f"grows\n  {r['ratio_with_t2']['fresh']:.2f} times for a fresh student and "
            f"{r['ratio_with_t2']['trained']:.2f} times for a trained one") in text
