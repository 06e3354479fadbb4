"""``kdlab grade``: batch-grade a class's hand-ins so that no hand-in can forge its grade.

    kdlab grade SUBMISSIONS --out DIR [--workers N] [--timeout S] [--cell-timeout S] [--memory SIZE]
                [--into-course] [--no-sandbox]

SUBMISSIONS is a folder in nbgrader's layout, STUDENT/ASSIGNMENT/NOTEBOOK.ipynb,
or a zip of one. Each hand-in's code runs in a bubblewrap sandbox of its own
(:mod:`.bwrap`, :mod:`.sandbox`); the course's test cells, hidden tests
included, run outside it on what the learner's functions returned there
(:mod:`.replay`, :mod:`.scoring`), N hand-ins at a time. DIR receives
grades.csv (student, assignment, notebook, score, max_score, status,
detail), nbgrader's gradebook.db, the graded notebooks and HTML feedback
without the hidden tests. docs/grading.md has the design, each status
(:mod:`.statuses`) and the threat model.

From Python::

    from kdlab.grading import grade_class, Options
    summary = grade_class("class/", "graded/", options=Options(workers=2))
    print(summary.text())
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import KdlabError
from .runner import CSV_FIELDS, Options, Summary, grade_class, parse_size  # noqa: F401
from .statuses import GRADED  # noqa: F401

def add_cli(sub) -> None:
    """Register ``kdlab grade`` on the ``kdlab`` command's sub-parsers."""
    p = sub.add_parser(
        "grade", help="grade a class's hand-ins: sandboxed, scored outside the sandbox, in parallel",
        description="Grade every STUDENT/ASSIGNMENT/NOTEBOOK.ipynb under SUBMISSIONS (a folder or a zip) against "
                    "the course's solutions/: each hand-in's code runs in a bubblewrap sandbox of its own, with a "
                    "timeout and a memory limit, and the hidden tests run outside it, on what its functions "
                    "returned, N at a time (--workers). Writes DIR/grades.csv, DIR/gradebook.db, DIR/autograded/ "
                    "and DIR/feedback/ (HTML without the hidden tests). Re-running the command reuses finished "
                    "grades.")
    p.add_argument("submissions", type=Path, metavar="SUBMISSIONS",
                   help="folder STUDENT/ASSIGNMENT/NOTEBOOK.ipynb, or a zip of one")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the grades and feedback go")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="notebooks graded at once (default: the usable CPU cores)")
    p.add_argument("--course", type=Path, default=None, metavar="DIR",
                   help="the nbgrader course (nbgrader_config.py, solutions/); default: the current folder, "
                        "else the kdlab repository")
    p.add_argument("--timeout", type=float, default=Options.timeout, metavar="S",
                   help="wall-clock seconds per notebook before it is stopped (default: %(default)g)")
    p.add_argument("--cell-timeout", type=int, default=None, metavar="S",
                   help="seconds per cell before it is interrupted (default: the course's "
                        "ExecutePreprocessor.timeout)")
    p.add_argument("--memory", default=None, metavar="SIZE",
                   help="address space per grading process, e.g. 4G (default: 4G, less on small machines)")
    p.add_argument("--max-output", default="8M", metavar="SIZE",
                   help="output a notebook may print while it runs before the rest is dropped (default: 8M)")
    p.add_argument("--max-notebook-size", default="64M", metavar="SIZE",
                   help="hand-in files larger than this are not opened (default: 64M)")
    p.add_argument("--no-feedback", action="store_true", help="skip the HTML feedback")
    p.add_argument("--fresh", action="store_true", help="regrade everything instead of reusing finished grades")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--into-course", action="store_true",
                   help="also record the grades in the course's gradebook.db (the formgrader's, nbgrader export's) "
                        "and copy the graded notebooks and feedback into the course's autograded/ and feedback/, "
                        "ready for `nbgrader release_feedback`")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without the bubblewrap sandbox (where bwrap is unavailable): the hand-ins' code "
                        "then runs as you and can forge grades; every row is marked unsandboxed")
    p.set_defaults(func=_cmd_grade)


def _cmd_grade(args) -> int:
    from .. import paths

    if args.workers is not None and args.workers < 1:
        raise KdlabError(f"--workers must be at least 1, got {args.workers}")
    if not args.submissions.exists():
        raise KdlabError(f"{args.submissions} does not exist")
    paths.check_output_dir(args.out, "--out")
    if args.course is not None:
        paths.check_input_dir(args.course, "--course")
    options = Options(
        workers=args.workers, timeout=args.timeout, cell_timeout=args.cell_timeout,
        memory=parse_size(args.memory) if args.memory else None, max_output=parse_size(args.max_output),
        max_notebook_size=parse_size(args.max_notebook_size), feedback=not args.no_feedback,
        fresh=args.fresh, progress=not args.no_progress, sandbox=not args.no_sandbox,
        into_course=args.into_course)
    summary = grade_class(args.submissions, args.out, course=args.course, options=options)
    print(summary.text())
    if summary.interrupted:
        raise KeyboardInterrupt
    if summary.graded == 0:
        print(f"kdlab: error: no notebook could be graded ({summary.failed} failed, {summary.missing} not handed "
              "in): check the folder layout STUDENT/ASSIGNMENT/NOTEBOOK.ipynb", file=sys.stderr)
        return 1
    return 0
