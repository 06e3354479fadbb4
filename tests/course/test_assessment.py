"""The graded parts measure the learner, not the notebook: no answer handed over, no guessable form.

Measured on the notebooks a learner receives (tests/assessment_audit.py; ``python
tests/assessment_audit.py`` prints every number).
"""

from __future__ import annotations

import re

import pytest

import assessment_audit as audit

LEAKS = audit.all_leaks()
QUESTIONS = audit.graded_questions()


@pytest.mark.parametrize("leak", LEAKS, ids=[f"{leak.lesson}:{leak.exercise}" for leak in LEAKS])
def test_the_learners_notebook_does_not_hold_the_solutions_code(leak):
    assert leak.share <= audit.LEAK_LIMIT, (
        f"{leak.exercise}: {leak.share:.0%} of its solution's {audit.NGRAM}-token runs are already in "
        f"notebooks/{leak.assignment}/{leak.lesson}.ipynb (limit {audit.LEAK_LIMIT:.0%}), e.g. {leak.examples}")


def test_the_audit_sees_a_leak_when_there_is_one():
    """The measure itself: a notebook that quotes a solution line by line is caught."""
    code = "log_q = torch.log_softmax(student_logits / T, dim=-1)\nreturn (log_q.exp() * log_q).sum() * T ** 2\n"
    runs = audit.ngrams(audit.code_tokens(code))
    seen = set(audit.ngrams(audit.text_tokens(f"Hint: `{code.splitlines()[0]}` then the rest.")))
    share = sum(r in seen for r in runs) / len(runs)
    assert 0.3 < share < 1.0
    assert audit.ngrams(audit.code_tokens("# a comment\n'''a docstring'''\nx = 1\n")) == []


def test_every_code_exercise_is_audited():
    exercises = {leak.exercise for leak in LEAKS}
    assert len(exercises) >= 26, sorted(exercises)


def test_multiple_choice_cannot_be_answered_from_its_form():
    chance = audit.chance(QUESTIONS)
    scores = audit.form_strategies(QUESTIONS)
    report = "; ".join(f"{name}: {score:.0%}" for name, score in scores.items())
    print(f"\n{len(QUESTIONS)} graded multiple-choice questions, chance {chance:.0%}: {report}")
    for name, score in scores.items():
        assert score <= chance + audit.MC_MARGIN, f"{name} scores {score:.0%} (chance {chance:.0%}): {report}"


def test_the_form_audit_catches_a_guessable_key():
    """The strategies themselves: a key in a cycle, or always the longest option, is found."""
    def question(n, key, long_key):
        options = {k: ("a long, careful, qualified right answer" if k == key and long_key else "short") for k in "ABCD"}
        return audit.Question(n, options, key, "")

    cycle = [question(i, "ABCD"[i % 4], False) for i in range(16)]
    assert audit.form_strategies(cycle)["a repeating cycle of period 4 (the best one)"] == 1.0
    longest = [question(i, "ABCD"[(i * 7) % 4], True) for i in range(16)]
    assert audit.form_strategies(longest)["always the longest option"] == 1.0


def test_graded_multiple_choice_covers_every_lesson():
    assert len(QUESTIONS) >= 16, f"{len(QUESTIONS)} graded multiple-choice questions"
    for q in QUESTIONS:
        assert sorted(q.options) == ["A", "B", "C", "D"], q
        assert q.key in q.options
        assert q.review, f"MC{q.number} names no lesson to review"
    covered = {int(n) for q in QUESTIONS for n in re.findall(r"Lesson (\d+)", q.review)}
    assert set(range(1, 10)) <= covered, f"lessons without a graded question: {set(range(1, 10)) - covered}"


HINTS = audit.all_hints()


@pytest.mark.parametrize("hints", HINTS, ids=[f"{h.lesson}:{h.exercise}" for h in HINTS])
def test_every_exercise_has_tiered_hints_without_code(hints):
    """A nudge first, then the key idea in words or math; code spans may name a function, never show code."""
    assert len(hints.tiers) >= 2, f"{hints.exercise}: {len(hints.tiers)} hint tier(s); want 'Hint 1' and 'Hint 2'"
    assert not hints.code, f"{hints.exercise}: its hints show code: {hints.code}"


def test_hint_audit_flags_code_and_accepts_names():
    assert audit._A_NAME.match("log_softmax") and audit._A_NAME.match("optimizer.zero_grad()")
    assert not audit._A_NAME.match("torch.log_softmax(z / T, dim=-1)")
    assert not audit._A_NAME.match("(q - p) / T")


def test_the_readme_gives_every_exercise_its_rough_time():
    """Instructors plan a workshop from the README's course table: every code exercise, with its minutes."""
    readme = (audit.REPO / "README.md").read_text()
    table = readme[readme.index("## The course"):readme.index("Each lesson states its goals")]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\|[^|]*\| `(\d\d_\w+)`[^|]*\|(.*)\|$", table, re.M)}
    for assignment, lesson in audit.lessons():
        exercises = [h.exercise for h in audit.exercise_hints(assignment, lesson)]
        listed = re.findall(r"`(\w+)` \((\d+) min\)", rows.get(lesson, ""))
        assert [name for name, _ in listed] == exercises, f"{lesson}: README lists {listed}, the lesson has {exercises}"
        assert all(5 <= int(minutes) <= 45 for _, minutes in listed), listed
