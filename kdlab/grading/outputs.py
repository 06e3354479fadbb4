"""What a run leaves in OUT: grades.csv, the executed notebooks, feedback, logs and the result cache.

Each finished notebook is stored (its files, then its cache entry, then the
CSV, each written atomically) before the next is recorded, so an
interrupted run loses nothing finished. A cache entry is signed with a key
that only the grader holds (OUT/.kdlab-grade/key, readable by its owner
alone, and never inside a sandbox): an entry that changed behind the
grader's back is not reused, it is graded again.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import secrets
import shutil
from pathlib import Path

from ..paths import atomic_write
from . import handins as hi
from .statuses import GRADED

STATE = ".kdlab-grade"
CSV_FIELDS = ["student", "assignment", "notebook", "score", "max_score", "status", "detail"]
STUDENT_FIELDS = ["student", "score", "max_score", "graded", "not_handed_in", "not_graded"]
NOT_GRADED_NOTE = {"missing"}


def secret_key(path: Path) -> bytes:
    """The key that signs this OUT's cached results: made once, readable by its owner only."""
    try:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if len(data) == 32:
                return data
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data


def fmt_score(x: float | None) -> str:
    if x is None:
        return ""
    x = round(float(x), 6)
    return str(int(x)) if x == int(x) else f"{x:g}"


class Outputs:
    """OUT: the CSV, the executed notebooks, feedback, logs and the result cache (the gradebook: see Merger)."""

    def __init__(self, out: Path, max_scores: dict):
        self.out = out
        self.state = out / STATE
        self.results = self.state / "results"
        self.max_scores = max_scores
        self.rows: dict = {}
        self.secret = secret_key(self.state / "key")

    def _sign(self, entry: dict) -> str:
        body = json.dumps({k: v for k, v in entry.items() if k != "signature"}, sort_keys=True)
        return hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()

    def cached(self, key: tuple) -> dict | None:
        """A finished result of an earlier run, if its signature holds (else it is graded again)."""
        path = self.results.joinpath(*key).with_suffix(".json")
        try:
            if path.is_symlink():
                return None
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if type(entry) is not dict or not hmac.compare_digest(str(entry.get("signature", "")), self._sign(entry)):
            return None
        return entry

    def record(self, key: tuple, job_key: str, row: dict, result: dict, job_dir: Path | None = None,
               log: str | None = None) -> dict:
        """Store one finished notebook: its files, then the result cache, then the CSV; returns the cache entry."""
        s, a, n = key
        sub = Path(s) / a if a else Path(s)
        autograded = self.out / "autograded" / sub / f"{n}.ipynb"
        feedback = self.out / "feedback" / sub / f"{n}.html"
        for target, rel in ((autograded, result.get("autograded")), (feedback, result.get("feedback"))):
            target.unlink(missing_ok=True)
            if rel and job_dir is not None and (job_dir / rel).is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(job_dir / rel, target)
        if row["status"] not in GRADED and row["status"] not in NOT_GRADED_NOTE and (a, n) in self.max_scores:
            from .worker_entry import failure_page

            feedback.parent.mkdir(parents=True, exist_ok=True)
            feedback.write_text(failure_page(row), encoding="utf-8")
        log_path = self.out / "logs" / sub / f"{n}.log"
        log_path.unlink(missing_ok=True)
        if log is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(log, encoding="utf-8")
        entry = {"key": job_key, "row": row, "grades": result.get("grades") or {},
                 "late_penalty": result.get("late_penalty") or 0.0, "timestamp": result.get("timestamp"),
                 "timings": result.get("timings")}
        entry["signature"] = self._sign(entry)
        path = self.results.joinpath(*key).with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(entry, indent=1, sort_keys=True))
        self.rows[key] = row
        self.write_csv()
        return entry

    def write_csv(self) -> None:
        """grades.csv (a row per student and notebook) and students.csv (a row per student: the totals)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for key in sorted(self.rows):
            w.writerow({k: self.rows[key].get(k, "") for k in CSV_FIELDS})
        atomic_write(self.out / "grades.csv", buf.getvalue())
        totals: dict = {}
        for key in sorted(self.rows):
            row = self.rows[key]
            t = totals.setdefault(row["student"], {"student": row["student"], "score": 0.0, "max_score": 0.0,
                                                   "graded": 0, "not_handed_in": 0, "not_graded": 0})
            t["score"] += float(row.get("score") or 0)
            t["max_score"] += float(row.get("max_score") or 0)
            kind = "graded" if row["status"] in GRADED else "not_handed_in" if row["status"] == "missing" \
                else "not_graded"
            t[kind] += 1
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=STUDENT_FIELDS, lineterminator="\n")
        w.writeheader()
        for t in totals.values():
            w.writerow({**t, "score": fmt_score(t["score"]), "max_score": fmt_score(t["max_score"])})
        atomic_write(self.out / "students.csv", buf.getvalue())


def make_row(h: hi.HandIn, result: dict, max_scores: dict) -> dict:
    status = result.get("status") or "error"
    max_score = max_scores.get((h.assignment, h.notebook), 0.0)
    if status in GRADED:
        grades = result.get("grades") or {}
        raw = sum(min(max(float(g.get("auto_score") or 0.0), 0.0), float(g.get("max_score") or 0.0))
                  for g in grades.values())
        score = max(raw - float(result.get("late_penalty") or 0.0), 0.0)
    else:
        score = 0.0
    return {"student": h.student, "assignment": h.assignment, "notebook": h.notebook,
            "score": fmt_score(score), "max_score": fmt_score(max_score), "status": status,
            "detail": " ".join(str(result.get("detail", "")).split())}


