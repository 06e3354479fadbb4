"""One grading job, a process of its own: check a hand-in, run it in its sandbox, score it here, write feedback.

The parent (:mod:`.runner`) starts each job as a fresh process forked from a
server that has nbgrader, torch and the scorer imported (:mod:`.preload`).
:func:`child_main` then, before it touches the hand-in, starts a new session,
asks Linux to kill it if its parent dies, sets resource limits that the
sandbox inherits (address space, file size, CPU time, no core dumps), limits
torch and BLAS to one thread, and routes its own stdout/stderr (and the
sandbox's) through a pipe that keeps a bounded head and tail.

A ``grade`` job never runs the learner's code itself. It reads the hand-in
as data (:func:`classify`, :mod:`.restore`), runs it in a bubblewrap sandbox
(:mod:`.bwrap`, :mod:`.sandbox`), reads back what the sandbox recorded, and
scores it with the course's own test cells (:mod:`.scoring`). Every master
file it reads is checked against the digest the parent took before the run.

The job writes ``result.json`` in its folder as its very last act; the
parent only trusts it when the process exited normally.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import nbformat
from nbgrader.apps.generateassignmentapp import GenerateAssignmentApp
from nbgrader.apps.generatefeedbackapp import GenerateFeedbackApp
from nbgrader.converters import GenerateFeedback
from nbgrader.preprocessors import ClearHiddenTests
from traitlets.config import Config

from . import bwrap, gradebook, statuses
from . import preprocessors as pp
from .pool import human_bytes

ENV_TOKEN = "KDLAB_GRADE_JOB"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
LOG_HEAD = LOG_TAIL = 32 * 1024



# ----------------------------------------------------------------------------- process isolation

class BoundedCapture:
    """Point fds 1 and 2 at a pipe; keep the first and last ``LOG_HEAD`` bytes of what arrives."""

    def __init__(self):
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._fd = read_fd
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            room = LOG_HEAD - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail += chunk
                if len(self.tail) > LOG_TAIL:
                    self.dropped += len(self.tail) - LOG_TAIL
                    del self.tail[:len(self.tail) - LOG_TAIL]

    def text(self) -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        out = bytes(self.head)
        if self.dropped:
            out += f"\n[... {self.dropped} bytes of log dropped ...]\n".encode()
        out += bytes(self.tail)
        return out.decode("utf-8", "replace")


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; the parent's own cleanup still applies
        pass


def _set_limits(spec: dict) -> None:
    def limit(which, soft, hard=None):
        try:
            cur_soft, cur_hard = resource.getrlimit(which)
            hard = soft if hard is None else hard
            if cur_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass

    if spec.get("memory"):
        limit(resource.RLIMIT_AS, int(spec["memory"]))
    if spec.get("max_file_size"):
        limit(resource.RLIMIT_FSIZE, int(spec["max_file_size"]))
    if spec.get("cpu_seconds"):
        cpu = int(spec["cpu_seconds"])
        limit(resource.RLIMIT_CPU, cpu, cpu + 10)
    limit(resource.RLIMIT_CORE, 0)


def isolate(spec: dict) -> BoundedCapture:
    """Everything a job does to itself before it reads a hand-in (see the module docstring)."""
    try:
        os.setsid()
    except OSError:
        pass
    _die_with_parent()
    _set_limits(spec)
    for var in THREAD_VARS:
        os.environ[var] = "1"
    if "torch" in sys.modules:   # preloaded by the server: its thread pool size is set by a call, not the environment
        sys.modules["torch"].set_num_threads(1)
    os.environ[ENV_TOKEN] = spec["token"]
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.pop("NBGRADER_EXECUTION", None)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return BoundedCapture()


# ----------------------------------------------------------------------------- the hand-in

def classify(path: Path, spec: dict) -> tuple[str, str, dict | None]:
    """``(status, detail, notebook)``: status "" when the file looks like this notebook's hand-in."""
    limit = int(spec.get("max_notebook_size") or 0)
    size = path.stat().st_size
    if limit and size > limit:
        return "too_large", f"the file is {human_bytes(size)}, over the {human_bytes(limit)} limit", None
    raw = path.read_bytes()
    if not raw.strip():
        return "empty", "the file is empty", None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not_json", "the file is not text (not UTF-8): not a notebook", None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        end = len(text.rstrip())
        if e.pos >= end - 1 or e.msg.startswith("Unterminated string"):
            return "truncated", f"the file stops in the middle of its JSON (at byte {end}): an incomplete upload?", None
        return "not_json", f"the file is not JSON ({e.msg} at line {e.lineno}, column {e.colno})", None
    except RecursionError:
        return "not_json", "the file's JSON nests too deeply to read", None
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        return "not_notebook", "the file is JSON but not a Jupyter notebook (no list of cells)", None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # noqa: BLE001 - any failure to read it means: not a notebook we can grade
        return "not_notebook", f"the file is JSON but not a readable Jupyter notebook ({type(e).__name__})", None
    ids = set()
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
            ids.add(meta["grade_id"])
    expected = set(spec["grade_ids"].get(f"{spec['assignment']}/{spec['notebook']}", []))
    if expected and not ids & expected:
        best, overlap = None, 0
        for key, other in sorted(spec["grade_ids"].items()):
            common = len(ids & set(other))
            if common > overlap:
                best, overlap = key, common
        if best is not None:
            return ("wrong_assignment",
                    f"this is not {spec['assignment']}/{spec['notebook']}: its graded cells are those of {best}", None)
    return "", "", nb


class _Recorder(logging.Handler):
    """Keeps the (bounded) log messages of nbgrader's apps to find what its sanitizer changed."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        if len(self.messages) < 2000:
            try:
                self.messages.append(record.getMessage()[:2000])
            except Exception:  # noqa: BLE001
                pass


def _run_app(app_class, argv: list[str], extra, recorder: _Recorder) -> bool:
    """Run an nbgrader app in this process, as ``nbgrader <app> ARGV`` would in this folder.

    ``extra(config)`` returns the settings kdlab adds on top of the config
    nbgrader loaded (the user's, the system's and the course's files).
    """
    app = app_class()
    # This folder is the course, whatever a config file says: a grader account's ~/.jupyter/nbgrader_config.py
    # names its real course (CourseDirectory.root, docs/jupyterhub/), which would otherwise receive this run.
    app.initialize([*argv, f"--CourseDirectory.root={os.getcwd()}"])
    app.log.addHandler(recorder)
    app.update_config(extra(app.config))
    try:
        app.start()
    except SystemExit as e:
        return not e.code
    finally:
        app.log.removeHandler(recorder)
    return True


def _configured(app_config: Config, cls, trait: str) -> list:
    section = app_config[cls.__name__] if cls.__name__ in app_config else {}
    if trait in section:
        return list(section[trait])
    return list(cls.class_traits()[trait].default())


def feedback_config(app_config: Config) -> Config:
    c = Config()
    steps = _configured(app_config, GenerateFeedback, "preprocessors")
    names = [getattr(s, "__name__", str(s).rsplit(".", 1)[-1]) for s in steps]
    if "ClearHiddenTests" not in names:
        at = names.index("GetGrades") + 1 if "GetGrades" in names else 0
        steps[at:at] = [pp.HideHiddenTestTracebacks, ClearHiddenTests]
    elif "HideHiddenTestTracebacks" not in names:
        steps.insert(names.index("ClearHiddenTests"), pp.HideHiddenTestTracebacks)
    c.GenerateFeedback.preprocessors = steps
    delimiter = app_config.ClearHiddenTests.get("begin_test_delimeter") if "ClearHiddenTests" in app_config else None
    if delimiter:
        c.HideHiddenTestTracebacks.begin_test_delimeter = delimiter
    return c


_MEMORY = re.compile(r"MemoryError|can't allocate memory|Cannot allocate memory|std::bad_alloc|out of memory",
                     re.IGNORECASE)
RESULT_LIMIT = 128 * 2**20    # the sandbox's result is read only up to this size


class TamperedMaster(RuntimeError):
    """A file of the master course differs from the digest the parent computed before the job started."""


def read_verified(master: Path, rel: str, digests: dict) -> bytes:
    """A master file's bytes, checked against the parent's digest of it."""
    data = (master / rel).read_bytes()
    if hashlib.sha256(data).hexdigest() != digests.get(rel):
        raise TamperedMaster(f"{rel} of the master course changed since the run began")
    return data


def _cell_label(cell, index: int) -> str:
    gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return gid or f"cell {index + 1}"


def _sandbox_env(spec: dict, job: Path) -> dict:
    if spec.get("sandbox", True):
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env = bwrap.environment(str(job / "work"))
    env[ENV_TOKEN] = spec["token"]    # without the container, the parent finds leftovers by this token
    return env


def run_sandbox(spec: dict, job: Path, restored, plan_bytes: bytes, deadline: float) -> tuple[dict | None, str]:
    """Run the hand-in's cells and probes in the sandbox; ``(result, why)`` with result None if it gave none.

    The result comes back through a pipe, read here up to :data:`RESULT_LIMIT` bytes."""
    for d in ("in", "handin", "work"):
        (job / d).mkdir(parents=True, exist_ok=True)
    for rel, src in spec.get("extras", []):
        target = job / "handin" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    (job / "in" / "plan.pt").write_bytes(plan_bytes)
    read_fd, write_fd = os.pipe()
    run = {"cells": restored.run, "cell_timeout": spec.get("cell_timeout") or 60, "max_output": spec["max_output"],
           "result_fd": write_fd}
    (job / "in" / "run.json").write_text(json.dumps(run), encoding="utf-8")
    lib = Path(spec["master"]) / "sandbox-lib"
    cmd = bwrap.command(job, lib) if spec.get("sandbox", True) else bwrap.unsandboxed_command(job, lib)
    sys.stdout.flush()
    sys.stderr.flush()
    received = bytearray()
    overflow = []

    def drain():
        while True:
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                return
            if len(received) + len(chunk) > RESULT_LIMIT:
                overflow.append(True)
            else:
                received.extend(chunk)

    try:
        proc = subprocess.Popen(cmd, cwd=job / "work", env=_sandbox_env(spec, job), stdin=subprocess.DEVNULL,
                                pass_fds=(write_fd,))
    finally:
        os.close(write_fd)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, "timeout"
    finally:
        reader.join(timeout=10)
        os.close(read_fd)
    if overflow:
        return None, "too much output"
    if not received:
        return None, f"exit {code}"
    try:
        data = json.loads(bytes(received).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, "unreadable"
    if type(data) is not dict or data.get("done") is not True:
        return None, f"exit {code}"
    return data, ""


def _outputs(data: dict, index: int) -> list:
    """The outputs of one cell as the sandbox reported them, kept only where they have nbformat's shape."""
    cells = data.get("cells")
    raw = cells.get(str(index)) if type(cells) is dict else None
    out = []
    for o in raw if type(raw) is list else []:
        if type(o) is not dict:
            continue
        kind = o.get("output_type")
        if kind == "stream" and o.get("name") in ("stdout", "stderr") and type(o.get("text")) is str:
            out.append(nbformat.v4.new_output("stream", name=o["name"], text=o["text"]))
        elif kind == "display_data" and type(o.get("data")) is dict:
            data_ = {k: v for k, v in o["data"].items() if type(k) is str and type(v) is str}
            out.append(nbformat.v4.new_output("display_data", data=data_))
        elif kind == "error":
            tb = o.get("traceback")
            out.append(nbformat.v4.new_output("error", ename=str(o.get("ename", "Error"))[:200],
                                              evalue=str(o.get("evalue", ""))[:2000],
                                              traceback=[str(t) for t in tb][:400] if type(tb) is list else []))
    return out


def _verdict_output(verdict) -> list:
    """The test cell's output in the graded notebook: the scorer's verdict (a hidden failure: case and hint only)."""
    if verdict.passed:
        return [nbformat.v4.new_output("stream", name="stdout", text=f"\u2714 {verdict.grade_id}: passed\n")]
    return [nbformat.v4.new_output("error", ename="CheckFailed", evalue=verdict.message,
                                   traceback=[f"CheckFailed: {verdict.message}"])]


def grade(spec: dict, capture: BoundedCapture) -> dict:
    """Check one hand-in, run it in the sandbox, score it here from what it recorded, write feedback."""
    from . import restore as rs
    from . import scoring

    a, s, n = spec["assignment"], spec["student"], spec["notebook"]
    job_dir = Path(spec["job_dir"])
    master = Path(spec["master"])
    deadline = time.monotonic() + float(spec.get("timeout") or 600)
    result = {"student": s, "assignment": a, "notebook": n, "status": "", "detail": "", "grades": {},
              "late_penalty": 0.0, "timestamp": None, "autograded": None, "feedback": None}
    clock = time.monotonic
    t0 = clock()
    timings = result["timings"] = {}
    status, detail, nb = classify(Path(spec["source"]), spec)
    timings["check"] = clock() - t0
    if status:
        result.update(status=status, detail=detail)
        return result

    digests = spec["digests"]
    solution = nbformat.reads(read_verified(master, f"solutions/{a}/{n}.ipynb", digests).decode(), as_version=4)
    released = nbformat.reads(read_verified(master, f"release/{a}/{n}.ipynb", digests).decode(), as_version=4)
    plan_bytes = read_verified(master, f"plans/{a}/{n}.pt", digests)
    restored = rs.restore(nb, released, solution)
    timings["prepare"] = clock() - t0

    data, why = run_sandbox(spec, job_dir / "sandbox", restored, plan_bytes, deadline)
    timings["sandbox"] = clock() - t0
    if data is None:
        log = capture.text()
        if why == "timeout":
            limit = float(spec.get("timeout") or 600)
            result.update(status="timeout", detail=f"still running after {limit:g} s: stopped")
        elif _MEMORY.search(log):
            result.update(status="memory_limit",
                          detail=f"the notebook died out of memory (limit {human_bytes(int(spec['memory']))})")
        else:
            result.update(status="kernel_died", detail=f"the notebook's process exited or died while it ran "
                                                       f"({why}: exit(), os._exit(), a crash)")
        return result

    import torch

    plan = torch.load(io.BytesIO(plan_bytes), weights_only=False)
    observed = data.get("observations")
    verdicts = scoring.judge(solution, plan, observed if type(observed) is dict else {})
    timings["judge"] = clock() - t0

    executed = restored.notebook
    roles = {c.grade_id: c for c in scoring.lesson_cells(solution) if c.grade_id}
    found = {"cell_timeout": [], "memory_limit": []}
    timed_out = data.get("timed_out") if type(data.get("timed_out")) is list else []
    timed_out = {i for i in timed_out if type(i) is int}
    for i, cell in enumerate(executed.cells):
        if cell.get("cell_type") != "code":
            continue
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        role = roles.get(gid)
        if role is not None and role.kind == "test":
            cell.source = role.source    # for the instructor: hidden tests included (feedback strips them)
            cell.outputs = _verdict_output(verdicts[gid]) if gid in verdicts else []
            continue
        cell.outputs = _outputs(data, i)
        if i in timed_out:
            found["cell_timeout"].append(_cell_label(cell, i))
        elif any(o.get("output_type") == "error" and _MEMORY.search(f"{o.get('ename')}: {o.get('evalue')}")
                 for o in cell.outputs):
            found["memory_limit"].append(_cell_label(cell, i))
    _add_model_answers(executed, roles)
    for gid, role in roles.items():
        if role.kind == "test":
            v = verdicts.get(gid)
            result["grades"][gid] = {"auto_score": role.points if v is not None and v.passed else 0.0,
                                     "max_score": role.points, "needs_manual_grade": False}
        elif role.kind == "manual":
            result["grades"][gid] = {"auto_score": None, "max_score": role.points, "needs_manual_grade": True}
    result["failed_checks"] = {gid: v.message for gid, v in verdicts.items() if not v.passed}

    notes = {}
    if found["memory_limit"]:
        notes["memory_limit"] = (f"ran out of memory (limit {human_bytes(int(spec['memory']))}) in "
                                 + ", ".join(found["memory_limit"]))
    if found["cell_timeout"]:
        notes["cell_timeout"] = "interrupted at the per-cell time limit in " + ", ".join(found["cell_timeout"])
    if isinstance(data.get("dropped_output"), int) and data["dropped_output"] > 0:
        notes["output_truncated"] = f"output past {human_bytes(int(spec['max_output']))} was dropped"
    if restored.edited or restored.deleted:
        parts = []
        if restored.edited:
            parts.append("edited graded cells were restored: " + ", ".join(restored.edited))
        if restored.deleted:
            parts.append("deleted graded cells were put back: " + ", ".join(restored.deleted))
        notes["tests_modified"] = "; ".join(parts)
    odd = scoring.suspicious(restored.answers)
    if odd:
        notes["suspicious"] = "answers that touch the grader's machinery, to look at: " + "; ".join(
            f"{gid} ({what})" for gid, what in odd)
    if not spec.get("sandbox", True):
        notes["unsandboxed"] = "graded without the sandbox (--no-sandbox): its code could have read or changed anything"
    flags = [f for f in statuses.FLAGS if f in notes]
    result["status"] = flags[0] if flags else "ok"
    result["detail"] = "; ".join(notes[f] for f in flags)
    result["timestamp"] = _timestamp(spec)

    autograded = job_dir / "autograded" / f"{n}.ipynb"
    autograded.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(executed, str(autograded))
    result["autograded"] = str(autograded.relative_to(job_dir))
    if spec.get("feedback", True):
        page = feedback(spec, executed, result)
        timings["feedback"] = clock() - t0
        if page is not None:
            result["feedback"] = str(page.relative_to(job_dir))
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    timings["cpu_grader"] = me.ru_utime + me.ru_stime
    timings["cpu_sandbox"] = kids.ru_utime + kids.ru_stime
    return result


MODEL_ANSWER = "**Model answer** (shown after grading; the instructor grades with the rubric above):"


def _add_model_answers(executed, roles: dict) -> None:
    """Below each hand-graded answer, the course's model answer, for the grader in the formgrader.

    The learner never had it: it comes from the solution notebook (the released one says
    "YOUR ANSWER HERE"), and it reaches the learner only with the feedback, after grading.
    """
    cells = executed.cells
    for i in range(len(cells) - 1, -1, -1):
        gid = cells[i].get("metadata", {}).get("nbgrader", {}).get("grade_id")
        role = roles.get(gid)
        if role is not None and role.kind == "manual" and role.source.strip():
            quoted = "\n".join("> " + line if line.strip() else ">" for line in role.source.strip().splitlines())
            cells.insert(i + 1, nbformat.v4.new_markdown_cell(f"{MODEL_ANSWER}\n>\n{quoted}"))


def _timestamp(spec: dict) -> str | None:
    """The hand-in's ``timestamp.txt`` (nbgrader's submitted/ layout), if it has one."""
    for rel, src in spec.get("extras", []):
        if rel == "timestamp.txt":
            try:
                from nbgrader.utils import parse_utc

                with open(src, encoding="utf-8", errors="replace") as f:
                    return parse_utc(f.read(100).strip()).isoformat()
            except Exception:  # noqa: BLE001 - an unreadable timestamp is no timestamp
                return None
    return None


def feedback(spec: dict, executed, result: dict) -> Path | None:
    """nbgrader's feedback page for the graded notebook, in a scratch course of this job's (no hidden tests)."""
    a, s, n = spec["assignment"], spec["student"], spec["notebook"]
    master = Path(spec["master"])
    course = Path(spec["job_dir"]) / "course"
    (course / "autograded" / s / a).mkdir(parents=True, exist_ok=True)
    course_db = course / "gradebook.db"
    course_db.write_bytes(read_verified(master, "gradebook.db", spec["digests"]))
    (course / "nbgrader_config.py").write_bytes(read_verified(master, "nbgrader_config.py", spec["digests"]))
    nbformat.write(executed, str(course / "autograded" / s / a / f"{n}.ipynb"))
    _scratch_databases_skip_fsync()
    gradebook.merge(f"sqlite:///{course_db}", [{"row": {"assignment": a, "student": s, "notebook": n,
                                                        "status": result["status"]},
                                                "grades": result["grades"], "timestamp": result["timestamp"]}])
    os.chdir(course)
    ok = _run_app(GenerateFeedbackApp, [a, f"--student={s}", f"--notebook={n}", "--force"], feedback_config,
                  _Recorder())
    page = course / "feedback" / s / a / f"{n}.html"
    return page if ok and page.exists() else None


def _scratch_databases_skip_fsync() -> None:
    """The job's gradebook is a throwaway copy: let SQLite skip the disk syncs of its commits."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(_scratch_databases_skip_fsync, "done", False):
        return
    _scratch_databases_skip_fsync.done = True

    @event.listens_for(Engine, "connect")
    def _no_sync(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA journal_mode=MEMORY")
        cursor.close()


# ----------------------------------------------------------------------------- building the master course

def generate(spec: dict, capture: BoundedCapture) -> dict:
    """``nbgrader generate_assignment`` for each assignment, then each notebook's plan and the sandbox's kdlab."""
    import torch

    from . import scoring

    course = Path(spec["course"])
    os.chdir(course)
    recorder = _Recorder()
    failed = []
    for assignment in spec["assignments"]:
        if not _run_app(GenerateAssignmentApp, [assignment, "--force", "--CourseDirectory.release_directory=release"],
                        lambda config: Config(), recorder):
            failed.append(assignment)
    if failed:
        return {"failed": failed, "max_scores": [], "log": "\n".join(recorder.messages[-40:])}
    for assignment in spec["assignments"]:
        for path in sorted((course / "solutions" / assignment).glob("*.ipynb")):
            try:
                plan = scoring.build_plan(nbformat.read(str(path), as_version=4))
            except scoring.PlanError as e:
                return {"failed": [assignment], "max_scores": [], "log": f"{path.name}: {e}"}
            target = course / "plans" / assignment / f"{path.stem}.pt"
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.save(plan, target)
    bwrap.build_lib(course / "sandbox-lib")
    scores = gradebook.max_scores(f"sqlite:///{course / 'gradebook.db'}")
    return {"failed": [], "max_scores": scores, "log": "\n".join(recorder.messages[-40:])}


def merge(spec: dict, capture: BoundedCapture) -> dict:
    """Record finished rows in the instructor's copy of the gradebook (no hand-in is run here)."""
    return {"merged": gradebook.merge(f"sqlite:///{spec['db']}", spec["entries"])}


# ----------------------------------------------------------------------------- entry point

def child_main(kind: str, spec: dict) -> None:
    """The job process: isolate, run, write ``result.json`` last, exit without running atexit hooks."""
    code = 0
    capture = None
    job_dir = Path(spec["job_dir"])
    try:
        capture = isolate(spec)
        result = {"grade": grade, "generate": generate, "merge": merge}[kind](spec, capture)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as this job's outcome
        result = {"status": "error", "detail": f"the grader failed: {type(exc).__name__}: {str(exc)[:300]}",
                  "traceback": traceback.format_exc()[-4000:]}
        code = 3
    try:
        if capture is not None:
            (job_dir / "log.txt").write_text(capture.text(), encoding="utf-8")
        tmp = job_dir / "result.json.tmp"
        tmp.write_text(json.dumps(result, default=str), encoding="utf-8")
        os.replace(tmp, job_dir / "result.json")
    except BaseException:  # noqa: BLE001
        code = 4
    os._exit(code)
