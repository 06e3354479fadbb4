"""What a learner reads when a visible check fails: a few lines, in a real kernel and in nbgrader's Validate.

A notebook with a wrong answer, an answer that raises NameError and a right
one is validated by nbgrader's own Validator (what the Validate button
shows), which runs it in a real ``python3`` kernel and reports each failing
cell's error output: the kernel's traceback lines, which the notebook shows
too. That output must be the check's message (case, call, expected, got,
hint), at most 10 lines, with none of kdlab's frames and no chained
traceback; for the learner's own error, their cell and line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from kdlab import checks

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")

SETUP = "import torch\nimport kdlab.losses\nfrom kdlab.checks import Checker"
WRONG = "def softmax_t(z, T):\n    e = torch.exp(z / T)\n    return e / e.sum()"
RAISES = "def softmax_t(z, T):\n    e = torch.exp(z / T)\n    return e / totl"
RIGHT = "def softmax_t(z, T):\n    return torch.softmax(z / T, dim=-1)"
TEST = ("check = Checker(softmax_t, reference=kdlab.losses.softmax_t)\n"
        "check.matches(\"two rows at T = 1\", torch.tensor([[2.0, 1.0], [0.0, 3.0]]), 1.0,\n"
        "              hint=\"normalize each row: dim=-1\")\n"
        "check.done()")


def grade_cell(source: str, grade_id: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": 1,
                                 "schema_version": 3, "solution": False, "task": False}
    return cell


def notebook() -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_code_cell(SETUP)]
    for name, answer in (("wrong", WRONG), ("raises", RAISES), ("right", RIGHT)):
        cells += [nbformat.v4.new_code_cell(answer), grade_cell(TEST, f"test_{name}")]
    return nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


def plain(lines) -> list[str]:
    """The lines as the learner reads them: ANSI colours removed, split at newlines."""
    return ANSI.sub("", "\n".join(lines)).splitlines()


def assert_reads_first(text: list[str]) -> None:
    joined = "\n".join(text)
    assert len(text) <= checks.MAX_FEEDBACK_LINES, joined
    for unwanted in ("kdlab/checks.py", "checks.py", "direct cause", "Traceback (most recent call last)",
                     "During handling", "_run", "raise CheckFailed"):
        assert unwanted not in joined, joined


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    """nbgrader's Validator on the notebook: it runs a real python3 kernel, and what it reports for each
    failing cell is that kernel's error output (``traceback`` lines), the lines the notebook shows too."""
    from nbgrader.validator import Validator

    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", str(REPO))   # the kernel imports this checkout's kdlab from any folder
    mp.delenv("NBGRADER_EXECUTION", raising=False)
    try:
        path = tmp_path_factory.mktemp("validate") / "lesson.ipynb"
        nbformat.write(notebook(), str(path))
        return Validator().validate(str(path))["failed"]
    finally:
        mp.undo()


def test_only_the_two_wrong_answers_fail(failed):
    assert len(failed) == 2   # the wrong answer and the NameError; the right answer passed
    assert all(entry["source"] == TEST for entry in failed)


def test_a_wrong_answer_shows_case_expected_got_and_hint_only(failed):
    text = plain([failed[0]["raw_error"]])
    assert_reads_first(text)
    assert text[0] == "CheckFailed: softmax_t failed the case: two rows at T = 1"
    joined = "\n".join(text)
    for part in ("called   softmax_t(tensor([[2, 1], [0, 3]]), 1.0)", "expected tensor(", "got      tensor(",
                 "largest difference", "hint: normalize each row: dim=-1"):
        assert part in joined, joined
    assert "in your code" not in joined   # nothing of theirs raised: no location to show


def test_the_learners_own_error_shows_their_cell_and_line_not_kdlabs(failed):
    text = plain([failed[1]["raw_error"]])
    assert_reads_first(text)
    joined = "\n".join(text)
    assert text[0] == "CheckFailed: softmax_t failed the case: two rows at T = 1"
    assert "it raised NameError: name 'totl' is not defined" in joined
    # their frame: the cell that defined softmax_t (execution count 4), line 3, and that line's source
    assert re.search(r"in your code: Cell In\[4\], line 3, in softmax_t\n +return e / totl", joined), joined
    assert text[-1] == "  hint: normalize each row: dim=-1"


def test_the_line_budget_holds_for_long_messages_and_deep_learner_code():
    def inner(z):
        return z.view(5, 7)

    def middle(z):
        return inner(z)

    def outer(z, T):
        return middle(z) / T

    check = checks.Checker(outer, reference=lambda z, T: z, name="softmax_t")
    with pytest.raises(checks.CheckFailed) as info:
        check.matches("a case", checks.randn(3), 1.0, hint="a hint")
    assert info.value.__cause__ is None and info.value.__suppress_context__   # no chained traceback
    lines = info.value._render_traceback_()
    assert len(lines) == checks.MAX_FEEDBACK_LINES
    assert lines[-1] == "  hint: a hint"
    # the innermost frames are the ones kept: where it broke
    assert any("return z.view(5, 7)" in line for line in lines)
    # no frame of the kdlab package is shown as theirs (the package's folder, not the word: a checkout may be
    # named kdlab too)
    package = str(Path(checks.__file__).parent) + os.sep
    assert not any(package in line and "in your code" in line for line in lines)

    long = checks.CheckFailed("\n".join([f"line {i}" for i in range(30)] + ["  hint: last"]))
    lines = long._render_traceback_()
    assert len(lines) == checks.MAX_FEEDBACK_LINES and lines[-1] == "  hint: last" and "  ..." in lines


def test_grading_still_reads_the_plain_message():
    """The trusted scorer (kdlab/grading/scoring.py) keeps ``str(CheckFailed)``: the message alone."""
    check = checks.Checker(lambda z, T: z / totl, reference=lambda z, T: z, name="softmax_t")  # noqa: F821
    with pytest.raises(checks.CheckFailed) as info:
        check.matches("a case", checks.randn(3), 1.0)
    assert str(info.value).splitlines() == [
        "softmax_t failed the case: a case",
        "  called   softmax_t(tensor([1.541, -0.2934, -2.179]), 1.0)",
        "  it raised NameError: name 'totl' is not defined"]
    assert isinstance(info.value.learner_error, NameError)
