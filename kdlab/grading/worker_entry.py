"""The job processes' entry point, importable without nbgrader (the forkserver has the worker preloaded)."""

from __future__ import annotations

import html


def child_main(kind: str, spec: dict) -> None:
    from .worker import child_main as run

    run(kind, spec)


def failure_page(row: dict) -> str:
    """A small feedback page for a hand-in that could not be graded: what happened, and the score."""
    e = {k: html.escape(str(v)) for k, v in row.items()}
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e['notebook']}: not graded</title></head>\n"
            f"<body>\n<h1>{e['assignment']} / {e['notebook']}</h1>\n<p>Student: {e['student']}</p>\n"
            f"<p><strong>Not graded ({e['status']}):</strong> {e['detail']}.</p>\n"
            f"<p>Score: {e['score']} / {e['max_score']}</p>\n</body></html>\n")
