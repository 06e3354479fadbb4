"""Lesson 7's text, the cheat sheet and docs/benchmarks.md quote docs/results/feature-kd-s0.json: each number, read here.

Whenever the JSON is regenerated (`kdlab experiment feature-kd --seed 0 --json docs/results/feature-kd-s0.json`),
these tests say which sentence still quotes the old run.
"""

from __future__ import annotations

import json
import re

import pytest

import nbgrader_harness as h
from kdlab.features import METHODS

RESULT = json.loads((h.REPO / "docs" / "results" / "feature-kd-s0.json").read_text())
ROWS = {r["method"]: r for r in RESULT["rows"]}
COMMAND = "kdlab experiment feature-kd --seed 0"
# How the docs name each method.
SHORT = {"student alone": "student alone", "logit KD": "logit KD", "hints (FitNets)": "hints",
         "attention transfer": "attention transfer", "relational KD (RKD)": "relational KD",
         "KD + hints + AT": "KD + hints + AT", "KD + RKD": "KD + RKD"}


def flat(text: str) -> str:
    """Whitespace (line breaks of wrapped Markdown included) collapsed to single spaces."""
    return re.sub(r"\s+", " ", text)


def errors_text() -> str:
    """"student alone 1,290; logit KD 1,244; ...; teacher 840": every row's test errors, in the JSON's order."""
    parts = [f"{SHORT[r['method']]} {r['test_errors']:,}" for r in RESULT["rows"]]
    return "; ".join(parts + [f"teacher {RESULT['teacher']['test_errors']:,}"])


def test_the_json_is_a_full_run_of_every_method():
    assert RESULT["experiment"] == "feature-kd" and RESULT["seed"] == 0 and RESULT["fast_mode"] is False
    assert RESULT["dataset"] == "fashion-mnist" and RESULT["test_size"] == 10_000 and RESULT["train_size"] == 60_000
    assert list(ROWS) == list(METHODS) and set(SHORT) == set(METHODS)
    assert RESULT["rkd_distance_weight"] == 25 and RESULT["rkd_angle_weight"] == 50
    assert len({r["params"] for r in RESULT["rows"]}) == 1        # one student architecture
    for r in RESULT["rows"]:
        assert set(r["relation_gap"]) == {"distance", "angle"} and set(r["attention_gap"]) == set(RESULT["at_layers"])


def test_the_cheat_sheet_row_is_the_json():
    text = (h.REPO / "docs" / "cheatsheet.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{COMMAND}`"))
    assert f"test errors: {errors_text()}" in row
    assert f"a {ROWS['student alone']['params']:,}-parameter CNN student, {RESULT['epochs']} epochs each" in row
    rkd, alone = ROWS["relational KD (RKD)"], ROWS["student alone"]
    assert (f"RKD-D gap {alone['relation_gap']['distance']:.4f} alone, {rkd['relation_gap']['distance']:.4f} "
            f"with RKD") in row


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_lesson_7_quotes_the_committed_run(folder):
    nb = h.load(h.REPO / folder / "part3_beyond" / "07_feature_distillation.ipynb")
    text = flat("\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    assert COMMAND in text and "docs/results/feature-kd-s0.json" in text
    assert f"test errors: {errors_text()}" in text
    rkd, alone = ROWS["relational KD (RKD)"], ROWS["student alone"]
    for key, name in (("distance", "RKD-D"), ("angle", "RKD-A")):
        assert f"{name} gap {alone['relation_gap'][key]:.4f} for the student alone and {rkd['relation_gap'][key]:.4f}" \
               f" for the relational student" in text
    assert f"its student made {alone['test_errors'] - rkd['test_errors']} fewer test errors than the student alone" in text


def test_benchmarks_gives_the_runs_time_and_load():
    text = flat((h.REPO / "docs" / "benchmarks.md").read_text())
    assert f"{COMMAND} --json docs/results/feature-kd-s0.json" in text
    seconds = RESULT["seconds"]
    assert f"`feature-kd-s0.json` (lesson 7) took {seconds['total']:.0f} s in all" in text
    assert f"{seconds['teacher']:.0f} s trained the teacher" in text
    rkd = ROWS["relational KD (RKD)"]["train_seconds"]
    assert f"{ROWS['student alone']['train_seconds']:.0f} s for the student alone and {rkd:.0f} s" in text
    relational = ("relational KD (RKD)", "KD + RKD")
    five = sum(r["train_seconds"] for r in RESULT["rows"] if r["method"] not in relational)
    two = sum(ROWS[m]["train_seconds"] for m in relational)
    assert f"those five students took {five:.0f} s" in text and f"the two relational students' {two:.0f} s" in text


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_lesson_10_q34_quotes_the_committed_run(folder):
    nb = h.load(h.REPO / folder / "part4_interview" / "10_interview_drill.ipynb")
    q34 = flat(next(c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("### Q34.")))
    alone, rkd = ROWS["student alone"], ROWS["relational KD (RKD)"]
    assert COMMAND in q34
    assert (f"relational KD alone took the student from {alone['test_errors']:,} test errors to {rkd['test_errors']:,} "
            f"and brought its RKD-D gap to the teacher from {alone['relation_gap']['distance']:.4f} to "
            f"{rkd['relation_gap']['distance']:.4f}") in q34
    assert (f"KD + RKD made {ROWS['KD + RKD']['test_errors']:,} against logit KD's "
            f"{ROWS['logit KD']['test_errors']:,}") in q34
