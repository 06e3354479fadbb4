"""Lesson 6's sections 6 and 7, lesson 10, the cheat sheet and docs/benchmarks.md quote the capacity-gap and
label-smoothing runs: each number is recomputed here from its JSON.

Whenever a JSON is regenerated (`kdlab experiment capacity-gap --seed 0 --json docs/results/capacity-gap-s0.json`,
`kdlab experiment label-smoothing --seed 0 --json docs/results/label-smoothing-s0.json`), these tests say which
sentence still quotes the old run, and which claim in words ("yes", "within the seed spread") the new run no longer
supports.
"""

from __future__ import annotations

import json
import re

import pytest

import nbgrader_harness as h

RESULTS = h.REPO / "docs" / "results"
CG = json.loads((RESULTS / "capacity-gap-s0.json").read_text())
LS = json.loads((RESULTS / "label-smoothing-s0.json").read_text())
CG_COMMAND = "kdlab experiment capacity-gap --seed 0 --json docs/results/capacity-gap-s0.json"
LS_COMMAND = "kdlab experiment label-smoothing --seed 0 --json docs/results/label-smoothing-s0.json"
LESSON6 = "part2_mnist/06_dark_knowledge_experiments.ipynb"
LESSON10 = "part4_interview/10_interview_drill.ipynb"


def flat(text: str) -> str:
    """Whitespace (line breaks of wrapped Markdown, the "> " of a quoted box) collapsed to single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"\n> ?", "\n", text))


def markdown(path) -> str:
    return flat("\n".join(c.source for c in h.load(path).cells if c.cell_type == "markdown"))


def mean(values) -> float:
    return sum(values) / len(values)


def pct(shares) -> str:
    return f"{100 * mean(shares):.1f}%"


def epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def joined(values) -> str:
    return ", ".join(map(str, values))


# ----------------------------------------------------------------------------- capacity gap

TEACHERS = {t["recipe"]: t for t in CG["teachers"]}
SMALL, MLP, CNN = TEACHERS["mlp-teacher-small"], TEACHERS["mlp-teacher"], TEACHERS["cnn-teacher"]
TA, ALONE = CG["assistant"], CG["student_alone_test_errors"]


def m(row: dict) -> str:
    return f"{mean(row['student_test_errors']):.1f}"


def cg_short() -> str:
    return (f"a 30-30 student distilled from three teachers with {SMALL['test_errors']}, {MLP['test_errors']} and "
            f"{CNN['test_errors']} test errors made {m(SMALL)}, {m(MLP)} and {m(CNN)} on average (seeds "
            f"{joined(CG['seeds'])}; {mean(ALONE):.1f} alone), and {m(TA)} through a teacher assistant")


def test_the_capacity_gap_json_is_a_full_run_of_the_defaults():
    from kdlab.experiments import capacity_gap

    assert CG["experiment"] == "capacity-gap" and CG["seed"] == 0 and CG["fast_mode"] is False
    assert CG["test_size"] == 10_000 and CG["train_size"] == 60_000 and CG["seeds"] == [0, 1]
    d = capacity_gap.DEFAULTS
    assert [t["recipe"] for t in CG["teachers"]] == list(d["teachers"]) and len(CG["teachers"]) >= 3
    assert (CG["student"]["arch"], TA["arch"], CG["epochs"]) == (d["student"], d["assistant"], d["epochs"])
    assert TA["teacher"] == "cnn-teacher" == min(TEACHERS, key=lambda r: TEACHERS[r]["test_errors"])
    assert all(t["was_cached"] for t in CG["teachers"]), "the quoted time is the one with the teachers cached"


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_lesson_6_quotes_the_capacity_gap_table(folder):
    text = markdown(h.REPO / folder / LESSON6)
    assert CG_COMMAND in text and "(../../docs/results/capacity-gap-s0.json)" in text
    for t in CG["teachers"]:
        assert (f"| `{t['recipe']}` | `{t['arch']}`, {epochs(t['epochs'])} | {t['params']:,} | {t['macs']:,} | "
                f"{t['test_errors']} | {joined(t['student_test_errors'])} | {m(t)} | {pct(t['agreement'])} |") in text
    assert (f"| a TA taught by `{TA['teacher']}` | `{TA['arch']}`, {epochs(CG['epochs'])} | {TA['params']:,} | "
            f"{TA['macs']:,} | {joined(TA['test_errors'])} | {joined(TA['student_test_errors'])} | {m(TA)} | "
            f"{pct(TA['agreement'])} |") in text
    s = CG["student"]
    assert (f"| none: the student alone | `{s['arch']}`, {epochs(CG['epochs'])} | {s['params']:,} | {s['macs']:,} | | "
            f"{joined(ALONE)} | {mean(ALONE):.1f} | |") in text
    assert f"the student's test errors (seeds {joined(CG['seeds'])})" in text
    earlier = json.loads((RESULTS / "omitted-digit-s0.json").read_text())["teacher"]   # sections 2 to 5's teacher
    assert earlier["recipe"] == "cnn-teacher" and earlier["test_errors"] != TEACHERS["cnn-teacher"]["test_errors"]
    assert (f"`cnn-teacher` made {earlier['test_errors']} test errors in the runs of sections 2 to 5 and "
            f"{TEACHERS['cnn-teacher']['test_errors']} here") in text


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_lesson_6_reads_the_capacity_gap_as_the_run_shows_it(folder):
    text = markdown(h.REPO / folder / LESSON6)
    # "Yes, in the means": no pair of teachers against the rule
    assert "Does a better teacher always give a better student here? Yes, in the means" in text
    assert CG["better_teacher_always_better_student"] is True and CG["pairs_against_the_rule"] == []
    assert (f"the strongest teacher, `cnn-teacher` ({CNN['test_errors']} test errors), gave the student the fewest "
            f"test errors: {m(CNN)} on average, against {m(MLP)} from `mlp-teacher` ({MLP['test_errors']}) and "
            f"{m(SMALL)} from `mlp-teacher-small` ({SMALL['test_errors']})") in text
    gain = mean(MLP["student_test_errors"]) - mean(CNN["student_test_errors"])
    cnn_range = max(CNN["student_test_errors"]) - min(CNN["student_test_errors"])
    assert 0 < gain < cnn_range, "the text says the last step is within the seed range"
    assert (f"the student's mean fell by {gain:.1f} test errors, less than the range of its two seeds with the CNN "
            f"({min(CNN['student_test_errors'])} to {max(CNN['student_test_errors'])})") in text
    # the assistant "bought nothing measurable": no better than the direct student, beyond the seed spread
    spread = max(max(r["student_test_errors"]) - min(r["student_test_errors"]) for r in (TA, CNN))
    assert mean(TA["student_test_errors"]) - mean(CNN["student_test_errors"]) > -spread
    assert f"Through the TA the student made {m(TA)} test errors on average, against {m(CNN)} straight" in text
    # the weak teacher left the student worse than no teacher; agreement falls as the teacher gets stronger
    assert mean(SMALL["student_test_errors"]) > mean(ALONE)
    assert (f"the weak teacher left the student worse than no teacher at all: {m(SMALL)} test errors against "
            f"{mean(ALONE):.1f} for the student trained alone") in text
    shares = [mean(t["agreement"]) for t in (SMALL, MLP, CNN)]
    assert shares == sorted(shares, reverse=True)
    assert (f"the student agrees with its teacher less as the teacher gets stronger: {pct(SMALL['agreement'])}, "
            f"{pct(MLP['agreement'])} and {pct(CNN['agreement'])}") in text
    assert f"about {round(CNN['macs'] / CG['student']['macs'])} times the student's multiply-accumulates" in text
    assert f"teachers of at most {max(t['params'] for t in CG['teachers']) / 1e6:.1f}M parameters" in text


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_lesson_10_links_q13_and_mc10_to_the_measured_capacity_gap(folder):
    nb = h.load(h.REPO / folder / LESSON10)
    by_id = {c.get("id"): flat(c.source) for c in nb.cells}
    pointer = '[Lesson 6](../part2_mnist/06_dark_knowledge_experiments.ipynb), § "6. The capacity gap"'
    for cell_id in ("l10-20", "l10-75", "l10-myths"):     # Q13, MC10's prompt, the myths box
        assert pointer in by_id[cell_id] and cg_short() in by_id[cell_id], cell_id


def test_the_cheat_sheet_states_the_capacity_gap_run():
    text = flat((h.REPO / "docs" / "cheatsheet.md").read_text())
    row = next(line for line in text.split(" | `kdlab ") if line.startswith("experiment capacity-gap --seed 0"))
    both = lambda values: " and ".join(map(str, values))
    assert (f"the student's mean test errors from teachers with {SMALL['test_errors']}, {MLP['test_errors']} and "
            f"{CNN['test_errors']} test errors: {SMALL['student_mean']:.1f}, {MLP['student_mean']:.1f} and "
            f"{CNN['student_mean']:.1f}; through the assistant {both(TA['student_test_errors'])} (seeds "
            f"{both(CG['seeds'])}; straight from the CNN {both(CNN['student_test_errors'])}); alone {both(ALONE)}: "
            "the better teacher gave the better student every time (the last step within the seed spread), and the "
            "assistant bought nothing") in row
    assert "[`capacity-gap-s0.json`](results/capacity-gap-s0.json)" in row
    assert "§ \"6. The capacity gap\"" in text


def test_benchmarks_quotes_the_capacity_gap_runs_time():
    text = flat((h.REPO / "docs" / "benchmarks.md").read_text())
    assert CG_COMMAND in text
    assert f"capacity-gap-s0.json` (lesson 6) took {CG['seconds']['total']:.0f} s" in text


# ----------------------------------------------------------------------------- label smoothing

PLAIN, SMOOTHED = LS["teachers"]["plain"], LS["teachers"]["smoothed"]
STUDENTS = LS["students"]


def ls_short() -> str:
    s = STUDENTS
    return (f"the smoothed teacher's wrong classes are almost uniform (evenness "
            f"{SMOOTHED['wrong_class_evenness']['4']:.3f} at $T = 4$ against {PLAIN['wrong_class_evenness']['4']:.3f}), "
            f"and a 100-100 student distilled from it at $T = 4$ made {mean(s['kd_smoothed']['4']):.1f} test errors on "
            f"average against {mean(s['kd_plain']['4']):.1f} from the plain teacher ({mean(s['cross_entropy']):.1f} "
            f"trained alone on the labels, {mean(s['label_smoothing']):.1f} with label smoothing alone)")


def test_the_label_smoothing_json_is_a_full_run_of_the_defaults():
    from kdlab.experiments import label_smoothing

    assert LS["experiment"] == "label-smoothing" and LS["seed"] == 0 and LS["fast_mode"] is False
    assert LS["test_size"] == 10_000 and LS["train_size"] == 60_000 and LS["seeds"] == [0, 1]
    d = label_smoothing.DEFAULTS
    assert (LS["student"], LS["epsilon"], LS["temperatures"], LS["epochs"], LS["alpha"]) == (
        d["student"], d["epsilon"], list(d["temperatures"]), d["epochs"], d["alpha"]) == ("mlp-100x2", 0.1, [1.0, 4.0],
                                                                                          3, 0.9)
    assert (PLAIN["label_smoothing"], SMOOTHED["label_smoothing"]) == (0.0, 0.1)
    assert PLAIN["was_cached"] and SMOOTHED["was_cached"], "the quoted time is the one with the teachers cached"


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_lesson_6_quotes_the_label_smoothing_tables(folder):
    text = markdown(h.REPO / folder / LESSON6)
    assert LS_COMMAND in text and "(../../docs/results/label-smoothing-s0.json)" in text
    for te in (PLAIN, SMOOTHED):
        pairs = ", ".join(f"{a}-{b}" for a, b in te["most_similar_pairs"]["4"])
        assert (f"| `{te['recipe']}` | {te['label_smoothing']:g} | {te['test_errors']} | "
                f"{te['true_class_probability']:.3f} | {te['wrong_class_evenness']['1']:.3f} | "
                f"{te['wrong_class_evenness']['4']:.3f} | {pairs} |") in text
    rows = [("cross-entropy on the labels", STUDENTS["cross_entropy"]),
            ("label smoothing, $\\varepsilon = 0.1$", STUDENTS["label_smoothing"])]
    for t in ("1", "4"):
        rows += [(f"KD from `cnn-teacher`, $T = {t}$", STUDENTS["kd_plain"][t]),
                 (f"KD from `cnn-teacher-ls`, $T = {t}$", STUDENTS["kd_smoothed"][t])]
    for name, errors in rows:
        assert f"| {name} | {joined(errors)} | {mean(errors):.1f} |" in text, name
    assert f"test errors (seeds {joined(LS['seeds'])})" in text


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_lesson_6_reads_the_label_smoothing_run_as_it_shows(folder):
    text = markdown(h.REPO / folder / LESSON6)
    s = STUDENTS
    ce, alone_ls = mean(s["cross_entropy"]), mean(s["label_smoothing"])
    kp1, ks1, kp4, ks4 = (mean(s[k][t]) for k, t in (("kd_plain", "1"), ("kd_smoothed", "1"), ("kd_plain", "4"),
                                                     ("kd_smoothed", "4")))
    # "Yes, by far": worse at both temperatures, beyond the seed spread; worse even than cross-entropy alone
    assert "Does a smoothed teacher distil worse here? Yes, by far." in text
    assert all(c["beyond_seed_spread"] and c["difference"] > 0 for c in LS["smoothed_teacher_against_plain"].values())
    assert (f"at $T = 4$ the smoothed teacher's students made {ks4:.1f} test errors on average against {kp4:.1f} for "
            f"the plain teacher's, and at $T = 1$ {ks1:.1f} against {kp1:.1f}, both differences beyond the seed "
            "spread") in text
    assert min(ks1, ks4) > ce and f"worse than the student trained alone on the labels ({ce:.1f})" in text
    # "Smoothing did not make our teacher more accurate"; its wrong classes nearly uniform
    assert SMOOTHED["test_errors"] >= PLAIN["test_errors"]
    same = PLAIN["test_errors"] == SMOOTHED["test_errors"]
    assert (f"both teachers make {PLAIN['test_errors']} test errors" if same else
            f"the teachers make {PLAIN['test_errors']} and {SMOOTHED['test_errors']} test errors") in text
    assert (f"the smoothed one gives the true class {SMOOTHED['true_class_probability']:.3f} on average against "
            f"{PLAIN['true_class_probability']:.3f}") in text
    assert all(SMOOTHED["wrong_class_evenness"][t] > PLAIN["wrong_class_evenness"][t] for t in ("1", "4"))
    assert (f"an evenness of {SMOOTHED['wrong_class_evenness']['1']:.3f} at $T = 1$ and "
            f"{SMOOTHED['wrong_class_evenness']['4']:.3f} at $T = 4$, against the plain teacher's "
            f"{PLAIN['wrong_class_evenness']['1']:.3f} and {PLAIN['wrong_class_evenness']['4']:.3f}") in text
    # "Is KD just label smoothing here? No": smoothing alone within the spread of cross-entropy, KD at T = 4 beyond
    assert "Is KD just label smoothing here? No." in text
    assert LS["label_smoothing_against_cross_entropy"]["beyond_seed_spread"] is False
    assert LS["kd_against_label_smoothing"]["4"]["beyond_seed_spread"] and kp4 < min(ce, alone_ls)
    assert kp1 >= ce, "the text says KD at T = 1 was no better than cross-entropy"
    assert (f"Label smoothing alone gave {alone_ls:.1f} test errors against {ce:.1f} for plain cross-entropy, and KD "
            f"at $T = 4$ gave {kp4:.1f}") in text
    assert f"KD from the plain teacher at $T = 1$ ({kp1:.1f}) was no better than cross-entropy either" in text
    # the same students as section 6's teacher assistant (same architecture, teacher, T, alpha, seeds, epochs)
    assert s["kd_plain"]["4"] == TA["test_errors"]
    assert f"teacher assistant: {joined(TA['test_errors'])} test errors there too" in text


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_lesson_10_links_q32_to_the_measured_label_smoothing(folder):
    nb = h.load(h.REPO / folder / LESSON10)
    by_id = {c.get("id"): flat(c.source) for c in nb.cells}
    pointer = '[Lesson 6](../part2_mnist/06_dark_knowledge_experiments.ipynb), § "7. Why KD works: label smoothing"'
    for cell_id in ("l10-q32", "l10-myths"):
        assert pointer in by_id[cell_id] and ls_short() in by_id[cell_id], cell_id


def test_the_cheat_sheet_states_the_label_smoothing_run():
    text = flat((h.REPO / "docs" / "cheatsheet.md").read_text())
    row = next(line for line in text.split(" | `kdlab ") if line.startswith("experiment label-smoothing --seed 0"))
    assert ls_short() in row and "[`label-smoothing-s0.json`](results/label-smoothing-s0.json)" in row
    assert "§ \"7. Why KD works: label smoothing\"" in text


def test_benchmarks_quotes_the_label_smoothing_runs_time():
    text = flat((h.REPO / "docs" / "benchmarks.md").read_text())
    assert LS_COMMAND in text
    assert f"label-smoothing-s0.json` (lesson 6) took {LS['seconds']['total']:.0f} s" in text
