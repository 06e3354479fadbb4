"""Part 4's answer bank (the interface: tests/answer_banks.py): lesson 10's drill, letters and numbers.

The drill's graded answers are functions that return a letter (multiple choice) or a number. Each question
is graded by its own test cell, so one hand-in carries a wrong answer for *every* question at once: with four
options per question, three wrong hand-ins cover every wrong choice of every question (the k-th answers each
question with its k-th wrong option), and they carry three wrong values for each numeric question too. The
written answers wait for the instructor; they are not in this bank.
"""

from __future__ import annotations

import re
from functools import cache, partial

import nbgrader_harness as h
from answer_tools import course_bug, noisy  # noqa: F401 - part of this bank's interface
from kdlab import course

ASSIGNMENT = "part4_interview"
LESSON_NAME = "10_interview_drill"
# The drill's graded answers, by kind, from the course manifest (tests/docs/test_course_manifest.py holds it to
# the notebook).
CHOICES = [e.name for e in course.exercises(ASSIGNMENT) if e.kind == "choice"]
NUMBERS = [e.name for e in course.exercises(ASSIGNMENT) if e.kind == "numeric"]
WRITTEN = [e.name for e in course.exercises(ASSIGNMENT) if e.kind == "written"]
LESSON = {e.name: e.lesson for e in course.exercises(ASSIGNMENT) if e.autograded}
# docs/course.md's bugs are code; the drill asks about them in words and numbers.
APPLICABLE_BUGS: set[int] = set()

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
    "n_deployed_size_ratio": [17.78, 4.705, 3.436],               # plain state_dicts; parameters; latency
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


@cache
def right_letter(name: str) -> str:
    return re.search(r'return "([A-D])"', h.cell(h.solution(ASSIGNMENT, LESSON_NAME), name).source).group(1)


def wrong_letters(name: str) -> list[str]:
    return [x for x in "ABCD" if x != right_letter(name)]


def letter_source(name: str, letter: str) -> str:
    return f'def {name}():\n    return "{letter}"\n'


def number_source(name: str, value) -> str:
    body = value if isinstance(value, str) else repr(value)
    if isinstance(value, str) and "\n" in value:
        return f"import torch\n\ndef {name}():\n    {body}\n"
    return f"import math\nimport torch\n\ndef {name}():\n    return {body}\n"


def _number_label(value) -> str:
    return {KDLAB_SOFTMAX: "kdlab's softmax_t (the right value, by kdlab)",
            KDLAB_KL: "kdlab's kd_kl (the right value, by kdlab)"}.get(value, repr(value))


# Each wrong letter, as written plainly, in lower case and with a parenthesis; a string that is not one letter.
# Each wrong number; the right one as a string.
WRONG = {name: {**{label: letter_source(name, written) for x in wrong_letters(name)
                   for label, written in ((x, x), (f"{x} in lower case", x.lower()), (f"{x} with a parenthesis", f" {x}) "))},
                "two letters in one string": letter_source(name, "A and B")}
         for name in CHOICES}
WRONG.update({name: {**{_number_label(v): number_source(name, v) for v in WRONG_NUMBERS[name] + MORE_WRONG_NUMBERS[name]},
                     "the number as a string": f'def {name}():\n    return "{RIGHT_NUMBERS[name][0]}"\n'}
              for name in NUMBERS})
WRONG = {name: WRONG[name] for name in LESSON}   # in the drill's order

# Right answers written differently: the right letter written loosely, the right number written otherwise.
RIGHT = {name: {label: letter_source(name, written) for label, written in
                (("lower case", right_letter(name).lower()), ("with a parenthesis", f"{right_letter(name)})"),
                 ("in parentheses, with spaces", f" ({right_letter(name)}) "))}
         for name in CHOICES}
RIGHT.update({name: {value: number_source(name, value) for value in RIGHT_NUMBERS[name]} for name in NUMBERS})

# Answers that only call kdlab's reference: they must earn nothing.
WRAPPERS = {"n_softened_prob": number_source("n_softened_prob", KDLAB_SOFTMAX),
            "n_kl_value": number_source("n_kl_value", KDLAB_KL)}

BASES: dict = {}

# Three wrong hand-ins: the k-th answers each question with its k-th wrong letter or wrong number.
WRONG_HANDINS = [{**{name: wrong_letters(name)[k] for name in CHOICES},
                  **{name: _number_label(WRONG_NUMBERS[name][k]) for name in NUMBERS}} for k in range(3)]


def tampered() -> dict:
    """A hand-in with two wrong letters whose test cells were deleted or emptied, and one claiming 100 points."""
    nb = partial(h.with_answers, ASSIGNMENT, LESSON)({name: letter_source(name, wrong_letters(name)[0])
                                                      for name in ("q_loss", "q_temperature")})
    h.delete_cell(nb[LESSON_NAME], "test_q_loss")
    h.set_source(nb[LESSON_NAME], "test_q_temperature", "pass  # no tests")
    h.cell(nb[LESSON_NAME], "test_q_soft_labels").metadata.nbgrader["points"] = 100
    return nb


TAMPERED_FAILS = {"q_loss", "q_temperature"}
TAMPERED_POINTS = {"q_soft_labels": (1.0, 1.0)}
TAMPERED_RESTORED = [(LESSON_NAME, "test_q_loss"), (LESSON_NAME, "test_q_temperature")]

# The released notebook's visible checks only read the answer: one that cannot be read fails with a friendly message.
VISIBLE_CHECKS = ([({name: "two letters in one string"}, ["must return one letter"]) for name in CHOICES]
                  + [({name: "the number as a string"}, ["must return a number"]) for name in NUMBERS])
