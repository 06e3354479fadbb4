"""``kdlab grade`` on a class of hand-ins that covers everything learners hand in, graded for real.

A tiny course is built here (an nbgrader source notebook with two graded
functions, visible and hidden tests; a second lesson; a second assignment),
so these tests need no data and no torch in most kernels. The class holds a
correct hand-in, the released notebook, wrong and noisy answers, edited and
deleted test cells, and every bad case of the issue: empty, not JSON,
truncated, not a notebook, another lesson's or assignment's notebook, an
infinite loop, a sleep, an exited kernel, output floods, memory hogs, code
that ignores interrupts, a daemon child, a snooping hand-in. One
``grade_class`` run with 2 workers and short limits grades it all; every row
is checked, then the run is repeated (same CSV, nothing regraded).
Unit tests cover the pieces that need no kernel.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kdlab.grading import Options, grade_class
from kdlab.grading import handins as hi
from kdlab.grading import pool
from kdlab.grading import preprocessors as pp
from kdlab.grading import runner
from kdlab.grading.worker import classify

REPO = Path(__file__).resolve().parents[2]
HIDDEN_SOURCE = "SECRET_HIDDEN_SOURCE_1729"   # appears only in the hidden tests' code
HIDDEN_MESSAGE = "double(-3) should be -6"     # the message a failing hidden test shows the learner

CONFIG = '''c = get_config()
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.OverwriteCells.add_missing_cells = True
c.ExecutePreprocessor.timeout = 60
'''


# ----------------------------------------------------------------------------- the tiny course

def _meta(grade_id, *, solution=False, grade=False, locked=False, points=0):
    m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
         "task": False}
    if grade:
        m["points"] = points
    return {"nbgrader": m}


def answer_cell(name: str, body: str):
    return new_code_cell(f"def {name}(x):\n    ### BEGIN SOLUTION\n    {body}\n    ### END SOLUTION",
                         metadata=_meta(name, solution=True))


def grade_cell(name: str, source: str, points: int):
    return new_code_cell(source, metadata=_meta(f"test_{name}", grade=True, locked=True, points=points))


QUIET = ("import contextlib, io, warnings\n"
         "def quiet(f, *args):\n"
         "    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():\n"
         "        warnings.simplefilter('ignore')\n"
         "        return f(*args)\n")


def lesson_notebook():
    return new_notebook(cells=[
        new_markdown_cell("# A tiny lesson"),
        new_code_cell("import math"),
        answer_cell("double", "return 2 * x"),
        grade_cell("double", QUIET + "assert quiet(double, 2) == 4, 'double(2) should be 4'\n"
                  "### BEGIN HIDDEN TESTS\n"
                  f"assert quiet(double, -3) == -6, '{HIDDEN_MESSAGE}'  # {HIDDEN_SOURCE}\n"
                  "assert quiet(double, 0.5) == 1.0, 'double(0.5) should be 1.0'\n"
                  "### END HIDDEN TESTS", 2),
        answer_cell("square", "return x * x"),
        grade_cell("square", QUIET + "assert quiet(square, 3) == 9, 'square(3) should be 9'\n"
                  "### BEGIN HIDDEN TESTS\nassert quiet(square, -2) == 4\n### END HIDDEN TESTS", 1),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def lesson2_notebook():
    return new_notebook(cells=[
        answer_cell("triple", "return 3 * x"),
        grade_cell("triple", "assert triple(2) == 6", 1),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def other_notebook():
    return new_notebook(cells=[
        answer_cell("halve", "return x / 2"),
        grade_cell("halve", "assert halve(4) == 2", 1),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def make_course(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(CONFIG)
    for assignment, notebooks in {"ex": {"lesson": lesson_notebook(), "lesson2": lesson2_notebook()},
                                  "other": {"extra": other_notebook()}}.items():
        folder = root / "solutions" / assignment
        folder.mkdir(parents=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, str(folder / f"{name}.ipynb"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NBGRADER_EXECUTION", None)
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "ex", "--force"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (root / "gradebook.db").unlink()   # the grader builds its own; an instructor's course has one, untouched
    return root


def with_answer(nb, grade_id: str, source: str):
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            c.source = source
            return nb
    raise KeyError(grade_id)


def drop_cell(nb, grade_id: str):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


SNOOP = '''import glob, os, sqlite3
def look(what, f):
    try:
        print("SNOOP", what, f())
    except Exception as e:
        print("SNOOP", what, "nothing:", type(e).__name__)
look("cwd", lambda: os.getcwd())
look("submitted", lambda: sorted(os.listdir(os.path.join("..", "..", "..", "submitted"))))
look("notebooks", lambda: sorted(p for r in ("/job", "/tmp", "/opt", "/root", "/home", "/work", "/srv", "/mnt")
                                  for p in glob.glob(r + "/**/*.ipynb", recursive=True)))
look("students", lambda: sorted(r[0] for r in sqlite3.connect("../../../gradebook.db").execute("select id from student")))
def double(x):
    return 2 * x'''

DAEMON = '''import subprocess
subprocess.Popen(["sleep", "301"], start_new_session=True)
def double(x):
    return 2 * x'''

DISK_FILLER = '''written = 0
try:
    for i in range(64):                       # up to 2 GiB, 32 MiB at a time
        with open(f"fill-{i}", "wb") as f:
            f.write(b"x" * 2**25)
        written += 32
except OSError as e:
    print("DISK FULL after", written, "MiB:", type(e).__name__)
def double(x):
    return 2 * x'''

STUBBORN = '''while True:
    try:
        while True:
            pass
    except BaseException:
        pass'''

HOG = '''def _hog():
    hog = []
    while True:
        hog.append(b"x" * 10**8)
_hog()'''

# student -> (expected status, expected score of ex/lesson (max 3))
EXPECTED = {
    "correct": ("ok", 3),
    "released": ("ok", 0),
    "wrong_hidden": ("ok", 1),        # passes the visible check, fails the hidden one
    "partial": ("ok", 2),
    "noisy": ("ok", 3),               # prints to stderr and warns: no point lost
    "edited_tests": ("tests_modified", 1),
    "deleted_tests": ("tests_modified", 1),
    "empty": ("empty", 0),
    "not_json": ("not_json", 0),
    "truncated": ("truncated", 0),
    "not_notebook": ("not_notebook", 0),
    "too_large": ("too_large", 0),
    "other_lesson": ("wrong_assignment", 0),
    "other_assignment": ("wrong_assignment", 0),
    "symlink": ("not_notebook", 0),
    "loops": ("cell_timeout", 1),
    "sleeps": ("cell_timeout", 1),
    "exits": ("kernel_died", 0),
    "exit_call": ("kernel_died", 0),
    "flood_bounded": ("output_truncated", 3),
    "memory_hog": ("memory_limit", 1),
    "torch_hog": ("memory_limit", 1),
    "stubborn": ("timeout", 0),       # swallows the interrupt at the cell time limit: stopped at --timeout
    "slow": ("timeout", 0),           # every cell within the cell limit, the whole past the notebook's
    "daemon": ("suspicious", 3),      # flagged for a look (subprocess), graded as usual
    "snoop": ("suspicious", 3),
    "disk_filler": ("ok", 3),         # its working folder is a bounded tmpfs: the disk never sees a byte
}
# Floods without end: what stops them depends on speed (the kernel's memory, the cell's time limit),
# so any of these honest statuses is right, as long as the batch goes on and the grader survives.
FLOOD_STATUSES = {"memory_limit", "cell_timeout", "output_truncated", "kernel_died"}
FLOODS = ["flood_forever", "fd_flood"]

LIMITS = dict(workers=2, timeout=25, cell_timeout=8, memory=int(1.5 * 2**30), max_output=2**20,
              max_notebook_size=2**20, progress=False)


def make_class(root: Path, course: Path) -> Path:
    sol = nbformat.read(str(course / "solutions" / "ex" / "lesson.ipynb"), as_version=4)
    released = course / "notebooks" / "ex" / "lesson.ipynb"
    raw = released.read_text()

    def put(student, content, name="lesson", assignment="ex"):
        p = root / student / assignment / f"{name}.ipynb"
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif isinstance(content, str):
            p.write_text(content)
        else:
            nbformat.write(content, str(p))
        return p

    wrong_double = "def double(x):\n    return 4 if x == 2 else 0"
    put("correct", sol)
    put("correct", nbformat.read(str(course / "solutions" / "ex" / "lesson2.ipynb"), as_version=4), "lesson2")
    put("released", raw)
    put("wrong_hidden", with_answer(sol, "double", wrong_double))
    put("partial", with_answer(sol, "square", "def square(x):\n    return x * abs(x)"))
    put("noisy", with_answer(sol, "double", "import sys, warnings\ndef double(x):\n"
                                            "    print('debug', x, file=sys.stderr)\n"
                                            "    warnings.warn('careful')\n    return 2 * x\n"
                                            "print('defined', file=sys.stderr)"))
    put("edited_tests", with_answer(with_answer(sol, "double", wrong_double), "test_double", "pass  # no tests"))
    put("deleted_tests", drop_cell(with_answer(sol, "double", wrong_double), "test_double"))
    put("empty", b"")
    put("not_json", b"\x89PNG\r\n\x1a\n\x00\x00 not a notebook")
    put("truncated", raw[: len(raw) // 2])
    put("not_notebook", json.dumps([1, 2, 3]))
    big = copy.deepcopy(sol)
    big.metadata["padding"] = "x" * (2 * 2**20)
    put("too_large", big)
    put("other_lesson", nbformat.read(str(course / "solutions" / "ex" / "lesson2.ipynb"), as_version=4))
    put("other_assignment", nbformat.read(str(course / "solutions" / "other" / "extra.ipynb"), as_version=4))
    put("other_assignment", nbformat.read(str(course / "solutions" / "other" / "extra.ipynb"), as_version=4),
        name="extra")   # another assignment's notebook dropped into this one's folder
    link = root / "symlink" / "ex" / "lesson.ipynb"
    link.parent.mkdir(parents=True)
    link.symlink_to(root / "correct" / "ex" / "lesson.ipynb")
    put("loops", with_answer(sol, "double", "while True:\n    pass"))
    put("sleeps", with_answer(sol, "double", "import time\ntime.sleep(10**6)"))
    put("exits", with_answer(sol, "double", "import os\nos._exit(1)"))
    put("exit_call", with_answer(sol, "double", "exit()"))
    put("flood_bounded", with_answer(sol, "double", "for i in range(3000):\n    print('x' * 1000)\n"
                                                    "def double(x):\n    return 2 * x"))
    put("flood_forever", with_answer(sol, "double", "while True:\n    print('x' * 100000)"))
    put("fd_flood", with_answer(sol, "double", "import os\nwhile True:\n    os.write(1, b'y' * 65536)"))
    put("memory_hog", with_answer(sol, "double", HOG))
    put("torch_hog", with_answer(sol, "double", "import torch\nbig = torch.ones(2**40)"))
    stubborn = with_answer(sol, "double", STUBBORN)
    stubborn.cells.extend(new_code_cell("pass") for _ in range(12))   # 15 cells x 4 s of cell limit > 25 s
    put("stubborn", stubborn)
    slow = copy.deepcopy(sol)
    slow.cells.extend(new_code_cell("import time\ntime.sleep(3)") for _ in range(10))   # 30 s > 25 s
    put("slow", slow)
    put("daemon", with_answer(sol, "double", DAEMON))
    put("snoop", with_answer(sol, "double", SNOOP))
    put("disk_filler", with_answer(sol, "double", DISK_FILLER))
    # rows that need no grading job
    put("misplaced", sol).rename(root / "misplaced" / "lesson.ipynb")
    (root / "misplaced" / "ex").rmdir()
    put("unknown", sol, assignment="part9_nothing")
    return root


def read_csv(path: Path) -> dict:
    with open(path, newline="") as f:
        return {(r["student"], r["assignment"], r["notebook"]): r for r in csv.DictReader(f)}


def leftover_processes(under: Path) -> list:
    """Processes of a grading job (they carry a job token) whose working folder lies under ``under``."""
    out = []
    for pids in pool._proc_environ_tokens().values():
        for pid in pids:
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if cwd.startswith(str(under)):
                out.append(pid)
    return out


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("tiny") / "course")


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    klass = make_class(root / "class", course)
    out = root / "out"
    jobs = root / "tmp"   # the jobs' scratch folders go here, so that this test can find what they leave
    jobs.mkdir()
    saved, tempfile.tempdir = tempfile.tempdir, str(jobs)
    try:
        summary = grade_class(klass, out, course=course, options=Options(**LIMITS))
    finally:
        tempfile.tempdir = saved
    print("\n" + summary.text())
    return klass, out, summary, read_csv(out / "grades.csv"), jobs


# ----------------------------------------------------------------------------- the class, graded

@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_every_hand_in_gets_the_row_that_says_what_happened(graded, student):
    _, _, _, rows, _ = graded
    row = rows[(student, "ex", "lesson")]
    status, score = EXPECTED[student]
    assert (row["status"], row["score"], row["max_score"]) == (status, str(score), "3"), row
    assert row["status"] == "ok" or row["detail"], row


@pytest.mark.parametrize("student", FLOODS)
def test_endless_output_floods_are_stopped_and_graded(graded, student):
    _, _, _, rows, _ = graded
    row = rows[(student, "ex", "lesson")]
    assert row["status"] in FLOOD_STATUSES, row
    assert row["score"] in {"0", "1"} and row["max_score"] == "3"


def test_one_row_per_student_and_notebook(graded):
    _, _, summary, rows, _ = graded
    students = set(EXPECTED) | set(FLOODS)
    expected = {(s, "ex", n) for s in students for n in ("lesson", "lesson2")}
    expected |= {("other_assignment", "ex", "extra"), ("misplaced", "", "lesson"),
                 ("unknown", "part9_nothing", "lesson")}
    assert set(rows) == expected
    assert rows[("correct", "ex", "lesson2")]["status"] == "ok" and rows[("correct", "ex", "lesson2")]["score"] == "1"
    for s in students - {"correct"}:
        assert rows[(s, "ex", "lesson2")] == {"student": s, "assignment": "ex", "notebook": "lesson2",
                                             "score": "0", "max_score": "1", "status": "missing",
                                             "detail": "not handed in"}
    assert rows[("other_assignment", "ex", "extra")]["status"] == "wrong_assignment"
    assert "other" in rows[("other_assignment", "ex", "extra")]["detail"]
    assert rows[("misplaced", "", "lesson")]["status"] == "misplaced"
    assert rows[("unknown", "part9_nothing", "lesson")]["status"] == "unknown_assignment"
    assert [list(r.values())[:3] for r in summary.rows] == sorted(list(k) for k in rows)


def test_the_summary_counts_graded_failed_and_flagged(graded):
    _, _, summary, rows, _ = graded
    text = summary.text()
    graded_rows = [r for r in rows.values() if r["status"] in runner.GRADED]
    assert f"graded {len(graded_rows)} notebooks" in text
    assert f"{sum(r['status'] != 'ok' for r in graded_rows)} flagged" in text
    missing = sum(r["status"] == "missing" for r in rows.values())
    assert f"failed {len(rows) - len(graded_rows) - missing}" in text and f"not handed in {missing}" in text
    for status, n in Counter(r["status"] for r in rows.values()).items():
        assert status == "missing" or f"{n} {status}" in text
    assert "still running after 25 s" in rows[("slow", "ex", "lesson")]["detail"]


def test_the_gradebook_holds_every_grade(graded):
    _, out, _, rows, _ = graded
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        seen = {}
        for sub in gb.assignment_submissions("ex"):
            for nb in sub.notebooks:
                seen[(sub.student.id, "ex", nb.name)] = (nb.score, nb.max_score, nb.flagged)
    for key, row in rows.items():
        if key[1] != "ex" or key[2] not in ("lesson", "lesson2"):
            continue
        score, max_score, flagged = seen[key]
        assert (score, max_score) == (float(row["score"]), float(row["max_score"])), key
        assert flagged == (row["status"] != "ok"), key


def test_feedback_never_shows_the_hidden_tests(graded):
    _, out, _, rows, _ = graded
    pages = sorted((out / "feedback").rglob("*.html"))
    assert len(pages) >= 20
    for page in pages:
        text = page.read_text()
        assert HIDDEN_SOURCE not in text and "BEGIN HIDDEN TESTS" not in text, page
    # the learner still reads the hidden test's message, and the visible test
    wrong = (out / "feedback" / "wrong_hidden" / "ex" / "lesson.html").read_text()
    assert HIDDEN_MESSAGE in wrong and "double(2) should be 4" in wrong
    # the executed notebook (for the instructor) keeps the hidden tests nbgrader restored
    autograded = (out / "autograded" / "released" / "ex" / "lesson.ipynb").read_text()
    assert HIDDEN_SOURCE in autograded
    # a hand-in that could not be graded gets a page that says why
    assert "Not graded (empty)" in (out / "feedback" / "empty" / "ex" / "lesson.html").read_text()


def test_a_hand_in_sees_only_itself_through_relative_paths(graded):
    _, out, _, _, _ = graded
    nb = nbformat.read(str(out / "autograded" / "snoop" / "ex" / "lesson.ipynb"), as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "SNOOP cwd /job/work" in printed
    assert "SNOOP submitted nothing" in printed and "SNOOP students nothing" in printed
    line = next(l for l in printed.splitlines() if l.startswith("SNOOP notebooks"))
    assert "solutions" not in line and "correct" not in line and "released" not in line, line


def test_nothing_a_hand_in_started_survives(graded):
    *_, jobs = graded
    assert leftover_processes(jobs) == []
    # and the scratch folders are gone (pymp-*: multiprocessing's own folder for its server's socket)
    assert [p for p in jobs.iterdir() if not p.name.startswith("pymp-")] == []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert cmd != b"sleep\x00301\x00", "the daemon's child outlived its grading job"


def test_memory_hogs_and_floods_leave_the_grader_standing(graded):
    _, out, summary, rows, _ = graded
    for student in ["memory_hog", "torch_hog", "flood_bounded", *FLOODS]:
        assert rows[(student, "ex", "lesson")]["status"] not in {"crashed", "error"}
    # the bounded flood printed 3 MB; at most the 1 MiB cap was kept
    nb = out / "autograded" / "flood_bounded" / "ex" / "lesson.ipynb"
    assert nb.stat().st_size < 1.5 * 2**20
    assert "MemoryError" in (out / "autograded" / "memory_hog" / "ex" / "lesson.ipynb").read_text()


def test_a_rerun_gives_the_same_csv_and_regrades_nothing(graded, course):
    klass, out, first, _, _ = graded
    before = (out / "grades.csv").read_bytes()
    summary = grade_class(klass, out, course=course, options=Options(**LIMITS))
    assert (out / "grades.csv").read_bytes() == before
    assert summary.reused == len(first.job_seconds) > 20
    assert summary.job_seconds == {}


# ----------------------------------------------------------------------------- interrupted, resumed, regraded

def test_an_interrupted_run_keeps_its_grades_and_a_rerun_finishes(course, tmp_path, request):
    sol = nbformat.read(str(course / "solutions" / "ex" / "lesson.ipynb"), as_version=4)
    klass = tmp_path / "class"
    for student, nb in [("a", sol), ("b", with_answer(sol, "square", "def square(x):\n    return 0")),
                        ("c", with_answer(sol, "double", "import time\ntime.sleep(6)\ndef double(x):\n"
                                                         "    return 2 * x"))]:
        (klass / student / "ex").mkdir(parents=True)
        nbformat.write(nb, str(klass / student / "ex" / "lesson.ipynb"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "kdlab.cli", "grade", str(klass), "--out", str(out), "--workers", "1",
           "--course", str(course), "--cell-timeout", "20", "--timeout", "60", "--no-progress", "--memory", "2G"]
    # A short TMPDIR of its own (to find what the run left behind): the forkserver's socket lives in it, and a
    # Unix socket's path has a limit of about 100 characters that pytest's tmp_path can exceed.
    scratch = Path(tempfile.mkdtemp(prefix="kdlab-int-"))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    finished = {}
    while time.monotonic() < deadline:
        if (out / "grades.csv").exists():
            finished = {k: r for k, r in read_csv(out / "grades.csv").items() if r["notebook"] == "lesson"}
            if len(finished) >= 2:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout + stderr
    assert {k[0] for k in finished} == {"a", "b"}
    kept = read_csv(out / "grades.csv")
    assert {k: v for k, v in kept.items() if v["notebook"] == "lesson"} == finished
    assert ("c", "ex", "lesson") not in kept
    assert leftover_processes(scratch) == []

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 reused" in resumed.stdout
    rows = read_csv(out / "grades.csv")
    assert [rows[(s, "ex", "lesson")]["score"] for s in "abc"] == ["3", "2", "3"]
    assert {k: rows[k] for k in finished} == finished

    # regrading everything from scratch gives the very same CSV
    before = (out / "grades.csv").read_bytes()
    fresh = subprocess.run(cmd + ["--fresh"], capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    assert "0 reused" in fresh.stdout
    assert (out / "grades.csv").read_bytes() == before


def test_a_zip_of_the_class_is_graded_and_cannot_write_outside(course, tmp_path):
    sol = (course / "solutions" / "ex" / "lesson.ipynb").read_bytes()
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("submitted/ann/ex/lesson.ipynb", sol)
        z.writestr("submitted/bo/ex/lesson.ipynb", b"")
        z.writestr("../escaped.ipynb", sol)
        z.writestr("submitted/../../escaped2.txt", b"x")
    out = tmp_path / "out"
    summary = grade_class(archive, out, course=course, options=Options(**LIMITS))
    rows = read_csv(out / "grades.csv")
    assert rows[("ann", "ex", "lesson")]["status"] == "ok" and rows[("ann", "ex", "lesson")]["score"] == "3"
    assert rows[("bo", "ex", "lesson")]["status"] == "empty"
    assert not (tmp_path / "escaped.ipynb").exists() and not list(tmp_path.parent.glob("escaped*"))
    assert summary.failed == 1 and summary.missing == 2   # bo's empty lesson; lesson2 missing twice
    totals = {r["student"]: r for r in csv.DictReader(open(out / "students.csv"))}
    assert totals["ann"]["score"] == "3" and totals["ann"]["graded"] == "1" and totals["ann"]["not_handed_in"] == "1"
    assert totals["bo"]["score"] == "0" and totals["bo"]["not_graded"] == "1"


# ----------------------------------------------------------------------------- units: no kernel

def _spec(**extra):
    return {"assignment": "ex", "notebook": "lesson", "max_notebook_size": 2**20,
            "grade_ids": {"ex/lesson": ["double", "test_double"], "ex/lesson2": ["triple", "test_triple"]}, **extra}


@pytest.mark.parametrize("content,status", [
    (b"", "empty"), (b"  \n\t", "empty"), (b"\xff\xfe\x00binary", "not_json"), (b"hello", "not_json"),
    (b'{"cells": [', "truncated"), (b'{"cells": [{"source": "abc', "truncated"), (b"[1, 2]", "not_notebook"),
    (b'{"nbformat": 4}', "not_notebook"), (b'{"cells": "nope"}', "not_notebook"),
    (b"[" * 100000 + b"]" * 100000, "not_json"),
], ids=["empty", "blank", "binary", "text", "cut-in-list", "cut-in-string", "json-list", "no-cells", "bad-cells",
        "deep-nesting"])
def test_classify_names_what_is_wrong_with_a_file(tmp_path, content, status):
    p = tmp_path / "x.ipynb"
    p.write_bytes(content)
    got, detail, nb = classify(p, _spec())
    assert (got, nb) == (status, None) and detail


def test_classify_recognizes_another_lessons_notebook(tmp_path):
    p = tmp_path / "x.ipynb"
    nbformat.write(lesson2_notebook(), str(p))
    status, detail, _ = classify(p, _spec())
    assert status == "wrong_assignment" and "ex/lesson2" in detail
    nbformat.write(lesson_notebook(), str(p))
    assert classify(p, _spec())[0] == ""
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), str(p))
    assert classify(p, _spec())[0] == ""   # no graded cell at all: graded, nbgrader puts the tests back
    assert classify(p, _spec(max_notebook_size=10))[0] == "too_large"


def test_zip_extraction_refuses_escapes_links_and_bombs(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("class/s/ex/lesson.ipynb", b"{}")
        z.writestr("/abs/evil.ipynb", b"x")
        z.writestr("class/../../evil.ipynb", b"x")
        info = zipfile.ZipInfo("class/s/ex/link.ipynb")
        info.external_attr = (0o120777 << 16)
        z.writestr(info, "/etc/passwd")
        z.writestr("class/s/ex/big.ipynb", b"0" * 5000)
    dest = tmp_path / "out"
    dest.mkdir()
    oversized = hi.extract_zip(archive, dest, max_total=10**6, max_member=1000)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["class/s/ex/lesson.ipynb"]
    assert not (tmp_path / "evil.ipynb").exists()
    assert "class/s/ex/big.ipynb" in oversized
    with pytest.raises(Exception, match="unpacks to more than"):
        hi.extract_zip(archive, tmp_path / "out2", max_total=10, max_member=10**6)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(Exception, match="not a readable zip"):
        hi.extract_zip(tmp_path / "bad.zip", tmp_path / "out3", max_total=10, max_member=10)


def test_the_class_root_may_be_wrapped_in_folders(tmp_path):
    (tmp_path / "export" / "submitted" / "ann" / "ex").mkdir(parents=True)
    (tmp_path / "export" / "submitted" / "ann" / "ex" / "lesson.ipynb").write_text("{}")
    (tmp_path / "export" / "README").write_text("hi")
    assert hi.find_root(tmp_path, {"ex": ["lesson"]}) == tmp_path / "export" / "submitted"
    rows = hi.collect(tmp_path, {"ex": ["lesson", "lesson2"]})
    assert [(r.student, r.notebook, r.status) for r in rows] == [("ann", "lesson", ""), ("ann", "lesson2", "missing")]
    # an nbgrader course folder: its autograded/ mirrors submitted/, and submitted/ is the class
    course = tmp_path / "course"
    for top in ("autograded", "submitted"):
        (course / top / "bo" / "ex").mkdir(parents=True)
        (course / top / "bo" / "ex" / "lesson.ipynb").write_text("{}")
    (course / "solutions" / "ex").mkdir(parents=True)
    assert hi.find_root(course, {"ex": ["lesson"]}) == course / "submitted"


def test_sizes_and_scores_read_and_print_plainly():
    assert runner.parse_size("4G") == 4 * 2**30 and runner.parse_size("512M") == 512 * 2**20
    assert runner.parse_size("1.5GiB") == int(1.5 * 2**30) and runner.parse_size("1000") == 1000
    with pytest.raises(Exception, match="cannot read the size"):
        runner.parse_size("lots")
    assert [runner.fmt_score(x) for x in (3.0, 0.0, 2.5, 1 / 3)] == ["3", "0", "2.5", "0.333333"]
    assert 2**30 <= runner.default_memory() <= 4 * 2**30


def test_feedback_tracebacks_of_hidden_tests_keep_only_the_message():
    cell = new_code_cell("visible\n### BEGIN HIDDEN TESTS\nsecret\n### END HIDDEN TESTS")
    cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="msg",
                                           traceback=["line with secret"])]
    cell, _ = pp.HideHiddenTestTracebacks().preprocess_cell(cell, {}, 0)
    assert cell.outputs[0].traceback == ["AssertionError: msg"]


def test_cli_errors_are_one_line(tmp_path):
    def kdlab(*args):
        return subprocess.run([sys.executable, "-m", "kdlab.cli", "grade", *args], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    r = kdlab(str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--course", str(REPO))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    r = kdlab(str(tmp_path), "--out", str(tmp_path / "o"), "--course", str(REPO), "--memory", "lots")
    assert r.returncode == 2 and "cannot read the size" in r.stderr
    r = kdlab(str(tmp_path), "--out", str(tmp_path / "o"), "--course", str(tmp_path))
    assert r.returncode == 2 and "not an nbgrader course" in r.stderr
    (tmp_path / "empty_class").mkdir()
    r = kdlab(str(tmp_path / "empty_class"), "--out", str(tmp_path / "o"), "--course", str(REPO))
    assert r.returncode == 2 and "no hand-ins found" in r.stderr
    r = kdlab(str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "0", "--course", str(REPO))
    assert r.returncode == 2 and "--workers" in r.stderr


def test_the_status_tables_of_the_docs_are_the_codes_table():
    from kdlab.grading import statuses

    doc = (REPO / "docs" / "grading.md").read_text()
    assert statuses.markdown_table(graded=True) in doc
    assert statuses.markdown_table(graded=False) in doc
    assert set(statuses.GRADED) <= {s for s, _, _ in statuses.TABLE}
    assert statuses.FLAGS[0] == "unsandboxed"


def test_data_from_the_sandbox_is_read_strictly():
    import base64

    import torch

    from kdlab.grading import transport as tr

    class Liar(str):
        def __eq__(self, other):
            return True

    back = tr.decode(json.loads(json.dumps(tr.encode([Liar("B"), torch.arange(3.0), (1, None), {"k": 2.5}]))))
    assert back == ["B", back[1], (1, None), {"k": 2.5}] and type(back[0]) is str
    assert torch.equal(back[1], torch.arange(3.0)) and type(back[1]) is torch.Tensor
    assert isinstance(tr.decode({"t": "opaque", "type": "x", "repr": "y"}), tr.Opaque)
    assert tr.decode({"t": "opaque", "type": "x"}) != tr.decode({"t": "opaque", "type": "x"})
    bad = [{"t": "pickle", "v": "..."}, {"t": "int", "v": 3}, {"t": "tensor", "dtype": "object", "shape": [1], "data": ""},
           {"t": "tensor", "dtype": "float32", "shape": [2], "data": base64.b64encode(b"1234").decode()},
           {"t": "list", "v": [{"t": "str", "v": 1}]}, ["not", "a", "node"]]
    for node in bad:
        with pytest.raises(tr.DecodeError):
            tr.decode(node)


def test_a_run_that_graded_nothing_says_so_and_fails(course, tmp_path):
    klass = tmp_path / "class"
    (klass / "ann").mkdir(parents=True)
    nbformat.write(nbformat.read(str(course / "solutions" / "ex" / "lesson.ipynb"), as_version=4),
                   str(klass / "ann" / "lesson.ipynb"))      # outside any assignment folder
    cmd = [sys.executable, "-m", "kdlab.cli", "grade", str(klass), "--out", str(tmp_path / "out"),
           "--course", str(course), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "no notebook could be graded" in proc.stderr and "not handed in" in proc.stdout


def test_a_hand_in_cannot_fill_the_disk(graded):
    _, out, _, _, _ = graded
    nb = nbformat.read(str(out / "autograded" / "disk_filler" / "ex" / "lesson.ipynb"), as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    line = next(line for line in printed.splitlines() if line.startswith("DISK FULL after"))
    assert int(line.split()[3]) <= 256, line


def test_graders_see_the_model_answer_below_each_written_answer():
    """The formgrader shows the graded notebook: each hand-graded prompt has its rubric above the
    learner's answer and the course's model answer below it; the learner's notebook never had it."""
    from kdlab.grading import scoring
    from kdlab.grading.restore import restore
    from kdlab.grading.worker import MODEL_ANSWER, _add_model_answers

    lesson = ("part4_interview", "10_interview_drill")
    solution = nbformat.read(str(REPO / "solutions" / lesson[0] / f"{lesson[1]}.ipynb"), as_version=4)
    released = nbformat.read(str(REPO / "notebooks" / lesson[0] / f"{lesson[1]}.ipynb"), as_version=4)
    roles = {c.grade_id: c for c in scoring.lesson_cells(solution) if c.grade_id}
    manual = [gid for gid, role in roles.items() if role.kind == "manual"]
    assert len(manual) >= 4
    handin = copy.deepcopy(released)
    for cell in handin.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in manual:
            cell.source = "My own answer."
    executed = restore(handin, released, solution).notebook
    _add_model_answers(executed, roles)
    cells = executed.cells
    for gid in manual:
        (i,) = [k for k, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade_id") == gid]
        assert cells[i].source == "My own answer."
        below = cells[i + 1].source
        assert below.startswith(MODEL_ANSWER), gid
        first_line = roles[gid].source.strip().splitlines()[0]
        assert first_line in below, gid
        assert first_line not in json.dumps(nbformat.writes(released)), f"{gid}: the learner's notebook holds it"
        assert "Rubric" in cells[i - 1].source, gid
