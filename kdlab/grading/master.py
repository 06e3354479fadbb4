"""The master course: the grading's own build of the course, made once and checked on every use.

It holds the course config, a copy of ``solutions/``, nbgrader's gradebook
and released notebooks (``nbgrader generate_assignment``), each notebook's
plan (:func:`kdlab.grading.scoring.build_plan`: the hidden inputs) and the
sandbox's small kdlab. It lives in OUT/.kdlab-grade/master, which no
sandbox can see, and is cached by a hash of what it is built from. The
parent takes a digest of every file in it before any job starts
(:func:`digests`); the jobs refuse a file that no longer matches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import KdlabError
from . import handins as hi
from .bwrap import SANDBOX_FILES
from .pool import Pool, job_outcome

GRADER_VERSION = "2"

# ----------------------------------------------------------------------------- the course

def find_course(course: Path | None) -> Path:
    """The nbgrader course root: ``--course``, else the current folder, else the kdlab repository."""
    candidates = [Path(course)] if course else [Path.cwd(), Path(__file__).resolve().parents[2]]
    for c in candidates:
        if (c / "solutions").is_dir() and (c / "nbgrader_config.py").is_file():
            return c.resolve()
    if course:
        raise KdlabError(f"{course} is not an nbgrader course: it needs nbgrader_config.py and solutions/")
    raise KdlabError("no course found: run this in the course folder (nbgrader_config.py, solutions/) or pass --course")


def _hash_tree(h, folder: Path) -> None:
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part in hi.IGNORED_NAMES for part in rel.parts):
            h.update(str(rel).encode() + b"\0")
            h.update(p.read_bytes())


def course_fingerprints(course: Path, assignments) -> dict:
    """``{assignment: hash}`` of what grading it depends on: the config, solutions/ASSIGNMENT, the versions."""
    from importlib.metadata import version

    base = hashlib.sha256()
    base.update(f"kdlab-grade {GRADER_VERSION} nbgrader {version('nbgrader')}\0".encode())
    base.update((course / "nbgrader_config.py").read_bytes())
    # The grader's own code that the master and the results depend on: the sandbox's kdlab, the scorer.
    package = Path(__file__).resolve().parents[1]
    for rel in sorted(set(SANDBOX_FILES) | {"grading/scoring.py", "grading/restore.py", "grading/worker.py"}):
        base.update(rel.encode() + b"\0" + (package / rel).read_bytes())
    out = {}
    for a in sorted(assignments):
        h = base.copy()
        h.update(a.encode() + b"\0")
        _hash_tree(h, course / "solutions" / a)
        out[a] = h.hexdigest()
    return out


def course_cell_timeout(course: Path, default: int = 60) -> int:
    """The course's per-cell limit (``c.ExecutePreprocessor.timeout`` in nbgrader_config.py), else ``default``."""
    try:
        from traitlets.config.loader import PyFileConfigLoader

        config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
        value = config.ExecutePreprocessor.get("timeout") if "ExecutePreprocessor" in config else None
        return int(value) if isinstance(value, (int, float)) and value > 0 else default
    except Exception:  # noqa: BLE001 - an unreadable config is nbgrader's to report; the default applies
        return default


def grade_ids(course: Path, assignments: dict) -> dict:
    """``{"ASSIGNMENT/NOTEBOOK": [grade_id, ...]}`` of every nbgrader cell of the solutions."""
    out = {}
    for a, names in assignments.items():
        for n in names:
            nb = json.loads((course / "solutions" / a / f"{n}.ipynb").read_text(encoding="utf-8"))
            out[f"{a}/{n}"] = sorted({c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                                      for c in nb.get("cells", [])} - {None})
    return out


def _manifest_signature(master: Path, secret: bytes) -> str:
    files = {k: v for k, v in digests(master).items() if k != "MANIFEST.sig"}
    return hmac.new(secret, json.dumps(files, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def build_master(pool: Pool, course: Path, assignments: list, fingerprint: str, state: Path,
                 options, secret: bytes) -> tuple[Path, dict]:
    """The master course, cached by ``fingerprint``; reused only while every file matches its signed digest."""
    master = state / "master"
    stamp = master / "FINGERPRINT"
    scores_file = master / "max_scores.json"
    signature = master / "MANIFEST.sig"
    if (stamp.exists() and stamp.read_text() == fingerprint and scores_file.exists() and signature.is_file()
            and hmac.compare_digest(signature.read_text(), _manifest_signature(master, secret))):
        return master, {(a, n): m for a, n, m in json.loads(scores_file.read_text())}
    tmp = Path(tempfile.mkdtemp(prefix="master-", dir=state))
    shutil.copy2(course / "nbgrader_config.py", tmp / "nbgrader_config.py")
    for a in assignments:
        shutil.copytree(course / "solutions" / a, tmp / "solutions" / a,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    job = pool.start("generate", {"course": str(tmp), "assignments": assignments, "memory": options.memory,
                                  "max_file_size": options.max_file_size}, timeout=900)
    while not pool.wait(0.2):
        pool.police(10 * options.memory)
    result = job_outcome(job, options)
    if result.get("failed") or "max_scores" not in result or not (tmp / "gradebook.db").exists():
        detail = (result.get("log") or result.get("detail") or "").strip()
        shutil.rmtree(tmp, ignore_errors=True)
        raise KdlabError(f"nbgrader generate_assignment failed for {', '.join(result.get('failed') or assignments)} "
                         f"in the course {course}: {detail.splitlines()[-1] if detail else 'no output'}")
    (tmp / "max_scores.json").write_text(json.dumps(result["max_scores"]))
    (tmp / "FINGERPRINT").write_text(fingerprint)
    (tmp / "MANIFEST.sig").write_text(_manifest_signature(tmp, secret))
    if master.is_symlink():
        master.unlink()
    elif master.exists():
        shutil.rmtree(master)
    os.replace(tmp, master)
    return master, {(a, n): m for a, n, m in result["max_scores"]}



def digests(master: Path) -> dict:
    """``{relative path: sha256}`` of every file of the master course."""
    out = {}
    for p in sorted(master.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(master).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
