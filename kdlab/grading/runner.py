"""``kdlab grade``: grade a class's hand-ins, each in a sandbox of its own, scored where no hand-in can reach.

The parent process never runs a learner's code and never parses a hand-in.
It walks the class folder (:mod:`.handins`), builds the master course once
(:mod:`.master`: nbgrader's gradebook and release, each lesson's plan, the
sandbox's kdlab; cached by a hash of ``solutions/`` and the config, and
checked by digest on every use), then keeps N jobs running (:mod:`.pool`,
:mod:`.worker`). A job runs the hand-in's code in a bubblewrap sandbox
(:mod:`.bwrap`, :mod:`.sandbox`) and scores it outside, from data
(:mod:`.scoring`). Finished jobs are merged into the outputs as they arrive:

    OUT/grades.csv                         one row per student and notebook
    OUT/gradebook.db                       nbgrader's gradebook, with every grade
    OUT/autograded/STUDENT/ASSIGNMENT/     the graded notebooks
    OUT/feedback/STUDENT/ASSIGNMENT/*.html feedback without the hidden tests
    OUT/logs/STUDENT/ASSIGNMENT/*.log      what the job and the notebook printed (bounded)
    OUT/.kdlab-grade/results/...           one signed JSON per finished notebook (a re-run reuses it)

A finished notebook's result is on disk before the next is merged, so an
interrupted run loses nothing finished, and running the command again grades
only what is left (or what changed: results are keyed by a hash of the
hand-in, of solutions/ and of the options).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KdlabError
from . import bwrap
from . import handins as hi
from . import master as ms
from .outputs import CSV_FIELDS, STATE, Outputs, fmt_score, secret_key, make_row  # noqa: F401
from .pool import Job, Pool, job_outcome
from .statuses import GRADED  # noqa: F401


@dataclass
class Options:
    """Limits and switches of a grading run (``kdlab grade --help`` documents each)."""

    workers: int | None = None          # default: the usable cores
    timeout: float = 600.0              # wall-clock seconds per notebook, kernel start to feedback
    cell_timeout: int | None = None     # seconds per cell; default: the course's ExecutePreprocessor.timeout
    memory: int | None = None           # bytes of address space per process; default: see default_memory()
    max_output: int = 8 * 2**20         # bytes of output a notebook may send while it runs
    max_notebook_size: int = 64 * 2**20  # a hand-in file larger than this is not opened
    max_file_size: int = 2**30          # largest file a job may write
    feedback: bool = True
    fresh: bool = False                 # regrade everything, ignoring finished results
    progress: bool = True
    sandbox: bool = True                # False: --no-sandbox (every row says so)
    into_course: bool = False           # also record the grades in the course's gradebook, autograded/, feedback/

    def resolved(self) -> "Options":
        out = Options(**vars(self))
        out.workers = max(1, int(self.workers or usable_cores()))
        out.memory = int(self.memory or default_memory())
        if out.timeout <= 0:
            raise KdlabError(f"--timeout must be positive, got {self.timeout:g}")
        if out.cell_timeout is not None and out.cell_timeout <= 0:
            raise KdlabError(f"--cell-timeout must be positive, got {self.cell_timeout}")
        if out.memory < 512 * 2**20:
            raise KdlabError("--memory must be at least 512M: a kernel that imports torch needs about that much")
        return out

    def key(self) -> dict:
        """The options that can change a result (a re-run with other values regrades)."""
        return {"timeout": self.timeout, "cell_timeout": self.cell_timeout, "memory": self.memory,
                "max_output": self.max_output, "max_notebook_size": self.max_notebook_size,
                "feedback": self.feedback, "sandbox": self.sandbox}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


def default_memory() -> int:
    """4 GiB per process, less when the machine cannot hold two such processes per core; at least 1 GiB.

    It depends on the machine, not on ``--workers``, so that changing the
    number of workers does not change the results' keys (and regrade all).
    """
    total = total_memory()
    limit = 4 * 2**30
    if total:
        limit = min(limit, total // (2 * usable_cores() + 1))
    return max(limit, 2**30)


def parse_size(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"2GiB"``, ``"1048576"`` -> bytes."""
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if t and t[-1] in scale:
            return int(float(t[:-1]) * scale[t[-1]])
        return int(t)
    except ValueError:
        raise KdlabError(f"cannot read the size {text!r}: write it like 4G, 512M or a number of bytes") from None


class Merger:
    """Keeps OUT/gradebook.db up to date: finished rows go in by batches, each batch a short job.

    The gradebook starts as a copy of the master course's (every assignment,
    notebook and cell, hidden tests included); a change of solutions/ or of
    the config starts it afresh (the old one is kept as gradebook.db.old).
    A gradebook that holds what nbgrader never writes (a trigger, a view) was
    changed behind the grader's back: it is set aside as
    gradebook.db.rejected and rebuilt, never written into.
    """

    def __init__(self, pool: "Pool", out: Path, master: Path, fingerprint: str):
        self.pool = pool
        self.db = out / "gradebook.db"
        self.rejected = ""
        stamp = out / STATE / "gradebook.fingerprint"
        if self.db.exists() and not self.db.is_symlink():
            why = foreign_objects(self.db)
            if why:
                os.replace(self.db, out / "gradebook.db.rejected")
                self.rejected = why
        elif self.db.is_symlink():
            self.db.unlink()
        if not self.db.exists() or not stamp.exists() or stamp.read_text() != fingerprint:
            if self.db.exists():
                shutil.copy2(self.db, out / "gradebook.db.old")
            shutil.copy2(master / "gradebook.db", self.db)
            stamp.write_text(fingerprint)
        self.pending: list = []
        self.job: Job | None = None
        self.failures: list = []
        self.last = 0.0

    def add(self, entry: dict) -> None:
        self.pending.append({k: entry.get(k) for k in ("row", "grades", "late_penalty", "timestamp")})

    def pump(self, final: bool = False, every: float = 10.0) -> None:
        """Start a batch when none is running, at most every ``every`` seconds unless ``final``."""
        if self.job is None and self.pending and (final or time.monotonic() - self.last >= every):
            self.last = time.monotonic()
            self.job = self.pool.start("merge", {"db": str(self.db), "entries": self.pending}, timeout=600)
            self.job.batch = self.pending
            self.pending = []

    def finished(self, job: "Job", options: "Options") -> None:
        outcome = job_outcome(job, options)
        if "merged" not in outcome:
            self.failures.append(outcome.get("detail") or "a gradebook update failed")
            self.pending = job.batch + self.pending
        self.job = None

    def flush(self, options: "Options") -> None:
        """Wait for the running batch, then write the rest."""
        for _ in range(2):
            while self.job is not None:
                for job in self.pool.wait(0.2):
                    if job is self.job:
                        self.finished(job, options)
            if not self.pending:
                return
            self.pump(final=True)


def record_in_course(pool: Pool, course: Path, out: Path, outputs: Outputs, options: Options,
                     handins: list = ()) -> str:
    """``--into-course``: every graded row into COURSE/gradebook.db (for the formgrader and ``nbgrader export``),
    the graded notebooks and feedback pages into COURSE/autograded and COURSE/feedback (for
    ``nbgrader release_feedback``). A course gradebook holding a trigger or a view is refused, not written."""
    db = course / "gradebook.db"
    if not db.is_file() or db.is_symlink():
        raise KdlabError(f"--into-course: {db} does not exist: run `nbgrader generate_assignment` in {course} first")
    why = foreign_objects(db)
    if why:
        raise KdlabError(f"--into-course: {db} holds what nbgrader never writes ({why}): it was tampered with; "
                         "rebuild it with `nbgrader db` / `nbgrader generate_assignment` before grading into it")
    entries = []
    for key in sorted(outputs.rows):
        cached = outputs.cached(key)
        if cached and cached.get("row", {}).get("status") not in (None, "missing"):
            entries.append({k: cached.get(k) for k in ("row", "grades", "late_penalty", "timestamp")})
    job = pool.start("merge", {"db": str(db), "entries": entries}, timeout=600)
    while not pool.wait(0.2):
        pool.police(10 * (options.memory or 2**30))
    result = job_outcome(job, options)
    if "merged" not in result:
        raise KdlabError(f"--into-course: the grades could not be written to {db}: {result.get('detail', '')}")
    for tree in ("autograded", "feedback"):
        for src in sorted((out / tree).rglob("*")):
            if src.is_file() and not src.is_symlink():
                target = course / tree / src.relative_to(out / tree)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
    # nbgrader release_feedback reads each hand-in's timestamp.txt and submission_secret.txt beside its feedback
    # (nbgrader's autograde and generate_feedback copy them there from submitted/): the same here, byte for byte,
    # since the learner's fetch_feedback finds the page by a hash of them.
    for h in handins:
        for name in ("timestamp.txt", "submission_secret.txt"):
            src = next((Path(src) for rel, src in h.extras if rel == name), None)
            if src is None or src.is_symlink() or not src.is_file():
                continue
            for tree in ("autograded", "feedback"):
                folder = course / tree / h.student / h.assignment
                if (out / tree / h.student / h.assignment).is_dir() and folder.is_dir():
                    shutil.copyfile(src, folder / name)
    return (f"recorded {result['merged']} notebooks in {db}, and their graded notebooks and feedback in "
            f"{course / 'autograded'} and {course / 'feedback'}")


def foreign_objects(db: Path) -> str:
    """What a gradebook holds that nbgrader never creates (triggers, views), or "" when there is none."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"it cannot be read as SQLite ({e})"
    return ", ".join(f"{t} {n}" for t, n in rows)


# ----------------------------------------------------------------------------- the run

@dataclass
class Summary:
    rows: list
    seconds: float
    csv: Path
    out: Path
    reused: int = 0
    interrupted: bool = False
    job_seconds: dict = field(default_factory=dict)   # {(student, assignment, notebook): seconds} of this run
    setup_seconds: float = 0.0                          # before the first notebook job started
    gradebook_failures: list = field(default_factory=list)
    gradebook_rejected: str = ""
    warnings: list = field(default_factory=list)
    into_course: str = ""

    @property
    def graded(self) -> int:
        return sum(1 for r in self.rows if r["status"] in GRADED)

    @property
    def flagged(self) -> int:
        return sum(1 for r in self.rows if r["status"] in GRADED and r["status"] != "ok")

    @property
    def failed(self) -> int:
        """Hand-ins that could not be graded (a notebook not handed in is no failure: see ``missing``)."""
        return sum(1 for r in self.rows if r["status"] not in GRADED and r["status"] != "missing")

    @property
    def missing(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "missing")

    def text(self) -> str:
        counts = Counter(r["status"] for r in self.rows)
        flagged = ", ".join(f"{counts[s]} {s}" for s in sorted(counts) if s in GRADED and s != "ok")
        failed = ", ".join(f"{counts[s]} {s}" for s in sorted(counts) if s not in GRADED and s != "missing")
        lines = [f"graded {self.graded} notebooks ({counts['ok']} ok, {self.flagged} flagged"
                 + (f": {flagged}" if flagged else "") + f"); failed {self.failed}"
                 + (f": {failed}" if failed else "") + f"; not handed in {self.missing}",
                 f"{len(self.rows)} rows in {self.csv} ({self.reused} reused from an earlier run) in {self.seconds:.1f} s;"
                 f" per-student totals in {self.csv.with_name('students.csv')}"]
        if self.gradebook_failures:
            lines.append(f"warning: the gradebook missed some rows ({self.gradebook_failures[-1]}); "
                         "grades.csv has them all, and a re-run records them")
        if self.gradebook_rejected:
            lines.append(f"warning: {self.out / 'gradebook.db'} held what nbgrader never writes "
                         f"({self.gradebook_rejected}): it was set aside as gradebook.db.rejected and rebuilt")
        if self.into_course:
            lines.append(self.into_course)
        lines += [f"warning: {w}" for w in self.warnings]
        if any(r["status"] == "unsandboxed" for r in self.rows):
            lines.append("warning: graded with --no-sandbox: these grades prove nothing against a deliberate attack")
        if self.interrupted:
            lines.append("interrupted: run the same command again to grade the rest")
        return "\n".join(lines)


def _stream_digest(path: Path, extras) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    for rel, src in extras:
        h.update(b"\0" + rel.encode() + b"\0")
        with open(src, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def grade_class(submissions: Path, out: Path, *, course: Path | None = None, options: Options | None = None
                ) -> Summary:
    """Grade every hand-in under ``submissions`` (a folder or a zip) into ``out``; see the module docstring."""
    start = time.perf_counter()
    options = (options or Options()).resolved()
    submissions = Path(submissions)
    if not submissions.exists():
        raise KdlabError(f"{submissions} does not exist")
    if options.sandbox:
        bwrap.check()
    else:
        print("warning: --no-sandbox: the hand-ins' code runs unconfined, as your user, and can read or change "
              "anything you can (other hand-ins, the answer key, the grades); every row is marked unsandboxed",
              file=sys.stderr)
    course = ms.find_course(course)
    assignments = hi.course_notebooks(course)
    if not assignments:
        raise KdlabError(f"{course / 'solutions'} holds no assignment with notebooks")
    out = Path(out).resolve()
    if out == submissions.resolve() or out in submissions.resolve().parents:
        raise KdlabError("--out must not be the class folder or a folder that holds it")
    (out / STATE).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="kdlab-grade-jobs-"))   # the jobs' scratch folders, and nothing else
    class_dir = None
    previous_handler = _install_sigterm()
    pool = None
    outputs = None
    merger = None
    bar = _NoBar()
    reused = 0
    interrupted = False
    job_seconds: dict = {}
    setup_seconds = 0.0
    into_course = ""
    try:
        pool = Pool(run_dir)
        folder, oversized = submissions, {}
        if submissions.is_file():
            class_dir = Path(tempfile.mkdtemp(prefix="kdlab-grade-class-"))   # not under the jobs' folder
            folder = class_dir / "class"
            folder.mkdir()
            oversized = hi.extract_zip(submissions, folder, max_total=64 * options.max_notebook_size + 2**30,
                                       max_member=options.max_notebook_size)
        elif not submissions.is_dir():
            raise KdlabError(f"{submissions} is neither a folder nor a zip file")
        rows = hi.collect(folder, assignments, oversized, skip=[out])
        if not rows:
            raise KdlabError(f"no hand-ins found in {submissions}: expected STUDENT/ASSIGNMENT/NOTEBOOK.ipynb "
                             f"with an assignment of {course / 'solutions'} ({', '.join(assignments)})")
        used = sorted({h.assignment for h in rows if h.assignment in assignments})
        fingerprints = ms.course_fingerprints(course, used)
        overall = hashlib.sha256("".join(fingerprints[a] for a in used).encode()).hexdigest()
        master, max_scores = (ms.build_master(pool, course, used, overall, out / STATE, options,
                                                secret_key(out / STATE / "key"))
                              if used else (None, {}))
        digests = ms.digests(master) if master else {}
        ids = ms.grade_ids(course, assignments)   # all of them: a hand-in may be another assignment's notebook
        outputs = Outputs(out, max_scores)
        merger = Merger(pool, out, master, overall) if master else None

        todo = deque()
        for h in rows:
            if h.status:
                result = {"status": h.status, "detail": h.detail}
                entry = outputs.record(h.key, "", make_row(h, result, max_scores), result)
                if merger:
                    merger.add(entry)
                continue
            job_key = hashlib.sha256(json.dumps(
                [fingerprints[h.assignment], options.key(), h.key, _stream_digest(h.path, h.extras)]).encode()
            ).hexdigest()
            cached = None if options.fresh else outputs.cached(h.key)
            if cached and cached.get("key") == job_key and "row" in cached:
                outputs.rows[h.key] = cached["row"]
                if merger:
                    merger.add(cached)
                reused += 1
                continue
            todo.append((h, job_key))
        outputs.write_csv()

        bar = _progress(len(outputs.rows) + len(todo), len(outputs.rows), options.progress)
        base = {"master": str(master), "grade_ids": ids, "memory": options.memory,
                "max_file_size": options.max_file_size, "cpu_seconds": int(options.timeout * 2 + 60),
                "cell_timeout": options.cell_timeout or ms.course_cell_timeout(course),
                "max_output": options.max_output,
                "max_notebook_size": options.max_notebook_size, "feedback": options.feedback,
                "timeout": options.timeout, "sandbox": options.sandbox, "digests": digests}
        keys = {}
        setup_seconds = time.perf_counter() - start

        def record(job: Job) -> None:
            h = job.row
            result = job_outcome(job, options)
            row = make_row(h, result, max_scores)
            job_dir = Path(job.spec["job_dir"])
            log_file = job_dir / "log.txt"
            log_text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.exists() else None
            entry = outputs.record(h.key, keys.pop(job.token), row, result, job_dir=job_dir, log=log_text)
            if merger:
                merger.add(entry)
            job_seconds[h.key] = job.ended - job.started
            shutil.rmtree(job_dir, ignore_errors=True)
            bar.update(1)
            bar.set_postfix_str(_postfix(outputs.rows.values()), refresh=False)

        finished: list = []
        try:
            while todo or pool.jobs or finished:
                # Refill the free slots first: recording a result must not keep a core idle.
                while todo and sum(1 for j in pool.jobs if j.kind == "grade") < options.workers:
                    h, job_key = todo.popleft()
                    spec = {**base, "student": h.student, "assignment": h.assignment, "notebook": h.notebook,
                            "source": str(h.path), "extras": h.extras}
                    job = pool.start("grade", spec, options.timeout, row=h)
                    keys[job.token] = job_key
                while finished:
                    record(finished.pop(0))
                if merger:
                    merger.pump(final=not todo)
                for job in pool.wait(0.25):
                    if job.kind == "merge":
                        merger.finished(job, options)
                    else:
                        job.ended = time.monotonic()
                        finished.append(job)
                pool.police(2 * options.memory)
        except KeyboardInterrupt:
            interrupted = True
            for job in [j for j in pool.jobs if j.kind == "grade"]:
                pool.kill(job, "interrupted")
                pool.jobs.remove(job)
            while finished:   # these jobs had ended: keep their grades
                record(finished.pop(0))
        bar.close()
        if merger:
            merger.flush(options)
        if options.into_course and outputs is not None and not interrupted:
            into_course = record_in_course(pool, course, out, outputs, options, rows)
    finally:
        bar.close()
        if pool is not None:
            pool.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
        if class_dir is not None:
            shutil.rmtree(class_dir, ignore_errors=True)
        _restore_sigterm(previous_handler)
    rows_out = [outputs.rows[k] for k in sorted(outputs.rows)] if outputs else []
    summary = Summary(rows=rows_out, seconds=time.perf_counter() - start, csv=out / "grades.csv", out=out,
                      reused=reused, interrupted=interrupted, job_seconds=job_seconds,
                      setup_seconds=setup_seconds, gradebook_failures=list(merger.failures) if merger else [],
                      gradebook_rejected=merger.rejected if merger else "", into_course=into_course)
    if master is not None and ms.digests(master) != digests:
        summary.warnings.append("the master course changed while the run went on: run again with --fresh")
    return summary


def _postfix(rows) -> str:
    rows = list(rows)
    failed = sum(1 for r in rows if r["status"] not in GRADED)
    flagged = sum(1 for r in rows if r["status"] in GRADED and r["status"] != "ok")
    return f"failed {failed}, flagged {flagged}"


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, *a, **k):
        pass

    def close(self):
        pass


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="grading", unit="notebook", file=sys.stderr, dynamic_ncols=True)


def _install_sigterm():
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except ValueError:
            pass
