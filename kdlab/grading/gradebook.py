"""Writing grades into nbgrader's gradebook (run in a job process: the parent never imports nbgrader).

:func:`merge` puts finished rows into OUT/gradebook.db the way ``nbgrader
autograde`` itself records them: the submission (with its timestamp), each
grade's ``auto_score`` and ``needs_manual_grade``, the late penalty. A
notebook that could not be graded, or was not handed in, gets 0 on every
grade, as nbgrader gives a missing notebook. Rows that are not ``ok`` are
flagged, so nbgrader's formgrader shows them to the instructor.
"""

from __future__ import annotations

import warnings


def max_scores(db_url: str) -> list:
    """``[[assignment, notebook, max_score], ...]`` of a gradebook."""
    from nbgrader.api import Gradebook

    out = []
    with Gradebook(db_url) as gb:
        for assignment in gb.assignments:
            for nb in assignment.notebooks:
                out.append([assignment.name, nb.name, float(nb.max_score)])
    return sorted(out)


def merge(db_url: str, entries: list) -> int:
    """Record ``entries`` (``{"row", "grades", "late_penalty", "timestamp"}``); returns how many were recorded."""
    from nbgrader.api import Gradebook

    done = 0
    with warnings.catch_warnings():
        # nbgrader's add_submission trips SQLAlchemy's autoflush warnings; they are harmless.
        warnings.simplefilter("ignore")
        with Gradebook(db_url) as gb:
            for entry in entries:
                done += _merge_one(gb, entry)
    return done


def _merge_one(gb, entry: dict) -> int:
    from nbgrader.api import MissingEntry

    row = entry["row"]
    a, s, n = row["assignment"], row["student"], row["notebook"]
    try:
        gb.find_notebook(n, a)
    except MissingEntry:
        return 0
    gb.update_or_create_student(s)
    kwargs = {"timestamp": entry["timestamp"]} if entry.get("timestamp") else {}
    gb.update_or_create_submission(a, s, **kwargs)
    nb = gb.find_submission_notebook(n, a, s)
    grades = entry.get("grades") or {}
    for g in nb.grades:
        got = grades.get(g.name)
        if got and got.get("auto_score") is not None:
            g.auto_score = min(max(float(got["auto_score"]), 0.0), float(g.max_score))
            g.needs_manual_grade = bool(got.get("needs_manual_grade"))
        elif got:
            g.auto_score = None
            g.needs_manual_grade = bool(got.get("needs_manual_grade"))
        else:
            g.auto_score = 0.0
            g.needs_manual_grade = False
    nb.late_submission_penalty = float(entry.get("late_penalty") or 0.0) or None
    nb.flagged = row["status"] != "ok"
    gb.db.commit()
    return 1
