"""Every status a row of ``grades.csv`` can have: the one table the code, the CSV and docs/grading.md share.

A *graded* status means the score is the trusted scorer's; the others mean
the notebook was not graded and scores 0. Among the graded ones, every
status but ``ok`` flags the row for the instructor (nbgrader's formgrader
shows it flagged); when several apply, the first in :data:`FLAGS` is the
status and ``detail`` lists them all.
"""

from __future__ import annotations

# (status, graded, what it means) in the order docs/grading.md lists them
TABLE = (
    ("ok", True, "graded"),
    ("unsandboxed", True, "graded with `--no-sandbox`: the hand-in's code ran unconfined, so its grade proves "
                          "nothing against a deliberate attack"),
    ("tests_modified", True, "the learner edited or deleted read-only or test cells; they were restored and graded"),
    ("suspicious", True, "an answer cell touches the grader's machinery (IPython hooks, tracing, `sys.modules`, "
                         "`/proc`, sqlite3, frames, ...): graded as usual, flagged for a human look"),
    ("output_truncated", True, "the notebook printed more than `--max-output` while it ran; the rest was dropped "
                               "(scores are unchanged)"),
    ("cell_timeout", True, "some cells were interrupted at the per-cell limit (`--cell-timeout`)"),
    ("memory_limit", True, "some cells ran out of memory, the rest was graded; or the notebook was stopped for "
                           "memory (then score 0)"),
    ("missing", False, "the notebook was not handed in"),
    ("empty", False, "the file is empty"),
    ("not_json", False, "the file is not JSON (or not text)"),
    ("truncated", False, "the file's JSON stops early (an incomplete upload)"),
    ("not_notebook", False, "JSON that is not a notebook; or a link or a folder in the notebook's place"),
    ("too_large", False, "the file is larger than `--max-notebook-size`"),
    ("wrong_assignment", False, "the notebook of another lesson or assignment"),
    ("unexpected", False, "a notebook the assignment does not have"),
    ("unknown_assignment", False, "a folder named after no assignment of the course"),
    ("misplaced", False, "a notebook outside any assignment folder"),
    ("timeout", False, "still running after `--timeout` seconds: stopped"),
    ("kernel_died", False, "the notebook's process exited or died (`exit()`, `os._exit()`, a crash)"),
    ("crashed", False, "the grading process died"),
    ("error", False, "the hand-in could not be graded (the detail says why)"),
)

GRADED = frozenset(name for name, graded, _ in TABLE if graded)
# Flags of a graded row, most important first: the row's status is the first that applies.
FLAGS = tuple(name for name, graded, _ in TABLE if graded and name != "ok")


def markdown_table(graded: bool) -> str:
    """The statuses of one kind as a Markdown table (docs/grading.md holds exactly these)."""
    rows = ["| status | meaning |", "|---|---|"]
    rows += [f"| `{name}` | {meaning} |" for name, g, meaning in TABLE if g == graded]
    return "\n".join(rows)
