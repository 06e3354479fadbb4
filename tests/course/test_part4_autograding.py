"""Part 4's grading with the real nbgrader: solutions full marks, the release 0, every wrong choice 0.

One scratch course is generated from solutions/ (which also proves notebooks/
is what generation produces) and one ``nbgrader autograde`` run grades every
scenario. Each question is graded by its own test cell, so one submission
carries a wrong answer for *every* question at once: with four options per
multiple-choice question, three submissions cover every wrong choice of every
question (submission k answers each question with its k-th wrong option), and
they carry three wrong values for each numeric question too. Many more wrong
answers run through the same test cells in-process, which is fast.
"""

from __future__ import annotations

import json
import re

import pytest

import nbgrader_harness as h
from kdlab import course
from answer_tools import noisy

ASSIGNMENT = "part4_interview"
LESSON = "10_interview_drill"
# The drill's graded answers, by kind, from the course manifest (tests/docs/test_course_manifest.py holds it to
# the notebook).
MC_IDS = [e.name for e in course.exercises("part4_interview") if e.kind == "choice"]
NUMERIC_IDS = [e.name for e in course.exercises("part4_interview") if e.kind == "numeric"]
EXPLAIN_IDS = [e.name for e in course.exercises("part4_interview") if e.kind == "written"]
AUTOGRADED = MC_IDS + NUMERIC_IDS

KDLAB_SOFTMAX = ("from kdlab import losses\n"
                 "    return float(losses.softmax_t(torch.tensor([3.0, 1.0, 0.0]), 2.0)[0])")
KDLAB_KL = ("from kdlab import losses\n"
            "    return float(losses.kd_kl(torch.log(torch.tensor([0.8, 0.2])), torch.log(torch.tensor([0.5, 0.5])), 1.0))")

# Three plausible wrong answers per numeric question (one submission each); a string is a function body.
WRONG_NUMBERS = {
    "n_softened_prob": [0.8438, 1 / 3, KDLAB_SOFTMAX],          # T = 1; uniform; right value, but by kdlab
    "n_t_squared_factor": [5, 0.04, 10],                          # T; 1/T^2; 2T
    "n_prob_ratio": [2.0, 403.43, 0.1353],                        # the exponent; T = 1; the inverse
    "n_kd_gradient": [0.3, -0.15, 0.075],                         # no 1/T; teacher minus student; 1/T^2
    "n_mean_vs_batchmean": [16, 2048, 1],                         # B; B * L; no difference
    "n_kl_value": [0.1927, 0.3219, KDLAB_KL],                     # KL(q||p); in bits; right value, but by kdlab
    "n_cache_speedup": [5.0, 10.0, 1.4],                          # 1 + 4; the epochs; with / without
    "n_sparse_bytes": [250_000, 1_000_000, 1_125_000],            # no bitmask; dense; bitmask + dense
    "n_gap_closed": [0.4245, 0.2324, 0.6429],                     # the gap left; 1 - distilled/alone; seed 0 only
    "n_soft_same_images": [0.5782, 0.8875, 0.4572],               # the errors left; all 60,000 images; gap to the teacher
    "n_deployed_size_ratio": [17.78, 4.705, 3.551],               # plain state_dicts; parameters; latency
    "n_high_t_cost": [0.1583, 0.0778, 57],                        # divided by T = 20's errors; against T = 8; in errors
    "n_t2_gradient_ratio": [1.0, 64.0, 0.4074],                   # "T^2 keeps it the same"; T^2; T = 1 over T = 8
}
# More wrong answers, checked in-process.
MORE_WRONG_NUMBERS = {
    "n_softened_prob": [0.5, 0.6, 0.7, 0.2312],
    "n_t_squared_factor": [2.5, 24, 26],
    "n_prob_ratio": [7.0, 7.5, 20.09],
    "n_kd_gradient": [0.1, 0.6, 0.15 * 1.02],
    "n_mean_vs_batchmean": [32_000 * 16, 100, 31_000],
    "n_kl_value": [0.9163, 0.2, 0.226],
    "n_cache_speedup": [3.5, 3.65, 14 / 50],
    "n_sparse_bytes": [375_000 * 1.02, 500_000, 125_000],
    "n_gap_closed": [0.7676, 40.67, 0.5, 0.5755 * 1.02],
    "n_soft_same_images": [1.729, 566, 0.0, 0.4218 * 1.02],
    "n_deployed_size_ratio": [10.35, 0.02064, 48.45 * 1.02, 1.0],
    "n_high_t_cost": [0.01307, 1.1881, -0.1067, 0.1881 * 1.02],
    "n_t2_gradient_ratio": [8.0, 0.3068, 0.03835, 5.068, 2.4545 * 1.02],   # T; (q - p) alone; no T^2; the large-T limit
}
# Right answers written differently: they keep the points.
RIGHT_NUMBERS = {
    "n_softened_prob": ["0.6285", "0.629", "torch.softmax(torch.tensor([1.5, 0.5, 0.0]), dim=0)[0]"],
    "n_t_squared_factor": ["25", "25.1"],
    "n_prob_ratio": ["7.39", "math.e ** 2"],
    "n_kd_gradient": ["0.15", "torch.tensor(0.15)"],
    "n_mean_vs_batchmean": ["32000", "32_000.0"],
    "n_kl_value": ["0.2231", "0.223"],
    "n_cache_speedup": ["3.57", "50 / 14"],
    "n_sparse_bytes": ["375000", "3.75e5"],
    "n_gap_closed": ["0.5755", "122 / 212", "((174 - 129) / 70 + (171 - 138) / 62 + (180 - 136) / 80) / 3"],
    "n_soft_same_images": ["0.4218", "566 / 1342"],
    "n_deployed_size_ratio": ["48.45", "1689549 / 34870"],
    "n_high_t_cost": ["0.1881", "57 / 303"],
    "n_t2_gradient_ratio": ["2.4545", "2.45", "8 * (math.exp(0.625) / (math.exp(0.625) + 1) - 0.5) / (math.exp(5) / (math.exp(5) + 1) - 0.5)",
                            "float(8 * (torch.sigmoid(torch.tensor(0.625)) - 0.5) / (torch.sigmoid(torch.tensor(5.0)) - 0.5))"],
}


def solution():
    return h.load(h.REPO / "solutions" / ASSIGNMENT / f"{LESSON}.ipynb")


def right_letter(name: str) -> str:
    return re.search(r'return "([A-D])"', h.cell(solution(), name).source).group(1)


def wrong_letters(name: str) -> list[str]:
    return [x for x in "ABCD" if x != right_letter(name)]


def letter_source(name: str, letter: str) -> str:
    return f'def {name}():\n    return "{letter}"\n'


def number_source(name: str, value) -> str:
    body = value if isinstance(value, str) else repr(value)
    if isinstance(value, str) and "\n" in value:
        return f"import torch\n\ndef {name}():\n    {body}\n"
    return f"import math\nimport torch\n\ndef {name}():\n    return {body}\n"


def with_answers(answers: dict):
    nb = solution()
    for name, source in answers.items():
        h.set_source(nb, name, source)
    return nb


def wrong_submission(k: int):
    answers = {name: letter_source(name, wrong_letters(name)[k]) for name in MC_IDS}
    answers.update({name: number_source(name, WRONG_NUMBERS[name][k]) for name in NUMERIC_IDS})
    nb = with_answers(answers)
    if k == 0:   # a learner who also deleted one test cell and emptied another: both are restored
        h.delete_cell(nb, "test_q_loss")
        h.set_source(nb, "test_q_temperature", "pass  # no tests")
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("part4_course")
    env = h.grading_env(root / "cache")
    course = h.make_course(root / "course", [ASSIGNMENT], env=env)
    released = course / "notebooks" / ASSIGNMENT / f"{LESSON}.ipynb"
    h.submit(course, "solution", ASSIGNMENT, {LESSON: solution()})
    h.submit(course, "released", ASSIGNMENT, {LESSON: released})
    for k in range(3):
        h.submit(course, f"wrong{k}", ASSIGNMENT, {LESSON: wrong_submission(k)})
    h.submit(course, "noisy", ASSIGNMENT, {LESSON: with_answers({n: noisy(h.cell(solution(), n).source, n) for n in AUTOGRADED})})
    seconds = h.autograde(course, ASSIGNMENT, env=env)
    print(f"\nautograded 6 submissions of {LESSON} in {seconds:.1f} s")
    return course, h.scores(course, ASSIGNMENT)


def test_released_notebook_is_what_generation_produces(graded):
    course, _ = graded
    new = course / "notebooks" / ASSIGNMENT / f"{LESSON}.ipynb"
    old = h.REPO / "notebooks" / ASSIGNMENT / f"{LESSON}.ipynb"
    assert json.loads(new.read_text()) == json.loads(old.read_text()), (
        f"{old.relative_to(h.REPO)} differs from what `nbgrader generate_assignment {ASSIGNMENT}` produces: regenerate it")


def per_question(grades: dict) -> dict:
    return {gid.removeprefix("test_"): score for gid, score in grades.items()}


def test_solutions_get_full_marks(graded):
    _, scores = graded
    got = per_question(scores["solution"][LESSON])
    assert {n: got[n] for n in AUTOGRADED} == {n: (1.0, 1.0) for n in AUTOGRADED}


def test_released_notebook_gets_zero_everywhere(graded):
    course, scores = graded
    got = per_question(scores["released"][LESSON])
    assert set(got) == set(AUTOGRADED + EXPLAIN_IDS)
    assert {n: s[0] for n, s in got.items()} == {n: 0 for n in got}
    assert (course / "autograded" / "released" / ASSIGNMENT / f"{LESSON}.ipynb").is_file()


@pytest.mark.parametrize("k", range(3))
def test_every_wrong_choice_and_wrong_number_scores_zero(graded, k):
    _, scores = graded
    got = per_question(scores[f"wrong{k}"][LESSON])
    assert {n: got[n][0] for n in AUTOGRADED} == {n: 0 for n in AUTOGRADED}


def test_the_three_submissions_cover_every_wrong_choice():
    for name in MC_IDS:
        covered = {wrong_letters(name)[k] for k in range(3)}
        assert covered | {right_letter(name)} == set("ABCD"), name


def test_noise_on_stderr_and_warnings_costs_nothing(graded):
    _, scores = graded
    got = per_question(scores["noisy"][LESSON])
    assert {n: got[n] for n in AUTOGRADED} == {n: (1.0, 1.0) for n in AUTOGRADED}


def test_deleted_and_emptied_test_cells_are_restored(graded):
    course, _ = graded
    nb = h.load(course / "autograded" / "wrong0" / ASSIGNMENT / f"{LESSON}.ipynb")
    for gid in ("test_q_loss", "test_q_temperature"):
        assert "### BEGIN HIDDEN TESTS" in h.cell(nb, gid).source


def test_explain_prompts_wait_for_the_instructor(graded):
    """A written answer is left for manual grading; an untouched prompt scores 0 without one."""
    course, _ = graded
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student, needs in (("solution", True), ("released", False)):
            nb = gb.find_submission_notebook(LESSON, ASSIGNMENT, student)
            grades = {g.name: g for g in nb.grades}
            for name in EXPLAIN_IDS:
                g = grades[name]
                assert g.max_score == 3
                assert g.needs_manual_grade is needs, (student, name)
                if not needs:
                    assert g.score == 0
            assert nb.max_score == len(AUTOGRADED) + 3 * len(EXPLAIN_IDS)


def test_autograder_skips_the_quizzes_and_the_lab(graded):
    course, _ = graded
    nb = h.load(course / "autograded" / "solution" / ASSIGNMENT / f"{LESSON}.ipynb")
    setup_output = "".join(o.get("text", "") for o in next(c for c in nb.cells if c.cell_type == "code").outputs)
    assert "experiment cells are skipped" in setup_output
    assert all(not c.outputs for c in nb.cells if h.is_experiment(c))


# ----------------------------------------------------------------------------- in-process: every wrong answer

def failing(answers: dict) -> set:
    return {test for test, error in h.run_graded_cells(solution(), answers).items() if error}


@pytest.mark.parametrize("name", MC_IDS)
def test_each_wrong_letter_fails_only_its_own_test(name):
    for letter in wrong_letters(name):
        for written in (letter, letter.lower(), f" {letter}) "):
            assert failing({name: letter_source(name, written)}) == {f"test_{name}"}, (name, written)


@pytest.mark.parametrize("name", MC_IDS)
def test_the_right_letter_written_loosely_passes(name):
    letter = right_letter(name)
    for written in (letter.lower(), f"{letter})", f" ({letter}) "):
        assert failing({name: letter_source(name, written)}) == set(), (name, written)


@pytest.mark.parametrize("name", MC_IDS)
def test_unreadable_answers_fail_with_a_friendly_message(name):
    results = h.run_graded_cells(solution(), {name: f'def {name}():\n    return "A and B"\n'})
    assert "must return one letter" in results[f"test_{name}"]


@pytest.mark.parametrize("name", NUMERIC_IDS)
def test_each_wrong_number_fails_only_its_own_test(name):
    for value in WRONG_NUMBERS[name] + MORE_WRONG_NUMBERS[name]:
        assert failing({name: number_source(name, value)}) == {f"test_{name}"}, (name, value)


@pytest.mark.parametrize("name", NUMERIC_IDS)
def test_right_numbers_written_differently_pass(name):
    for value in RIGHT_NUMBERS[name]:
        assert failing({name: number_source(name, value)}) == set(), (name, value)


def test_numbers_as_strings_fail_with_a_friendly_message():
    results = h.run_graded_cells(solution(), {"n_kl_value": 'def n_kl_value():\n    return "0.223"\n'})
    assert "must return a number" in results["test_n_kl_value"]
