"""The notebook that is graded: the hand-in's own cells, with the course's read-only cells put back.

As nbgrader's autograder does, the learner keeps their answer cells and any
cell they added, in their order; every read-only or graded cell the course
defines (by nbgrader ``grade_id``) is taken from the released notebook, not
from the hand-in, and one the learner deleted is put back where it stood.
Unlike nbgrader, a test cell does not run in the learner's process: the
sandbox gets a *probe* in its place (:mod:`.sandbox`), and the trusted
scorer runs the test cell itself (:mod:`.scoring`).

This module only reads the hand-in as data (nbformat); it runs nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import nbformat

from ..lessons import is_experiment
from .scoring import lesson_cells, source_of


@dataclass
class Restored:
    notebook: object                       # nbformat node: the notebook as graded (outputs filled in later)
    run: list                              # code cells for the sandbox: {"index", "source"} or {"index", "probe"}
    answers: dict = field(default_factory=dict)     # {grade_id: the learner's source} of answer cells
    edited: list = field(default_factory=list)      # read-only cells the learner had changed
    deleted: list = field(default_factory=list)     # graded cells the learner had removed


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in (text or "").strip().splitlines())


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    gid = nbg.get("grade_id") if isinstance(nbg, dict) else None
    return gid if isinstance(gid, str) else None


def _plain(cell) -> dict:
    """A learner's own cell, as a clean nbformat cell without nbgrader metadata."""
    kind = cell.get("cell_type") if cell.get("cell_type") in ("code", "markdown", "raw") else "raw"
    src = source_of(cell)
    if kind == "code":
        return nbformat.v4.new_code_cell(src)
    if kind == "markdown":
        return nbformat.v4.new_markdown_cell(src)
    return nbformat.v4.new_raw_cell(src)


def restore(handin, released, solution) -> Restored:
    """The graded notebook from ``handin`` (the learner's), ``released`` and ``solution`` (the course's)."""
    roles = {c.grade_id: c for c in lesson_cells(solution) if c.grade_id}
    rel_cells = {_grade_id(c): c for c in released["cells"] if _grade_id(c)}
    order = {gid: i for i, gid in enumerate(g for g in (_grade_id(c) for c in released["cells"]) if g)}
    present = []
    seen = set()
    for cell in handin.get("cells", []):
        gid = _grade_id(cell)
        if gid in roles and gid in rel_cells and gid not in seen:
            seen.add(gid)
            present.append((gid, cell))
        else:
            present.append((None, cell))
    missing = [gid for gid in order if gid not in seen]
    out = Restored(notebook=nbformat.v4.new_notebook(), run=[])
    out.notebook.metadata = copy.deepcopy(released.get("metadata", {}))
    cells = out.notebook.cells

    def emit_course_cell(gid: str, learner=None) -> None:
        role = roles[gid]
        cell = copy.deepcopy(rel_cells[gid])
        if role.kind in ("answer", "manual") and learner is not None:
            cell["source"] = source_of(learner)
            out.answers[gid] = cell["source"]
        elif learner is not None and role.kind != "answer":
            src = _normalized(source_of(learner))
            if src not in (_normalized(role.source), _normalized(source_of(rel_cells[gid]))):
                out.edited.append(gid)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(nbformat.from_dict(cell))

    for gid, cell in present:
        if gid is not None:
            while missing and order[missing[0]] < order[gid]:
                emit_course_cell(missing.pop(0))
            emit_course_cell(gid, cell)
        elif isinstance(cell, dict):
            cells.append(_plain(cell))
    for gid in missing:
        emit_course_cell(gid)
    out.deleted = sorted(g for g in order if g not in seen and roles[g].kind in ("test", "manual"))
    out.edited.sort()

    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        gid = _grade_id(cell)
        role = roles.get(gid) if gid else None
        if role is not None and role.kind == "test":
            out.run.append({"index": i, "probe": gid})
        elif not is_experiment(source_of(cell)):
            out.run.append({"index": i, "source": source_of(cell)})
    return out
