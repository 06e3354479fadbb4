"""Lesson 8's text, the cheat sheet and docs/benchmarks.md quote docs/results/compress-s0.json: each number recomputed.

Latencies move from run to run; test errors, sizes and parameter counts should not. Whenever the JSON is
regenerated (`kdlab experiment compress --seed 0 --json docs/results/compress-s0.json`), these tests say which
sentence still quotes the old run.
"""

from __future__ import annotations

import json
import re

import nbgrader_harness as h

RESULT = json.loads((h.REPO / "docs" / "results" / "compress-s0.json").read_text())
LESSON = h.REPO / "solutions" / "part3_beyond" / "08_compress_for_deployment.ipynb"


def flat(text: str) -> str:
    """Whitespace (line breaks of wrapped Markdown included) collapsed to single spaces."""
    return re.sub(r"\s+", " ", text)


def lesson_markdown() -> str:
    return flat("\n".join(c.source for c in h.load(LESSON).cells if c.cell_type == "markdown"))


def speed(ratio: float) -> str:
    return f"{ratio:.1f} times faster" if ratio >= 1 else f"{1 / ratio:.1f} times slower"


def us(row: dict) -> str:
    return f"{1000 * row['latency_ms']:.0f} us"


def test_the_json_is_a_full_run_with_the_five_rows_and_the_comparison():
    rows, ft = RESULT["rows"], RESULT["finetune"]
    assert RESULT["experiment"] == "compress" and RESULT["seed"] == 0 and RESULT["fast_mode"] is False
    assert RESULT["test_size"] == 10_000 and len(rows) == 5
    assert "teacher" in rows[0]["name"] and "deployed" in rows[-1]["name"]
    assert ft["seeds"] == [1, 2, 3] and ft["mask_kept"] is True
    assert all(s == ft["sparsity_before"] for r in ft["losses"].values() for s in r["sparsity"])
    assert rows[3]["test_errors"] == ft["losses"]["kd_teacher"]["test_errors"][0]   # the table's pruned row
    assert RESULT["headline"]["test_errors"] == rows[-1]["test_errors"]


def test_lesson_8_quotes_the_int8_slowdown_the_headline_and_the_gap():
    rows, h_ = RESULT["rows"], RESULT["headline"]
    text = lesson_markdown()
    ratio = RESULT["int8"]["latency_ratio"]
    assert f"it is {speed(1 / ratio)}: {us(rows[2])} against {us(rows[1])} per image" in text
    assert f"(int8 made it {speed(1 / ratio)}, section 3)" in text
    alone = RESULT["student_alone"]["test_errors"]
    assert (f"the deployed student keeps {100 * h_['accuracy_kept']:.1f}% of the teacher's accuracy, yet makes "
            f"{rows[-1]['test_errors']} test errors against the teacher's {rows[0]['test_errors']}") in text
    closed = [f"{100 * r['gap_closed']:.0f}%" for r in (rows[1], rows[-1])]
    assert (f"the student trained alone ({alone} test errors) and the teacher, the distilled student closes "
            f"{closed[0]} and the deployed one keeps {closed[1]}") in text


def test_lesson_8_quotes_the_fine_tuning_comparison():
    rows, ft = RESULT["rows"], RESULT["finetune"]
    losses = ft["losses"]
    text = lesson_markdown()
    assert (f"takes it from {rows[1]['test_errors']} to {ft['no_finetune_test_errors']} test errors; "
            f"{ft['epochs']} epochs of fine-tuning ({ft['steps']:,} steps) then give, for seeds 1, 2, 3") in text
    for key in ("cross_entropy", "kd_teacher", "kd_unpruned"):
        r = losses[key]
        assert f"| {r['label']} | {', '.join(map(str, r['test_errors']))} | {r['mean_test_errors']:.1f} |" in text
    ce, kd, self_kd = (losses[k]["mean_test_errors"] for k in ("cross_entropy", "kd_teacher", "kd_unpruned"))
    assert f"{ce:.1f} on average, against {kd:.1f} with the CNN teacher and {self_kd:.1f} with the unpruned" in text
    assert f"({ce:.1f} against {kd:.1f} test errors on average" in text
    assert f"where pruning cost {ft['no_finetune_test_errors'] - rows[1]['test_errors']} test errors" in text
    # "on every seed", "larger than the spread between seeds": what the text says, the JSON must show
    assert all(k > c for key in ("kd_teacher", "kd_unpruned")
               for k, c in zip(losses[key]["test_errors"], losses["cross_entropy"]["test_errors"]))
    spread = max(max(r["test_errors"]) - min(r["test_errors"]) for r in losses.values())
    assert min(kd, self_kd) - ce > spread


def test_the_cheat_sheet_states_the_compress_run():
    text = flat((h.REPO / "docs" / "cheatsheet.md").read_text())
    row = next(line for line in text.split(" | `kdlab ") if line.startswith("experiment compress --seed 0"))
    rows, h_, losses = RESULT["rows"], RESULT["headline"], RESULT["finetune"]["losses"]
    for fact in [f"keeps {100 * h_['accuracy_kept']:.1f}% of the teacher's accuracy ({rows[-1]['test_errors']} test "
                 f"errors against {rows[0]['test_errors']}",
                 f"the student trained alone {RESULT['student_alone']['test_errors']}",
                 f"closes {100 * h_['gap_closed']:.0f}% of that gap",
                 f"{100 * h_['size_fraction']:.1f}% of its size ({rows[-1]['size_bytes']:,} against "
                 f"{rows[0]['size_bytes']:,} bytes), {speed(h_['speedup'])} at batch 1",
                 f"int8 alone makes the student {speed(1 / RESULT['int8']['latency_ratio'])}",
                 f"({losses['cross_entropy']['mean_test_errors']:.1f} against "
                 f"{losses['kd_teacher']['mean_test_errors']:.1f} test errors on average)"]:
        assert fact in row, fact


def test_benchmarks_quotes_the_runs_time():
    text = flat((h.REPO / "docs" / "benchmarks.md").read_text())
    assert "kdlab experiment compress --seed 0 --json docs/results/compress-s0.json" in text
    assert f"compress-s0.json took {RESULT['seconds']['total']:.0f} s" in text
