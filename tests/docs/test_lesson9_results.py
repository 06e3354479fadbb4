"""Lesson 9's sections 8 and 9, the cheat sheet and docs/benchmarks.md quote two committed full runs: each number
recomputed from the JSON its command wrote.

    kdlab experiment llm-on-policy --seed 0 --json docs/results/llm-on-policy-s0.json
    kdlab experiment llm-seq-kd --seed 0 --json docs/results/llm-seq-kd-s0.json

The quoting cells (``l9s8read``, ``l9s8lambdaread``, ``l9s9read``) are checked in solutions/ and in the generated
notebooks/: every decimal number they print must be one of the JSON's (rounded as printed), every table row must be
the JSON's row, and each comparison the prose makes must hold in the JSON. Whenever a JSON is regenerated, these
tests say which sentence still quotes the old run.
"""

from __future__ import annotations

import json
import re

import nbgrader_harness as h
from markdown_tools import json_numbers
import pytest

from kdlab.lm import onpolicy, seqkd

RESULTS = h.REPO / "docs" / "results"
ONP = json.loads((RESULTS / "llm-on-policy-s0.json").read_text())
SKD = json.loads((RESULTS / "llm-seq-kd-s0.json").read_text())
NAME = "part3_beyond/09_distilling_language_models.ipynb"
COPIES = {"solutions": h.REPO / "solutions" / NAME, "notebooks": h.REPO / "notebooks" / NAME}
QUOTING = {"l9s8read": ("llm-on-policy", ONP), "l9s8lambdaread": ("llm-on-policy", ONP), "l9s9read": ("llm-seq-kd", SKD)}
LABEL = {"single-step": "single-step (GKD)", "decomposed": "decomposed", "length-norm": "length-norm",
         "teacher-mix": "teacher-mix", "minillm": "minillm (MiniLLM)", "score-function": "score-function"}
DECIMAL = re.compile(r"(?<![\w.])\d+(?:,\d{3})*\.\d+")


def flat(text: str) -> str:
    """Whitespace (line breaks of wrapped Markdown included) collapsed to single spaces."""
    return re.sub(r"\s+", " ", text)


def cells(copy: str) -> dict:
    return {c.get("id"): c.source for c in h.load(COPIES[copy]).cells if c.get("id") in QUOTING}


def shown(value: float) -> set[str]:
    """The ways the docs write a measured number: rounded to 0-4 decimals, and a fraction as a percentage."""
    out = {f"{value:.{d}f}" for d in range(5)} | {f"{value:,.1f}"}
    if 0 <= value <= 1:
        out.add(f"{100 * value:.1f}")
    return out


def available(result: dict) -> set[str]:
    return {text for x in json_numbers(result) for text in shown(float(x))}


def gradient_rows(r: dict) -> list[str]:
    e0, e1 = r["gradient"]["start"]["estimators"], r["gradient"]["trained"]["estimators"]
    return [f"| {LABEL[n]} | {e['cosine']:.3f} | {e['cosine_of_mean']:.3f} | {e['bias']:.3f} | {e['error']:.3f} "
            f"| {e1[n]['cosine_of_mean']:.3f} |" for n, e in e0.items()]


def student_rows(r: dict) -> list[str]:
    rows = [("start", r["student_start"])] + [(LABEL[n], x["mean"]) for n, x in r["students"].items()]
    return [f"| {n} | {s['kl_student_to_teacher']:.4f} | {s['kl_teacher_to_student']:.4f} | "
            f"{s['kl_student_to_truth']:.4f} | {s['kl_truth_to_student']:.4f} | {s['entropy']:.3f} |" for n, s in rows]


def lambda_rows(r: dict) -> list[str]:
    return [f"| {e['lambda']:g} | {e['mean']['kl_truth_to_student']:.4f} | {e['mean']['kl_student_to_truth']:.4f} | "
            f"{e['mean']['kl_student_to_teacher']:.4f} | {e['mean']['sample_validity']:.3f} | "
            f"{e['mean']['train_seconds']:.1f} |" for e in r["lambda"]["sweep"]]


def seqkd_rows(entry: dict) -> list[str]:
    rows = [(n, m["mean"]) for n, m in entry["methods"].items()] + [("start", entry["start"])]
    return [f"| {n} | {m['match_teacher_beam']:.3f} | {m['valid']:.3f} | {m['greedy_is_beam']:.3f} | "
            f"{m['greedy_prob']:.3f} | {m['kl_truth_to_student']:.4f} | {m['kl_student_to_truth']:.4f} |"
            for n, m in rows]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# ------------------------------------------------------------------------------------------------ the JSON

def test_the_jsons_are_full_runs_of_seed_0_at_the_default_settings():
    for r, name in ((ONP, "llm-on-policy"), (SKD, "llm-seq-kd")):
        assert r["experiment"] == name and r["seed"] == 0 and r["fast_mode"] is False and r["device"] == "cpu"
        assert r["config"]["steps"] == 1000 and r["config"]["seeds"] == 2 and r["config"]["max_len"] == 10
    assert list(ONP["gradient"]["start"]["estimators"]) == list(onpolicy.ESTIMATORS)
    assert list(ONP["students"]) == list(onpolicy.TRAINED)
    assert [e["lambda"] for e in ONP["lambda"]["sweep"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ONP["gradient"]["start"]["n_batches"] == 100 and ONP["gradient"]["start"]["batch_size"] == 64
    assert list(SKD["students"]) == ["8", "2"] and SKD["config"]["width"] == 5 and SKD["config"]["n_eval"] == 2000
    assert all(list(e["methods"]) == list(seqkd.STUDENTS) for e in SKD["students"].values())


def test_every_claim_the_experiments_print_holds_in_the_committed_runs():
    for verdicts in (onpolicy.claims(ONP), seqkd.claims(SKD)):
        assert all(ok for _, ok, _ in verdicts), [(c, n) for c, ok, n in verdicts if not ok]


# ------------------------------------------------------------------------------------------------ the lesson

@pytest.mark.parametrize("copy", sorted(COPIES))
def test_the_quoting_cells_name_their_command_and_print_only_the_jsons_numbers(copy):
    found = cells(copy)
    assert set(found) == set(QUOTING), copy
    for cid, text in found.items():
        name, result = QUOTING[cid]
        assert f"`kdlab experiment {name} --seed 0 --json docs/results/{name}-s0.json`" in text
        stray = [n for n in DECIMAL.findall(text) if n not in available(result)]
        assert not stray, f"{copy}, {cid}: numbers not in {name}-s0.json: {stray}"


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_section_8_quotes_the_gradient_and_the_students(copy):
    r = ONP
    text = flat(cells(copy)["l9s8read"])
    g0, g1 = r["gradient"]["start"], r["gradient"]["trained"]
    e0, e1 = g0["estimators"], g1["estimators"]
    st = {n: x["mean"] for n, x in r["students"].items()}
    ss, dc, sf, mi = (st[n] for n in ("single-step", "decomposed", "score-function", "minillm"))
    for row in gradient_rows(r) + student_rows(r):
        assert row in text, row
    assert f"({r['seconds']['total']:.1f} s on the course's 2-core machine)" in text
    assert f"= {g0['kl']:.4f} nats) and, last column, at the student GKD's gradient trained (exact KL {g1['kl']:.4f})" in text
    # the comparisons the prose makes
    assert (f"has cosine {e0['single-step']['cosine_of_mean']:.3f} with the exact gradient; the decomposed estimator's "
            f"{e0['decomposed']['cosine_of_mean']:.3f} and the plain score-function one's "
            f"{e0['score-function']['cosine_of_mean']:.3f}") in text
    assert e0["single-step"]["cosine_of_mean"] < min(e0[n]["cosine_of_mean"] for n in ("decomposed", "score-function"))
    assert e0["length-norm"]["cosine_of_mean"] < e0["teacher-mix"]["cosine_of_mean"]
    assert all(e["error"] > 1 for e in e0.values()) and "Every estimator's error is above 1" in text
    assert min(e0, key=lambda n: e0[n]["error"]) == "single-step" and e0["decomposed"]["error"] < e0["score-function"]["error"]
    assert (f"GKD's {ss['kl_student_to_teacher']:.4f}, MiniLLM's {mi['kl_student_to_teacher']:.4f}, the decomposed "
            f"estimator's {dc['kl_student_to_teacher']:.4f}, the score-function one's {sf['kl_student_to_teacher']:.4f}") in text
    assert ss["kl_student_to_teacher"] < mi["kl_student_to_teacher"] < min(dc["kl_student_to_teacher"],
                                                                           sf["kl_student_to_teacher"])
    assert max(dc["entropy"], sf["entropy"]) < ss["entropy"]
    assert min(dc["kl_teacher_to_student"], sf["kl_teacher_to_student"]) > ss["kl_teacher_to_student"]
    assert sorted(st, key=lambda n: st[n]["kl_student_to_truth"])[:2] == ["decomposed", "score-function"]
    assert (f"{e1['single-step']['cosine_of_mean']:.3f} with the exact gradient (it was "
            f"{e0['single-step']['cosine_of_mean']:.3f} at the start)") in text
    assert e1["single-step"]["cosine_of_mean"] < 0.1 < e1["decomposed"]["cosine_of_mean"]


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_section_8_quotes_the_lambda_sweep(copy):
    lam = ONP["lambda"]
    text = flat(cells(copy)["l9s8lambdaread"])
    for row in lambda_rows(ONP):
        assert row in text, row
    sweep = lam["sweep"]
    lo, hi = sweep[0], sweep[-1]
    assert (f"ends with the lowest $\\mathrm{{KL}}(\\text{{truth}}\\,\\|\\,q)$ ({lo['mean']['kl_truth_to_student']:.4f}) and "
            f"$\\mathrm{{KL}}(q\\,\\|\\,\\text{{truth}})$ ({lo['mean']['kl_student_to_truth']:.4f}) of the sweep") in text
    for key in ("kl_truth_to_student", "kl_student_to_truth", "kl_student_to_teacher"):
        assert all(lo["mean"][key] < e["mean"][key] for e in sweep[1:]), key
        assert hi["mean"][key] == max(e["mean"][key] for e in sweep), key
    # "worse on each seed"
    assert all(h_[k] > l_[k] for h_, l_ in zip(hi["per_seed"], lo["per_seed"])
               for k in ("kl_truth_to_student", "kl_student_to_truth"))
    assert f"doubled the seconds ({lo['mean']['train_seconds']:.1f} against {hi['mean']['train_seconds']:.1f})" in text
    assert 1.6 < hi["mean"]["train_seconds"] / lo["mean"]["train_seconds"] < 2.5
    assert f"{ONP['config']['n_train']:,} sentences of the truth itself" in text
    mean_length = float(re.search(r"mean length ([\d.]+)", ONP["language"]["description"]).group(1))
    assert "(a mean length of about 4 symbols)" in text and round(mean_length) == 4
    validity = min(e["mean"]["sample_validity"] for e in sweep)
    assert f"says a grammatical string at least {validity:.3f} of the time" in text


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_section_9_quotes_the_decoding_and_the_distributions(copy):
    r, t = SKD, SKD["teacher_outputs"]
    text = flat(cells(copy)["l9s9read"])
    for entry in r["students"].values():
        assert f"`{entry['arch']}` ({entry['params']:,} parameters), the mean of 2 training seeds" in text
        for row in seqkd_rows(entry):
            assert row in text, row
    assert (f"is its greedy output on {pct(t['beam_is_greedy_eval'])} of the 2,000 held-out prompts; its beam texts are "
            f"{t['beam_distinct']:,} distinct strings, against {t['sample_distinct']:,} for its samples and "
            f"{t['data_distinct']:,} for the training sentences") in text
    assert f"({r['seconds']['total']:.1f} s on the course's 2-core machine)" in text
    m8 = {n: x["mean"] for n, x in r["students"]["8"]["methods"].items()}
    m2 = {n: x["mean"] for n, x in r["students"]["2"]["methods"].items()}
    match8 = [m["match_teacher_beam"] for m in m8.values()]
    assert f"lands between {pct(min(match8))} and {pct(max(match8))}" in text
    data2 = [x["match_teacher_beam"] for x in r["students"]["2"]["methods"]["data"]["per_seed"]]
    assert f"range from {pct(min(data2))} to {pct(max(data2))}: a difference within the noise" in text
    assert abs(m2["seq-kd-beam"]["match_teacher_beam"] - m2["data"]["match_teacher_beam"]) < max(data2) - min(data2)
    for m in (m8, m2):   # peaked, and further from the truth
        assert m["seq-kd-beam"]["greedy_prob"] > m["data"]["greedy_prob"]
        assert m["seq-kd-beam"]["kl_truth_to_student"] > m["data"]["kl_truth_to_student"]
        assert max(m, key=lambda n: m[n]["kl_student_to_truth"]) == "seq-kd-sample"
    assert (f"probability of {m8['seq-kd-beam']['greedy_prob']:.3f} against {m8['data']['greedy_prob']:.3f} for the "
            f"data's (`gru-2`: {m2['seq-kd-beam']['greedy_prob']:.3f} against {m2['data']['greedy_prob']:.3f})") in text
    assert min(m8, key=lambda n: m8[n]["kl_truth_to_student"]) == "word-kd"
    assert m8["word-kd"]["kl_truth_to_student"] < m8["seq-kd-beam+word-kd"]["kl_truth_to_student"] < \
        m8["data"]["kl_truth_to_student"]


# ------------------------------------------------------------------------------------------------ the other docs

def test_the_cheat_sheet_states_both_runs():
    text = flat((h.REPO / "docs" / "cheatsheet.md").read_text())
    rows = text.split(" | `kdlab ")
    onp_row = next(line for line in rows if line.startswith("experiment llm-on-policy --seed 0"))
    st = {n: x["mean"] for n, x in ONP["students"].items()}
    e0 = ONP["gradient"]["start"]["estimators"]
    sweep = ONP["lambda"]["sweep"]
    for fact in [f"cos(mean of 100 batch estimates, exact gradient) at the start: GKD {e0['single-step']['cosine_of_mean']:.3f}, "
                 f"MiniLLM {e0['minillm']['cosine_of_mean']:.3f}, decomposed {e0['decomposed']['cosine_of_mean']:.3f}",
                 f"GKD {st['single-step']['kl_student_to_teacher']:.4f}, MiniLLM {st['minillm']['kl_student_to_teacher']:.4f}, "
                 f"decomposed {st['decomposed']['kl_student_to_teacher']:.4f}",
                 f"$\\lambda$ = 0 {sweep[0]['mean']['kl_truth_to_student']:.4f}, $\\lambda$ = 1 "
                 f"{sweep[-1]['mean']['kl_truth_to_student']:.4f}",
                 "[`llm-on-policy-s0.json`](results/llm-on-policy-s0.json)"]:
        assert fact in onp_row, fact
    skd_row = next(line for line in rows if line.startswith("experiment llm-seq-kd --seed 0"))
    m8 = {n: x["mean"] for n, x in SKD["students"]["8"]["methods"].items()}
    for fact in [f"the teacher's beam output is its greedy output on {pct(SKD['teacher_outputs']['beam_is_greedy_eval'])}",
                 f"q(greedy) {m8['seq-kd-beam']['greedy_prob']:.3f} against {m8['data']['greedy_prob']:.3f}",
                 f"{m8['seq-kd-beam']['kl_truth_to_student']:.4f} against {m8['data']['kl_truth_to_student']:.4f}",
                 "[`llm-seq-kd-s0.json`](results/llm-seq-kd-s0.json)"]:
        assert fact in skd_row, fact


def test_benchmarks_quotes_the_runs_times():
    text = flat((h.REPO / "docs" / "benchmarks.md").read_text())
    for name, r in (("llm-on-policy", ONP), ("llm-seq-kd", SKD)):
        assert f"kdlab experiment {name} --seed 0 --json docs/results/{name}-s0.json" in text
        assert f"{name}-s0.json took {r['seconds']['total']:.1f} s" in text
        assert r["seconds"]["total"] < 8 * 60
