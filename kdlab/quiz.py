"""Lesson 10's quizzes: self-check questions with instant feedback, and the graded questions' checks.

Two kinds of questions, kept apart on purpose:

* **Self-check** questions (:mod:`kdlab.quiz_bank`) show their feedback at
  once: pick an answer and read why it is right or wrong. Their answers are in
  the bank, in the open.
* **Graded** questions are answer cells in the notebook (a function that
  returns a letter, or a number). Their answers live only in the notebook's
  hidden tests, never in this package, so reading kdlab's source gives nothing
  away. The visible check of a graded question (:func:`read_choice`,
  :func:`read_number`) only says whether the answer can be read; the hidden
  test (:func:`expect_choice`, :func:`expect_number`) says whether it is right,
  without saying what the right answer is.

The logic is plain functions (tested without a browser); :func:`quiz_widget`
only wires them to ipywidgets:

* :func:`check_choice` and :func:`check_numeric` turn an answer into a
  :class:`Feedback`;
* :func:`parse_number` reads what a learner types (``0.63``, ``63%``,
  ``1/25``, ``2.4e6``);
* :class:`QuizSession` keeps the first-try score;
* :func:`render_feedback` and :func:`render_question` draw HTML; prompts and
  explanations are written in inline Markdown (:func:`inline_markdown`).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Callable

from .checks import CheckFailed, Checker

__all__ = [
    "Choice", "MultipleChoice", "Numeric", "Feedback", "QuizSession",
    "check_choice", "check_numeric", "parse_number", "is_close",
    "render_feedback", "render_question", "quiz_widget",
    "read_choice", "expect_choice", "read_number", "expect_number", "recorded",
]

LETTERS = "ABCDEFGH"


# ----------------------------------------------------------------------------- questions

@dataclass(frozen=True)
class Choice:
    """One option of a multiple-choice question and why it is right or wrong."""

    text: str
    why: str


@dataclass(frozen=True)
class MultipleChoice:
    """A question with lettered options; ``answer`` is the letter of the right one."""

    key: str
    prompt: str
    choices: tuple            # of Choice, lettered A, B, C, ... in order
    answer: str
    review: str = ""          # where the course demonstrates it, e.g. "Lesson 3, § 4"

    def __post_init__(self):
        if not 2 <= len(self.choices) <= len(LETTERS):
            raise ValueError(f"{self.key}: between 2 and {len(LETTERS)} choices, got {len(self.choices)}")
        if self.answer not in self.letters:
            raise ValueError(f"{self.key}: the answer {self.answer!r} is not one of {self.letters}")

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.choices)]

    def choice(self, letter: str) -> Choice:
        return self.choices[self.letters.index(letter)]


@dataclass(frozen=True)
class Numeric:
    """A question whose answer is a number, right within ``rel_tol`` (relative) or ``abs_tol``."""

    key: str
    prompt: str
    answer: float
    solution: str             # the worked answer, shown after any attempt
    rel_tol: float = 0.01
    abs_tol: float = 0.0
    traps: tuple = ()         # (value, what that value means): common wrong answers, explained
    review: str = ""


@dataclass
class Feedback:
    """What the learner sees after answering."""

    correct: bool
    headline: str
    detail: str = ""
    valid: bool = True        # False: the answer could not be read (not counted as an attempt)


# ----------------------------------------------------------------------------- checking answers

def normalize_letter(answer, letters: str = "ABCD") -> str:
    """``"b"``, ``" B "``, ``"B)"`` and ``"(b)"`` all read as ``"B"``; anything else raises ValueError."""
    if not isinstance(answer, str):
        raise ValueError(f"expected one letter as a string, like \"A\"; got {type(answer).__name__} {answer!r}")
    text = answer.strip().strip("().:").strip().upper()
    if len(text) != 1 or text not in letters:
        raise ValueError(f"expected one of {', '.join(letters)}; got {answer!r}")
    return text


def check_choice(question: MultipleChoice, letter) -> Feedback:
    """Feedback on picking ``letter`` for ``question``: right or wrong, and why."""
    try:
        letter = normalize_letter(letter, question.letters)
    except ValueError as err:
        return Feedback(False, "Pick one of the options.", str(err), valid=False)
    why = question.choice(letter).why
    if letter == question.answer:
        return Feedback(True, f"{letter} is right.", why)
    return Feedback(False, f"{letter} is not right.", why)


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_number(text) -> float:
    """A number typed by a learner: ``0.63``, ``-1e-3``, ``63%`` (= 0.63), ``1/25``, ``1,398,101``.

    Raises ValueError, with a message fit to show, for anything else (and for
    non-finite values).
    """
    if isinstance(text, bool):
        raise ValueError("expected a number, got a bool")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().replace(" ", "").replace("\u2212", "-")
        if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?", s):
            s = s.replace(",", "")
        percent = s.endswith("%")
        if percent:
            s = s[:-1]
        if "/" in s:
            num, _, den = s.partition("/")
            if not (_NUMBER.match(num) and _NUMBER.match(den)):
                raise ValueError(f"{text!r} is not a number: type something like 0.25, 25% or 1/4")
            if float(den) == 0:
                raise ValueError("division by zero")
            value = float(num) / float(den)
        elif _NUMBER.match(s):
            value = float(s)
        else:
            raise ValueError(f"{text!r} is not a number: type something like 0.25, 25% or 1/4")
        if percent:
            value /= 100
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def is_close(got: float, want: float, rel_tol: float = 0.01, abs_tol: float = 0.0) -> bool:
    """``got`` within ``rel_tol`` of ``want`` (relative) or within ``abs_tol``."""
    return math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol)


def check_numeric(question: Numeric, answer) -> Feedback:
    """Feedback on ``answer`` (a number or the text typed) for ``question``."""
    try:
        value = parse_number(answer)
    except ValueError as err:
        return Feedback(False, "Type a number.", str(err), valid=False)
    if is_close(value, question.answer, question.rel_tol, question.abs_tol):
        return Feedback(True, f"{value:.6g} is right.", question.solution)
    for trap, meaning in question.traps:
        if is_close(value, trap, question.rel_tol, question.abs_tol):
            return Feedback(False, f"{value:.6g} is not right: {meaning}", question.solution)
    return Feedback(False, f"{value:.6g} is not right.", question.solution)


class QuizSession:
    """First-try scoring: a question counts as right only if its first readable answer was right."""

    def __init__(self, questions):
        self.questions = {q.key: q for q in questions}
        if len(self.questions) != len(list(questions)):
            raise ValueError("question keys must be unique")
        self.first_try: dict[str, bool] = {}
        self.attempts: dict[str, int] = {}

    def answer(self, key: str, answer) -> Feedback:
        question = self.questions[key]
        fb = check_choice(question, answer) if isinstance(question, MultipleChoice) else check_numeric(question, answer)
        if fb.valid:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            self.first_try.setdefault(key, fb.correct)
        return fb

    @property
    def score(self) -> tuple[int, int]:
        """(right at the first try, questions answered)."""
        return sum(self.first_try.values()), len(self.first_try)

    def summary(self) -> str:
        right, answered = self.score
        left = len(self.questions) - answered
        text = f"{right} of {answered} answered right at the first try"
        return text + (f"; {left} still to answer" if left else "; all answered")


# ----------------------------------------------------------------------------- HTML

_GREEN, _RED, _GRAY = "#2ca02c", "#d62728", "#7f7f7f"

# Inline Markdown, on text already HTML-escaped: `code` first (its content is literal), then **strong**, *em*.
# A "*" followed by a space ("a * b") is arithmetic, not emphasis; "_" is left alone (z_i - z_j).
_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EM = re.compile(r"\*(?=[^\s*])(.+?)(?<=[^\s*])\*")


def inline_markdown(text: str) -> str:
    """HTML for one line of inline Markdown (``*em*``, ``**strong**``, ```code```); everything else escaped."""
    parts = _CODE.split(html.escape(text, quote=False))
    for i in range(0, len(parts), 2):   # even parts are outside code spans
        parts[i] = _EM.sub(r"<em>\1</em>", _STRONG.sub(r"<strong>\1</strong>", parts[i]))
    for i in range(1, len(parts), 2):
        parts[i] = f"<code>{parts[i]}</code>"
    return "".join(parts)


def render_feedback(fb: Feedback, review: str = "") -> str:
    color = _GREEN if fb.correct else (_GRAY if not fb.valid else _RED)
    mark = "\u2714" if fb.correct else ("\u2026" if not fb.valid else "\u2718")
    parts = [f"<div style='border-left:4px solid {color};padding:4px 10px;margin:4px 0'>",
             f"<b style='color:{color}'>{mark} {html.escape(fb.headline)}</b>"]
    if fb.detail:
        parts.append(f"<div>{inline_markdown(fb.detail)}</div>")
    if review and fb.valid:
        parts.append(f"<div style='color:{_GRAY}'>Review: {html.escape(review)}</div>")
    parts.append("</div>")
    return "".join(parts)


def render_question(question, number: int | None = None) -> str:
    head = f"{number}. " if number is not None else ""
    return f"<div style='margin-top:10px'><b>{head}{inline_markdown(question.prompt)}</b></div>"


# ----------------------------------------------------------------------------- widgets

def quiz_widget(questions, title: str = "Self-check"):
    """The self-check quiz: one block per question, feedback as soon as an answer is given.

    Multiple-choice questions are radio buttons (feedback on every pick);
    numeric ones a text box (feedback on Enter). A line at the top keeps the
    first-try score. Returns the ``VBox``; ``box.quiz`` holds the session and
    the controls, for tests.
    """
    import ipywidgets as w

    questions = list(questions)
    session = QuizSession(questions)
    score = w.HTML()
    controls = {}

    def update_score():
        score.value = f"<b>{html.escape(title)}</b>: {html.escape(session.summary())}"

    blocks = []
    for number, q in enumerate(questions, 1):
        out = w.HTML()
        if isinstance(q, MultipleChoice):
            control = w.RadioButtons(options=[(f"{letter}. {c.text}", letter) for letter, c in zip(q.letters, q.choices)],
                                     value=None, layout=w.Layout(width="auto"))
            names = "value"
        else:
            control = w.Text(placeholder="type a number and press Enter", continuous_update=False,
                             layout=w.Layout(width="300px"))
            names = "value"

        def on_change(change, q=q, out=out):
            if change["new"] in (None, ""):
                return
            fb = session.answer(q.key, change["new"])
            out.value = render_feedback(fb, q.review)
            update_score()

        control.observe(on_change, names=names)
        controls[q.key] = (control, out)
        blocks.append(w.VBox([w.HTML(render_question(q, number)), control, out]))
    update_score()
    box = w.VBox([score, *blocks])
    box.quiz = dict(session=session, controls=controls, score=score)
    return box


# ----------------------------------------------------------------------------- graded questions

def _call(fn: Callable, name: str):
    """The learner's answer function, called quietly (stderr and warnings swallowed, kdlab calls refused)."""
    __tracebackhide__ = True
    return Checker(fn, name=name).call(f"{name}() returns your answer")


def read_choice(fn: Callable, letters: str = "ABCD", *, name: str | None = None) -> str:
    """The letter ``fn()`` returns, normalized; CheckFailed with a friendly message if it is not one of ``letters``."""
    __tracebackhide__ = True
    name = name or getattr(fn, "__name__", "your function")
    got = _call(fn, name)
    try:
        return normalize_letter(got, letters)
    except ValueError as err:
        raise CheckFailed(f"{name}() must return one letter, one of {', '.join(letters)} "
                          f"(for example: return \"{letters[0]}\"): {err}") from None


def expect_choice(name: str, got: str, answer: str, *, review: str = "") -> None:
    """Hidden test: CheckFailed unless ``got`` is ``answer``; the message does not reveal the answer."""
    __tracebackhide__ = True
    if got != answer:
        text = f"{name}: {got!r} is not the best answer."
        if review:
            text += f" Review {review}."
        raise CheckFailed(text)


def read_number(fn: Callable, *, name: str | None = None) -> float:
    """The number ``fn()`` returns, as a float; CheckFailed with a friendly message if it is not a finite number."""
    __tracebackhide__ = True
    name = name or getattr(fn, "__name__", "your function")
    got = _call(fn, name)
    if hasattr(got, "item") and getattr(got, "ndim", 0) == 0:   # a 0-d tensor or numpy scalar
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise CheckFailed(f"{name}() must return a number (an int or a float, like 0.5); "
                          f"got {type(got).__name__} {got!r}")
    if not math.isfinite(got):
        raise CheckFailed(f"{name}() must return a finite number; got {got!r}")
    return float(got)


def expect_number(name: str, got: float, answer: float, *, rel_tol: float = 0.01, abs_tol: float = 0.0,
                  review: str = "") -> None:
    """Hidden test: CheckFailed unless ``got`` is within tolerance of ``answer``; the message does not reveal it."""
    __tracebackhide__ = True
    if not is_close(got, answer, rel_tol, abs_tol):
        text = f"{name}: {got:.6g} is not right (the tolerance is {100 * rel_tol:g}%)."
        if review:
            text += f" Review {review}."
        raise CheckFailed(text)


def recorded(name: str, answer) -> None:
    """Print that the answer was read (stdout only: the cell keeps its points)."""
    shown = f"{answer:.6g}" if isinstance(answer, float) else repr(answer)
    print(f"\u2714 {name}: your answer {shown} is recorded; it is graded when you submit")
