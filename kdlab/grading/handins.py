"""Find a class's hand-ins: a folder (or a zip of one) in nbgrader's layout STUDENT/ASSIGNMENT/NOTEBOOK.ipynb.

Nothing here reads a notebook's content: each hand-in is opened, checked and
graded by its own isolated job (:mod:`kdlab.grading.worker`). This module only
walks folders, and extracts zips without letting a member escape the target
folder (no absolute paths, no ``..``, no links) or expand past a size limit.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KdlabError

IGNORED_NAMES = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", "feedback", ".DS_Store"}
NOT_CLASS_FOLDERS = {"autograded", "release", "source", "solutions", "notebooks"}
MAX_EXTRA_FILE = 64 * 2**20   # files handed in beside the notebooks larger than this are not copied


@dataclass
class HandIn:
    """One row of the class: a student's notebook of an assignment (present or not)."""

    student: str
    assignment: str
    notebook: str
    path: Path | None = None            # the hand-in file, when there is one to grade
    extras: list = field(default_factory=list)  # [(relative path, absolute path)] of the other files handed in
    status: str = ""                    # set here when the row needs no grading job (missing, misplaced, ...)
    detail: str = ""

    @property
    def key(self) -> tuple:
        return (self.student, self.assignment, self.notebook)


def course_notebooks(course: Path) -> dict:
    """``{assignment: [notebook names]}`` of the course's ``solutions/`` folder."""
    solutions = Path(course) / "solutions"
    out = {}
    for folder in sorted(p for p in solutions.iterdir() if p.is_dir() and not _ignored(p.name)):
        names = sorted(p.stem for p in folder.glob("*.ipynb") if p.is_file())
        if names:
            out[folder.name] = names
    return out


def _ignored(name: str) -> bool:
    return name in IGNORED_NAMES or name.startswith(".")


def _subdirs(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not _ignored(p.name))


def find_root(folder: Path, assignments) -> Path:
    """The folder whose subfolders are the students: ``folder`` itself or a folder up to 2 levels below.

    A zip often wraps the class in ``submitted/`` or a folder named after the
    course; the root is the shallowest folder with the most STUDENT/ASSIGNMENT
    pairs naming an assignment of the course.
    """
    known = set(assignments)
    best, best_score = folder, 0
    level = [folder]
    for _ in range(3):
        next_level = []
        for candidate in level:
            if candidate is not folder and candidate.name in NOT_CLASS_FOLDERS:
                continue  # an nbgrader course's autograded/ mirrors submitted/: never take it for the class
            students = _subdirs(candidate)
            score = sum(1 for s in students if s.name not in NOT_CLASS_FOLDERS
                        for a in _subdirs(s) if a.name in known)
            if score > best_score:
                best, best_score = candidate, score
            next_level.extend(students)
        level = next_level[:500]
    return best


def collect(folder: Path, assignments: dict, oversized: dict | None = None, skip=()) -> list:
    """Every row of the class: one per student and notebook of each assignment the student handed in.

    ``skip``: folders to leave out (the output folder, when it lies inside the class folder).
    """
    oversized = oversized or {}
    skip = {Path(p).resolve() for p in skip}
    root = find_root(folder, assignments)
    owner = {n: a for a, names in assignments.items() for n in names}
    rows = []
    for student_dir in _subdirs(root):
        if student_dir.resolve() in skip:
            continue
        student = student_dir.name
        for entry in sorted(student_dir.iterdir()):
            if _ignored(entry.name):
                continue
            if entry.is_file() and entry.suffix == ".ipynb":
                where = owner.get(entry.stem)
                hint = f" (it is a notebook of {where})" if where else ""
                rows.append(HandIn(student, "", entry.stem, status="misplaced",
                                   detail=f"not in an assignment folder: hand-ins go in STUDENT/ASSIGNMENT/NOTEBOOK.ipynb{hint}"))
                continue
            if not entry.is_dir() or entry.is_symlink():
                continue
            assignment = entry.name
            notebooks_here = sorted(p for p in entry.iterdir() if p.suffix == ".ipynb" and not _ignored(p.name))
            if assignment not in assignments:
                for p in notebooks_here:
                    rows.append(HandIn(student, assignment, p.stem, status="unknown_assignment",
                                       detail=f"the course has no assignment {assignment!r} "
                                              f"(solutions/ holds {', '.join(sorted(assignments))})"))
                continue
            extras = _extras(entry)
            expected = assignments[assignment]
            for name in expected:
                path = entry / f"{name}.ipynb"
                row = HandIn(student, assignment, name)
                rel = str(path.relative_to(folder))
                if rel in oversized:
                    row.status, row.detail = "too_large", oversized[rel]
                elif path.is_symlink():
                    row.status, row.detail = "not_notebook", "a symbolic link, not a file: not followed"
                elif path.is_dir():
                    row.status, row.detail = "not_notebook", "a folder, not a notebook file"
                elif not path.exists():
                    row.status, row.detail = "missing", "not handed in"
                else:
                    row.path, row.extras = path, extras
                rows.append(row)
            for p in notebooks_here:
                if p.stem in expected:
                    continue
                where = owner.get(p.stem)
                if where:
                    rows.append(HandIn(student, assignment, p.stem, status="wrong_assignment",
                                       detail=f"{p.name} is a notebook of {where}, not of {assignment}"))
                else:
                    rows.append(HandIn(student, assignment, p.stem, status="unexpected",
                                       detail=f"{p.name} is not a notebook of {assignment}: not graded"))
    return rows


def _extras(folder: Path) -> list:
    """The other files of a hand-in folder (nbgrader copies them next to the notebooks it grades)."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(_ignored(part) for part in rel.parts) or p.is_symlink() or not p.is_file():
            continue
        if len(rel.parts) == 1 and p.suffix == ".ipynb":
            continue
        if any(parent.is_symlink() for parent in p.parents if folder in parent.parents):
            continue
        if p.stat().st_size > MAX_EXTRA_FILE:
            continue
        out.append((str(rel), str(p)))
    return out


def extract_zip(archive: Path, dest: Path, *, max_total: int, max_member: int) -> dict:
    """Extract ``archive`` into ``dest`` safely; returns ``{relative path: reason}`` of members left out for size."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise KdlabError(f"{archive} is not a readable zip file ({e})") from None
    oversized: dict = {}
    total = 0
    dest = Path(dest)
    with zf:
        for info in zf.infolist():
            name = info.filename.replace("\\", "/")
            parts = [p for p in name.split("/") if p not in ("", ".")]
            if not parts or name.startswith("/") or ".." in parts or ":" in parts[0]:
                continue  # would land outside the folder
            if stat.S_ISLNK(info.external_attr >> 16):
                continue
            target = dest.joinpath(*parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            rel = "/".join(parts)
            if info.file_size > max_member:
                oversized[rel] = f"{info.file_size} bytes unpacked, over the per-file limit of {max_member}"
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > max_member:
                            break
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
                # a damaged member: keep what was read; the grader reports the file as it is
                oversized.pop(rel, None)
                _ = e
            if written > max_member:
                target.unlink(missing_ok=True)
                oversized[rel] = f"more than {max_member} bytes unpacked, over the per-file limit"
                continue
            total += written
            if total > max_total:
                raise KdlabError(f"{archive} unpacks to more than {max_total} bytes; refusing to extract it")
    return oversized
