"""The grading jobs' processes: started from a server that has nbgrader imported, watched, and killed.

A job is a fresh process forked from multiprocessing's forkserver (which
preloads :mod:`kdlab.grading.preload`), so it costs no interpreter start.
The parent watches each job's wall clock and the memory of all its
processes, and kills the job's process group (and, for ``--no-sandbox``
runs, every process that carries the job's token) when a limit is passed
or the job ends. A sandboxed hand-in's own processes live in the sandbox's
PID namespace and die with it.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import handins as hi

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


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


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


def job_outcome(job: Job, options) -> dict:
    """What the job produced, or why it produced nothing."""
    job_dir = Path(job.spec["job_dir"])
    code = job.process.exitcode
    if job.killed == "timeout":
        return {"status": "timeout", "detail": f"still running after {options.timeout:g} s: stopped"}
    if job.killed == "memory":
        return {"status": "memory_limit",
                "detail": f"its processes together held more than {human_bytes(2 * options.memory)}: stopped"}
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
            return {"status": "crashed",
                    "detail": f"wrote a file larger than {human_bytes(options.max_file_size)}: stopped"}
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




