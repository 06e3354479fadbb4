"""One grading job, run in a process of its own: check one hand-in, grade it with nbgrader, write feedback.

The parent (:mod:`kdlab.grading.runner`) starts each job as a fresh process
forked from a server that has already imported nbgrader, so a job costs no
interpreter start. :func:`child_main` then, before it touches the hand-in:

* starts a new session (the parent kills the job's whole process group, and
  every process carrying the job's token in its environment, the notebook's
  kernel included);
* asks Linux to kill it if its parent dies, so no job outlives the command;
* sets resource limits that the kernel inherits: address space (memory),
  file size, CPU time (a backstop behind the parent's wall-clock timeout), no
  core dumps;
* limits torch, OpenMP and BLAS to one thread;
* routes its own stdout/stderr (nbgrader's log, anything the kernel writes to
  its file descriptors) through a pipe that keeps a bounded head and tail.

It works in its own scratch copy of the course: the nbgrader config, a copy
of the gradebook built from solutions/ (hidden tests and checksums included,
solutions not), the assignment's other files, and this one notebook. Nothing
else of the class, and not the instructor's gradebook, lies under it.

The job writes ``result.json`` in its folder as its very last act; the
parent only trusts it when the process exited normally.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.apps.autogradeapp import AutogradeApp
from nbgrader.apps.generateassignmentapp import GenerateAssignmentApp
from nbgrader.apps.generatefeedbackapp import GenerateFeedbackApp
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.preprocessors import ClearHiddenTests, Execute
from traitlets.config import Config

from . import gradebook
from . import preprocessors as pp

ENV_TOKEN = "KDLAB_GRADE_JOB"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
LOG_HEAD = LOG_TAIL = 32 * 1024

# Statuses (docs/grading.md lists them for instructors).
GRADED_FLAGS = ("memory_limit", "cell_timeout", "output_truncated", "tests_modified")


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
        return "too_large", f"the file is {pp.human_bytes(size)}, over the {pp.human_bytes(limit)} limit", None
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


def _scratch_course(spec: dict) -> Path:
    """The job's course: config, gradebook, the assignment's non-notebook files, and this hand-in."""
    master = Path(spec["master"])
    course = Path(spec["job_dir"]) / "course"
    a, s, n = spec["assignment"], spec["student"], spec["notebook"]
    (course / "solutions" / a).mkdir(parents=True)
    shutil.copy2(master / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copy2(master / "gradebook.db", course / "gradebook.db")
    for f in sorted((master / "solutions" / a).rglob("*")):
        if f.is_file() and f.suffix != ".ipynb" and ".ipynb_checkpoints" not in f.parts:
            target = course / "solutions" / a / f.relative_to(master / "solutions" / a)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
    folder = course / "submitted" / s / a
    folder.mkdir(parents=True)
    for rel, src in spec.get("extras", []):
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    shutil.copyfile(spec["source"], folder / f"{n}.ipynb")
    return course


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
    app.initialize(argv)
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


def autograde_config(spec: dict, app_config: Config) -> Config:
    c = Config()
    steps = []
    for step in _configured(app_config, Autograde, "autograde_preprocessors"):
        steps.append(pp.BoundedExecute if step is Execute or step == "nbgrader.preprocessors.Execute" else step)
    c.Autograde.autograde_preprocessors = steps
    c.BoundedExecute.max_output_bytes = int(spec["max_output"])
    # Every output is in once the last cell has run: stop the kernel at once instead of waiting for it
    # to wind down (its atexit hooks cannot change a grade; the job's clean-up kills what it leaves).
    c.BoundedExecute.shutdown_kernel = "immediate"
    if spec.get("cell_timeout"):
        c.BoundedExecute.timeout = int(spec["cell_timeout"])
    return c


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


_MODIFIED = re.compile(r"Attribute '(\w+)' for cell (\S+) has changed")
_ADDED = re.compile(r"Missing grade cell (\S+) encountered")
_MEMORY = re.compile(r"MemoryError|can't allocate memory|Cannot allocate memory|std::bad_alloc|out of memory",
                     re.IGNORECASE)


def _normalized(source) -> str:
    text = "".join(source) if isinstance(source, list) else str(source or "")
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def tampering(nb, db_url: str, assignment: str, notebook: str) -> tuple[list, list]:
    """``(edited, deleted)`` grade_ids: read-only cells whose source is neither the released nor the
    instructor's version, and graded cells absent from the hand-in (nbgrader restores both)."""
    present = {}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if isinstance(gid, str):
            present[gid] = cell
    hider = ClearHiddenTests(enforce_metadata=False)
    edited, deleted = [], []
    with Gradebook(db_url) as gb:
        source_nb = gb.find_notebook(notebook, assignment)
        graded = {c.name for c in source_nb.grade_cells}
        for src in source_nb.source_cells:
            if src.name not in present:
                if src.name in graded:
                    deleted.append(src.name)
                continue
            if not src.locked:
                continue
            released = nbformat.v4.new_code_cell(src.source) if src.cell_type == "code" \
                else nbformat.v4.new_markdown_cell(src.source)
            hider._remove_hidden_test_region(released)
            allowed = {_normalized(src.source), _normalized(released.source)}
            if _normalized(present[src.name].get("source", "")) not in allowed:
                edited.append(src.name)
    return sorted(edited), sorted(deleted)


def _cell_label(cell, index: int) -> str:
    gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return gid or f"cell {index + 1}"


def _inspect(nb) -> dict:
    """Cells interrupted at the time limit, cells that ran out of memory, in the executed notebook."""
    found = {"cell_timeout": [], "memory_limit": []}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            text = f"{out.get('ename', '')}: {out.get('evalue', '')}"
            if out.get("ename") == "CellTimeoutError":
                found["cell_timeout"].append(_cell_label(cell, i))
            elif _MEMORY.search(text):
                found["memory_limit"].append(_cell_label(cell, i))
    return found


def _scratch_databases_skip_fsync() -> None:
    """The job's gradebook is a throwaway copy: let SQLite skip the disk syncs of its ~30 commits."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _no_sync(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA journal_mode=MEMORY")
        cursor.close()


def grade(spec: dict, capture: BoundedCapture) -> dict:
    """Check, grade and write feedback for one hand-in; the result the parent merges."""
    a, s, n = spec["assignment"], spec["student"], spec["notebook"]
    job_dir = Path(spec["job_dir"])
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

    course = _scratch_course(spec)
    os.chdir(course)
    _scratch_databases_skip_fsync()
    edited, deleted = tampering(nb, f"sqlite:///{course / 'gradebook.db'}", a, n)
    timings["prepare"] = clock() - t0
    recorder = _Recorder()
    ok = _run_app(AutogradeApp, [a, f"--student={s}", f"--notebook={n}", "--force"],
                  lambda config: autograde_config(spec, config), recorder)
    autograded = course / "autograded" / s / a / f"{n}.ipynb"
    timings["autograde"] = clock() - t0
    log_text = "\n".join(recorder.messages)
    if not ok or not autograded.exists():
        exc = pp.STATS["exception"] or ""
        if "DeadKernelError" in exc or "Kernel died" in exc or "Kernel died" in log_text:
            if _MEMORY.search(capture.text()):
                result.update(status="memory_limit",
                              detail=f"the kernel died out of memory (limit {pp.human_bytes(int(spec['memory']))})")
            else:
                result.update(status="kernel_died",
                              detail="the kernel exited or died while the notebook ran (exit(), os._exit(), a crash)")
        elif ("UnresponsiveKernelError" in log_text or "could not interrupt" in log_text
              or "CellTimeoutError" in exc):
            result.update(status="timeout",
                          detail="the kernel kept running after it was interrupted at the per-cell time limit")
        elif _MEMORY.search(exc):
            result.update(status="memory_limit", detail=f"grading ran out of memory ({exc.splitlines()[0][:200]})")
        else:
            lines = [m for m in recorder.messages if m.strip() and not m.startswith("There was an error")]
            first = exc.strip().splitlines()[0] if exc.strip() else (lines[-1].strip().splitlines()[-1] if lines
                                                                     else "nbgrader failed")
            result.update(status="error", detail=f"nbgrader could not grade it: {first[:300]}")
        return result

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub_nb = gb.find_submission_notebook(n, a, s)
        for g in sub_nb.grades:
            result["grades"][g.name] = {"auto_score": g.auto_score, "max_score": g.max_score,
                                        "needs_manual_grade": bool(g.needs_manual_grade)}
        result["late_penalty"] = float(sub_nb.late_submission_penalty or 0.0)
        ts = sub_nb.assignment.timestamp
        result["timestamp"] = ts.isoformat() if ts else None

    executed = nbformat.read(str(autograded), as_version=4)
    found = _inspect(executed)
    # nbgrader's sanitizer reports every checksum change, and released test cells always differ from the
    # source (their hidden tests are stripped): edits are judged above, other attribute changes come from its log.
    modified = sorted(set(edited) | {m.group(2) for m in map(_MODIFIED.search, recorder.messages)
                                     if m and m.group(1) != "checksum"})
    added = sorted(set(deleted) | {m.group(1) for m in map(_ADDED.search, recorder.messages) if m})
    notes = {}
    if found["memory_limit"]:
        notes["memory_limit"] = (f"ran out of memory (limit {pp.human_bytes(int(spec['memory']))}) in "
                                 + ", ".join(found["memory_limit"]))
    if found["cell_timeout"]:
        notes["cell_timeout"] = "interrupted at the per-cell time limit in " + ", ".join(found["cell_timeout"])
    if pp.STATS["dropped_bytes"]:
        notes["output_truncated"] = f"output past {pp.human_bytes(int(spec['max_output']))} was dropped"
    if modified or added:
        parts = []
        if modified:
            parts.append("edited graded cells were restored: " + ", ".join(modified))
        if added:
            parts.append("deleted graded cells were put back: " + ", ".join(added))
        notes["tests_modified"] = "; ".join(parts)
    flags = [f for f in GRADED_FLAGS if f in notes]
    result["status"] = flags[0] if flags else "ok"
    result["detail"] = "; ".join(notes[f] for f in flags)
    result["autograded"] = str(autograded.relative_to(job_dir))

    if spec.get("feedback", True):
        fb_ok = _run_app(GenerateFeedbackApp, [a, f"--student={s}", f"--notebook={n}", "--force"],
                         feedback_config, recorder)
        page = course / "feedback" / s / a / f"{n}.html"
        timings["feedback"] = clock() - t0
        if fb_ok and page.exists():
            result["feedback"] = str(page.relative_to(job_dir))
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    timings["cpu_grader"] = me.ru_utime + me.ru_stime
    timings["cpu_kernel"] = kids.ru_utime + kids.ru_stime
    return result


# ----------------------------------------------------------------------------- building the master course

def generate(spec: dict, capture: BoundedCapture) -> dict:
    """``nbgrader generate_assignment`` for each assignment, in the master course folder."""
    os.chdir(spec["course"])
    recorder = _Recorder()
    failed = []
    for assignment in spec["assignments"]:
        if not _run_app(GenerateAssignmentApp, [assignment, "--force"], lambda config: Config(), recorder):
            failed.append(assignment)
    scores = [] if failed else gradebook.max_scores(f"sqlite:///{Path(spec['course']) / 'gradebook.db'}")
    return {"failed": failed, "max_scores": scores, "log": "\n".join(recorder.messages[-40:])}


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
