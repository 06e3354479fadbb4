"""kdlab.quiz as plain functions: answers read, checked and explained; the widget wired to them; the bank sound."""

from __future__ import annotations

import math
import sys
import warnings

import pytest
import torch

from kdlab import quiz, quiz_bank
from kdlab.checks import CheckFailed
from kdlab.quiz import Choice, Feedback, MultipleChoice, Numeric

MC = MultipleChoice("demo", "Which?", (Choice("one", "why one is wrong"), Choice("two", "why two is right"),
                                       Choice("three", "why three is wrong")), "B", review="Lesson 1, § 1")
NUM = Numeric("num", "How much?", 0.25, "a quarter", rel_tol=0.01, traps=((0.5, "that is half"),))


# ----------------------------------------------------------------------------- reading answers

@pytest.mark.parametrize("given", ["B", "b", " B ", "B)", "(b)", "B.", "b:"])
def test_letters_are_read_forgivingly(given):
    assert quiz.normalize_letter(given, "ABC") == "B"


@pytest.mark.parametrize("given", ["", "E", "AB", "B or C", 2, None, ["B"], "Bee"])
def test_anything_else_is_not_a_letter(given):
    with pytest.raises(ValueError):
        quiz.normalize_letter(given, "ABCD")


@pytest.mark.parametrize("text,value", [("0.25", 0.25), ("25%", 0.25), ("1/4", 0.25), (" .25 ", 0.25),
                                        ("2.5e-1", 0.25), ("-3", -3.0), ("1,398,101", 1398101.0), (7, 7.0),
                                        (0.5, 0.5), ("\u22122", -2.0), ("12.5 %", 0.125)])
def test_numbers_are_parsed(text, value):
    assert quiz.parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "1/0", "1/x", "nan", "inf", float("inf"), True, "1,2", "0.2.5", "e^2"])
def test_non_numbers_are_rejected_with_a_message(text):
    with pytest.raises(ValueError) as err:
        quiz.parse_number(text)
    assert str(err.value)


# ----------------------------------------------------------------------------- feedback

def test_right_choice_says_why():
    fb = quiz.check_choice(MC, "b")
    assert fb == Feedback(True, "B is right.", "why two is right")


@pytest.mark.parametrize("letter,why", [("A", "why one is wrong"), ("C", "why three is wrong")])
def test_each_wrong_choice_explains_itself(letter, why):
    fb = quiz.check_choice(MC, letter)
    assert not fb.correct and fb.valid and fb.detail == why and letter in fb.headline


def test_an_unreadable_choice_is_not_an_attempt():
    fb = quiz.check_choice(MC, "D")   # the question has three options
    assert not fb.correct and not fb.valid


def test_numeric_feedback_within_tolerance_traps_and_solution():
    assert quiz.check_numeric(NUM, "0.2502").correct
    assert quiz.check_numeric(NUM, "25%").correct
    assert not quiz.check_numeric(NUM, 0.26).correct
    trap = quiz.check_numeric(NUM, "1/2")
    assert not trap.correct and "that is half" in trap.headline and trap.detail == "a quarter"
    bad = quiz.check_numeric(NUM, "a quarter")
    assert not bad.valid and not bad.correct


def test_session_counts_first_tries_only():
    session = quiz.QuizSession([MC, NUM])
    assert session.score == (0, 0)
    session.answer("demo", "x")            # unreadable: not an attempt
    assert session.score == (0, 0)
    session.answer("demo", "A")            # wrong first
    session.answer("demo", "B")            # right second: still wrong at the first try
    session.answer("num", "0.25")
    assert session.score == (1, 2)
    assert session.attempts == {"demo": 2, "num": 1}
    assert session.summary() == "1 of 2 answered right at the first try; all answered"


def test_question_validation():
    with pytest.raises(ValueError):
        MultipleChoice("bad", "?", (Choice("a", ""), Choice("b", "")), "C")
    with pytest.raises(ValueError):
        MultipleChoice("bad", "?", (Choice("a", ""),), "A")
    with pytest.raises(ValueError):
        quiz.QuizSession([MC, MC])


def test_feedback_html_escapes_and_shows_review():
    page = quiz.render_feedback(Feedback(False, "A is not right.", "x < y & z"), review="Lesson 1, § 1")
    assert "x &lt; y &amp; z" in page and "Review: Lesson 1, § 1" in page
    assert "Review" not in quiz.render_feedback(Feedback(False, "Pick one.", "", valid=False), review="L1")


def test_prompts_render_their_markdown_instead_of_showing_it():
    import re

    by_key = {q.key: q for q in quiz_bank.SELF_CHECK}
    dynamic = quiz.render_question(by_key["int8_dynamic"], 3)
    assert "<b>3. In int8 <em>dynamic</em> quantization" in dynamic and "*" not in dynamic and "\\" not in dynamic
    assert "<em>mode seeking</em>" in quiz.render_question(by_key["mode_seeking"])
    for q in quiz_bank.SELF_CHECK:   # no question of the bank shows a raw Markdown marker or a backslash
        text = re.sub(r"<[^>]+>", "", quiz.render_question(q))
        assert "*" not in text and "`" not in text and "\\" not in text, q.key
    # arithmetic and subscripts stay as written; HTML in a prompt is text, not markup
    assert quiz.inline_markdown("target * (log target - input), z_i - z_j") == "target * (log target - input), z_i - z_j"
    assert quiz.inline_markdown("**all** of `x*y*z` <b>") == "<strong>all</strong> of <code>x*y*z</code> &lt;b&gt;"


# ----------------------------------------------------------------------------- the widget

def test_widget_gives_feedback_on_each_pick_and_keeps_the_score():
    pytest.importorskip("ipywidgets")
    box = quiz.quiz_widget([MC, NUM], title="Demo")
    state = box.quiz
    radio, out_mc = state["controls"]["demo"]
    text, out_num = state["controls"]["num"]
    assert [value for _, value in radio.options] == ["A", "B", "C"] and radio.value is None
    radio.value = "A"
    assert "A is not right." in out_mc.value and "why one is wrong" in out_mc.value
    radio.value = "B"
    assert "B is right." in out_mc.value
    text.value = "nonsense"
    assert "Type a number" in out_num.value
    text.value = "1/4"
    assert "is right" in out_num.value and "a quarter" in out_num.value
    assert "1 of 2 answered right at the first try" in state["score"].value


def test_widget_on_the_whole_bank():
    pytest.importorskip("ipywidgets")
    box = quiz.quiz_widget(quiz_bank.SELF_CHECK)
    for q in quiz_bank.SELF_CHECK:
        control, out = box.quiz["controls"][q.key]
        control.value = q.answer if isinstance(q, MultipleChoice) else repr(q.answer)
        assert "is right" in out.value, q.key
    n = len(quiz_bank.SELF_CHECK)
    assert f"{n} of {n} answered right at the first try" in box.quiz["score"].value


# ----------------------------------------------------------------------------- the self-check bank

def test_bank_keys_unique_and_answers_explained():
    keys = [q.key for q in quiz_bank.SELF_CHECK]
    assert len(keys) == len(set(keys)) and len(keys) >= 10
    for q in quiz_bank.SELF_CHECK:
        assert q.review, q.key
        if isinstance(q, MultipleChoice):
            assert all(c.why for c in q.choices), q.key
            assert quiz.check_choice(q, q.answer).correct
            assert all(not quiz.check_choice(q, letter).correct for letter in q.letters if letter != q.answer)
        else:
            assert quiz.check_numeric(q, q.answer).correct and q.solution
            for value, meaning in q.traps:
                assert not quiz.check_numeric(q, value).correct, (q.key, value)


def test_bank_numeric_answers_are_computed_right():
    answers = {q.key: q.answer for q in quiz_bank.SELF_CHECK if isinstance(q, Numeric)}
    assert answers["softmax_two"] == pytest.approx(float(torch.softmax(torch.tensor([1.0, 0.0]), -1)[0]))
    assert answers["ratio_gap14_t20"] == pytest.approx(math.exp(14 / 20))
    assert answers["cache_mnist_mb"] == pytest.approx(60_000 * 10 * 4 / 1e6)


def test_answers_spread_over_the_letters():
    letters = {q.answer for q in quiz_bank.SELF_CHECK if isinstance(q, MultipleChoice)}
    assert len(letters) >= 3


# ----------------------------------------------------------------------------- graded-question helpers

def test_read_choice_normalizes_and_swallows_noise(capfd):
    def noisy():
        print("thinking...", file=sys.stderr)
        warnings.warn("careful")
        return " c "
    assert quiz.read_choice(noisy, "ABCD") == "C"
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("returned", [None, "E", 3, "A or B"])
def test_read_choice_explains_an_unreadable_answer(returned):
    with pytest.raises(CheckFailed, match="must return one letter"):
        quiz.read_choice(lambda: returned, "ABCD", name="q_demo")


def test_the_released_stub_gets_a_friendly_message():
    def q_demo():
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="NotImplementedError"):
        quiz.read_choice(q_demo)


def test_expect_choice_never_reveals_the_answer():
    quiz.expect_choice("q_demo", "B", "B")
    with pytest.raises(CheckFailed) as err:
        quiz.expect_choice("q_demo", "A", "B", review="Lesson 3, section 4")
    assert "'A' is not the best answer" in str(err.value) and "Lesson 3, section 4" in str(err.value)
    assert "'B'" not in str(err.value) and '"B"' not in str(err.value)


def test_read_number_accepts_numbers_and_0d_tensors():
    assert quiz.read_number(lambda: 3) == 3.0
    assert quiz.read_number(lambda: torch.tensor(0.5)) == 0.5
    for bad in ["0.5", None, True, float("nan"), torch.tensor([0.5, 0.5])]:
        with pytest.raises(CheckFailed):
            quiz.read_number(lambda bad=bad: bad, name="n_demo")


def test_read_number_refuses_kdlab_calls():
    from kdlab import losses

    def n_demo():
        return float(losses.softmax_t(torch.tensor([3.0, 1.0, 0.0]), 2.0)[0])
    with pytest.raises(CheckFailed, match="kdlab"):
        quiz.read_number(n_demo)


def test_expect_number_tolerance_and_message():
    quiz.expect_number("n_demo", 0.6290, 0.62853, rel_tol=0.005)
    with pytest.raises(CheckFailed) as err:
        quiz.expect_number("n_demo", 0.64, 0.62853, rel_tol=0.005)
    assert "0.64 is not right" in str(err.value) and "0.628" not in str(err.value)


def test_recorded_prints_to_stdout_only(capsys):
    quiz.recorded("n_demo", 0.5)
    quiz.recorded("q_demo", "B")
    out = capsys.readouterr()
    assert "n_demo: your answer 0.5 is recorded" in out.out and "'B'" in out.out and out.err == ""
