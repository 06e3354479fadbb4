"""``kdlab grade``: grade a class's hand-ins with nbgrader, each in its own isolated process, N at a time.

The parent process never runs a learner's code and never parses a hand-in.
It walks the class folder (:mod:`kdlab.grading.handins`), builds the course's
gradebook once with ``nbgrader generate_assignment`` (cached by a hash of
``solutions/`` and the config), then keeps N jobs running
(:mod:`kdlab.grading.worker`), each forked from a server that has nbgrader
imported already. It watches every job's wall clock and the memory of all
its processes, kills the job's process group and every process that carries
its token when a limit is passed, and merges each finished job into the
outputs as it arrives:

    OUT/grades.csv                         one row per student and notebook
    OUT/gradebook.db                       nbgrader's gradebook, with every grade
    OUT/autograded/STUDENT/ASSIGNMENT/     the executed notebooks
    OUT/feedback/STUDENT/ASSIGNMENT/*.html feedback without the hidden tests
    OUT/logs/STUDENT/ASSIGNMENT/*.log      what nbgrader and the kernel printed (bounded)
    OUT/.kdlab-grade/results/...           one JSON per finished notebook (a re-run reuses it)

A finished notebook's result is on disk before the next is merged, so an
interrupted run loses nothing finished, and running the command again grades
only what is left (or what changed: results are keyed by a hash of the
hand-in, of solutions/ and of the options).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KdlabError
from . import handins as hi

GRADER_VERSION = "1"
STATE = ".kdlab-grade"
CSV_FIELDS = ["student", "assignment", "notebook", "score", "max_score", "status", "detail"]
GRADED = {"ok", "memory_limit", "cell_timeout", "output_truncated", "tests_modified"}
NOT_GRADED_NOTE = {"missing"}


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
                "feedback": self.feedback}


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


def fmt_score(x: float | None) -> str:
    if x is None:
        return ""
    x = round(float(x), 6)
    return str(int(x)) if x == int(x) else f"{x:g}"


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
    out = {}
    for a in sorted(assignments):
        h = base.copy()
        h.update(a.encode() + b"\0")
        _hash_tree(h, course / "solutions" / a)
        out[a] = h.hexdigest()
    return out


def grade_ids(course: Path, assignments: dict) -> dict:
    """``{"ASSIGNMENT/NOTEBOOK": [grade_id, ...]}`` of every nbgrader cell of the solutions."""
    out = {}
    for a, names in assignments.items():
        for n in names:
            nb = json.loads((course / "solutions" / a / f"{n}.ipynb").read_text(encoding="utf-8"))
            out[f"{a}/{n}"] = sorted({c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                                      for c in nb.get("cells", [])} - {None})
    return out


# ----------------------------------------------------------------------------- processes

def _proc_environ_tokens() -> dict:
    """``{token: [pid, ...]}`` of this user's processes that carry a job token in their environment."""
    found: dict = {}
    marker = b"KDLAB_GRADE_JOB="
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        at = env.find(marker)
        if at >= 0:
            end = env.find(b"\0", at)
            token = env[at + len(marker): end if end >= 0 else None].decode(errors="replace")
            found.setdefault(token, []).append(pid)
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class Job:
    kind: str
    spec: dict
    process: object
    started: float
    deadline: float
    row: hi.HandIn | None = None
    killed: str = ""          # "timeout" | "memory" | "interrupted" when the parent stopped it
    batch: list | None = None  # a merge job's entries
    ended: float = 0.0

    @property
    def token(self) -> str:
        return self.spec["token"]


class Pool:
    """Starts jobs as processes forked from a server that has imported nbgrader (multiprocessing's forkserver)."""

    def __init__(self, run_dir: Path):
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self.ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            self.ctx.set_forkserver_preload(["kdlab.grading.preload"])
        self.run_dir = run_dir
        self.jobs: list[Job] = []
        self._last_scan = 0.0
        if method == "forkserver":
            # Start the server now: it imports nbgrader while this process walks the class folder.
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def start(self, kind: str, spec: dict, timeout: float, row=None) -> Job:
        token = uuid.uuid4().hex
        job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=self.run_dir))
        spec = {**spec, "token": token, "job_dir": str(job_dir)}
        from .worker_entry import child_main  # tiny module: keeps this process free of nbgrader imports

        p = self.ctx.Process(target=child_main, args=(kind, spec), daemon=False)
        p.start()
        now = time.monotonic()
        job = Job(kind, spec, p, now, now + timeout, row)
        self.jobs.append(job)
        return job

    def wait(self, timeout: float) -> list:
        """Jobs whose process has ended (waits up to ``timeout`` seconds for one)."""
        if not self.jobs:
            return []
        multiprocessing.connection.wait([j.process.sentinel for j in self.jobs], timeout=timeout)
        done = [j for j in self.jobs if j.process.exitcode is not None]
        for j in done:
            self.jobs.remove(j)
            self.cleanup(j)
        return done

    def police(self, memory_cap: int, every: float = 1.0) -> None:
        """Kill jobs past their deadline, or whose processes together hold more than ``memory_cap`` bytes.

        Deadlines are checked on every call; memory (a scan of /proc) at most every ``every`` seconds.
        """
        now = time.monotonic()
        scan = now - self._last_scan >= every
        if scan:
            self._last_scan = now
        marked = None
        for job in self.jobs:
            if job.killed:
                continue
            if now > job.deadline:
                self.kill(job, "timeout", marked)
                continue
            if not scan:
                continue
            if marked is None:
                marked = _proc_environ_tokens()
            pids = set(marked.get(job.token, [])) | {job.process.pid}
            if sum(_rss(pid) for pid in pids) > memory_cap:
                self.kill(job, "memory", marked)

    def kill(self, job: Job, reason: str, marked: dict | None = None) -> None:
        job.killed = job.killed or reason
        pid = job.process.pid
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        try:
            job.process.kill()
        except Exception:  # noqa: BLE001
            pass
        self.cleanup(job, marked)

    def cleanup(self, job: Job, marked: dict | None = None) -> None:
        """Kill whatever the job left behind: its process group and every process with its token."""
        try:
            os.killpg(job.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        marked = _proc_environ_tokens() if marked is None else marked
        for pid in marked.get(job.token, []):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop_all(self) -> None:
        marked = _proc_environ_tokens()
        for job in list(self.jobs):
            self.kill(job, "interrupted", marked)
        for job in list(self.jobs):
            job.process.join(5)
        self.jobs.clear()


# ----------------------------------------------------------------------------- results

def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def job_outcome(job: Job, options: Options) -> dict:
    """What the job produced, or why it produced nothing."""
    job_dir = Path(job.spec["job_dir"])
    code = job.process.exitcode
    if job.killed == "timeout":
        return {"status": "timeout", "detail": f"still running after {options.timeout:g} s: stopped"}
    if job.killed == "memory":
        return {"status": "memory_limit",
                "detail": f"its processes together held more than {_human(2 * options.memory)}: stopped"}
    result_file = job_dir / "result.json"
    if code == 0 and result_file.exists():
        try:
            return json.loads(result_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"status": "error", "detail": "the grading process wrote an unreadable result"}
    if code is not None and code < 0:
        name = _signal_name(code)
        if name == "SIGXCPU":
            return {"status": "timeout", "detail": "used more than its CPU-time limit: stopped"}
        if name == "SIGXFSZ":
            return {"status": "crashed", "detail": f"wrote a file larger than {_human(options.max_file_size)}: stopped"}
        if name == "SIGKILL":
            return {"status": "memory_limit", "detail": "killed by the system (SIGKILL), most likely out of memory"}
        return {"status": "crashed", "detail": f"the grading process died ({name})"}
    if result_file.exists():
        try:
            data = json.loads(result_file.read_text(encoding="utf-8"))
            return {"status": data.get("status") or "error", "detail": data.get("detail", "")}
        except (OSError, ValueError):
            pass
    return {"status": "error", "detail": f"the grading process exited with code {code}"}


def _human(n: int) -> str:
    from .preprocessors import human_bytes

    return human_bytes(n)


class Outputs:
    """OUT: the CSV, the executed notebooks, feedback, logs and the result cache (the gradebook: see Merger)."""

    def __init__(self, out: Path, max_scores: dict):
        self.out = out
        self.state = out / STATE
        self.results = self.state / "results"
        self.max_scores = max_scores
        self.rows: dict = {}

    def cached(self, key: tuple) -> dict | None:
        path = self.results.joinpath(*key).with_suffix(".json")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

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
        path = self.results.joinpath(*key).with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(entry, indent=1, sort_keys=True))
        self.rows[key] = row
        self.write_csv()
        return entry

    def write_csv(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for key in sorted(self.rows):
            w.writerow({k: self.rows[key].get(k, "") for k in CSV_FIELDS})
        _atomic_write(self.out / "grades.csv", buf.getvalue())


class Merger:
    """Keeps OUT/gradebook.db up to date: finished rows go in by batches, each batch a short job.

    The gradebook starts as a copy of the master course's (every assignment,
    notebook and cell, hidden tests included); a change of solutions/ or of
    the config starts it afresh (the old one is kept as gradebook.db.old).
    """

    def __init__(self, pool: "Pool", out: Path, master: Path, fingerprint: str):
        self.pool = pool
        self.db = out / "gradebook.db"
        stamp = out / STATE / "gradebook.fingerprint"
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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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

    @property
    def graded(self) -> int:
        return sum(1 for r in self.rows if r["status"] in GRADED)

    @property
    def flagged(self) -> int:
        return sum(1 for r in self.rows if r["status"] in GRADED and r["status"] != "ok")

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] not in GRADED)

    def text(self) -> str:
        counts = Counter(r["status"] for r in self.rows)
        flagged = ", ".join(f"{counts[s]} {s}" for s in sorted(counts) if s in GRADED and s != "ok")
        failed = ", ".join(f"{counts[s]} {s}" for s in sorted(counts) if s not in GRADED)
        lines = [f"graded {self.graded} notebooks ({counts['ok']} ok, {self.flagged} flagged"
                 + (f": {flagged}" if flagged else "") + f"); failed {self.failed}"
                 + (f": {failed}" if failed else ""),
                 f"{len(self.rows)} rows in {self.csv} ({self.reused} reused from an earlier run) in {self.seconds:.1f} s"]
        if self.gradebook_failures:
            lines.append(f"warning: the gradebook missed some rows ({self.gradebook_failures[-1]}); "
                         "grades.csv has them all, and a re-run records them")
        if self.interrupted:
            lines.append("interrupted: run the same command again to grade the rest")
        return "\n".join(lines)


def _build_master(pool: Pool, course: Path, assignments: list, fingerprint: str, state: Path,
                  options: Options) -> tuple[Path, dict]:
    """The master course (config, solutions, generated gradebook and release), cached by ``fingerprint``."""
    master = state / "master"
    stamp = master / "FINGERPRINT"
    scores_file = master / "max_scores.json"
    if stamp.exists() and stamp.read_text() == fingerprint and scores_file.exists():
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
    if master.exists():
        shutil.rmtree(master)
    os.replace(tmp, master)
    return master, {(a, n): m for a, n, m in result["max_scores"]}


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
    course = find_course(course)
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
        fingerprints = course_fingerprints(course, used)
        overall = hashlib.sha256("".join(fingerprints[a] for a in used).encode()).hexdigest()
        master, max_scores = (_build_master(pool, course, used, overall, out / STATE, options)
                              if used else (None, {}))
        ids = grade_ids(course, assignments)   # all of them: a hand-in may be another assignment's notebook
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
                "cell_timeout": options.cell_timeout, "max_output": options.max_output,
                "max_notebook_size": options.max_notebook_size, "feedback": options.feedback}
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
                      setup_seconds=setup_seconds, gradebook_failures=list(merger.failures) if merger else [])
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
