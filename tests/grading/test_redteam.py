"""Attacks on ``kdlab grade``: a class of hostile hand-ins (tests/redteam_handins.py) graded for real.

Each attack targets one exercise and falls back to a wrong answer when its
trick finds nothing, starting from the released notebook: so any point an
attack earns is a hole in the grader. The class also holds honest
bystanders, and the course it is graded against has an instructor's
gradebook, as a real course folder does. The checks: no attack earns a
point; the bystanders' grades are those of a run without the attackers;
nothing the attackers started is alive afterwards, and ``grades.csv``, the
gradebook, the instructor's gradebook and the result cache are unchanged
after the command returns, even 25 s later when the attackers' daemons
would act; a re-run reuses nothing forged: a result, the master course or
the gradebook changed behind the grader's back is rejected.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

h = pytest.importorskip("nbgrader_harness")
rt = pytest.importorskip("redteam_handins")

from kdlab.grading import bwrap  # noqa: E402

if bwrap.problem():  # pragma: no cover - CI installs bubblewrap
    pytest.skip(f"no sandbox here: {bwrap.problem()}", allow_module_level=True)

ASSIGNMENTS = ["part1_foundations", "part4_interview"]
DAEMON_MARKERS = "/tmp/kdlab-redteam-daemon-alive-"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_csv(path: Path) -> dict:
    with open(path, newline="") as f:
        return {(r["student"], r["assignment"], r["notebook"]): r for r in csv.DictReader(f)}


def grade(klass: Path, out: Path, course: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kdlab.cli", "grade", str(klass), "--out", str(out), "--course", str(course),
           "--workers", "2", "--no-progress", "--cell-timeout", "40", "--timeout", "240", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500)


def _markers() -> list:
    return sorted(str(p) for p in Path("/tmp").glob("kdlab-redteam-daemon-alive-*"))


def _daemons() -> list:
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"grades_files" in cmd or b"kdlab-redteam" in cmd:
            found.append(pid)
    return found


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course folder as an instructor has it: config, solutions, and a gradebook with hidden tests."""
    root = h.make_course(tmp_path_factory.mktemp("rt-course") / "course", ASSIGNMENTS)
    assert (root / "gradebook.db").exists()
    return root


@pytest.fixture(scope="module")
def runs(course, tmp_path_factory):
    root = tmp_path_factory.mktemp("redteam")
    markers_before = _markers()
    klass, quiet = root / "class", root / "bystanders"
    for name in rt.ATTACKS:
        rt.write_handin(klass, name, name)
    for name in rt.BYSTANDERS:
        rt.write_handin(klass, name, name)
        rt.write_handin(quiet, name, name)
    instructor_db = _digest(course / "gradebook.db")
    out = root / "out"
    t0 = time.monotonic()
    attacked = grade(klass, out, course)
    seconds = time.monotonic() - t0
    assert attacked.returncode == 0, attacked.stderr[-3000:]
    right_after = {"csv": (out / "grades.csv").read_bytes(), "db": _digest(out / "gradebook.db")}
    calm = grade(quiet, root / "out-bystanders", course)
    assert calm.returncode == 0, calm.stderr[-3000:]
    # The attackers' daemons sleep 20 s before they act: give them the time they would need.
    time.sleep(max(0.0, 25 - (time.monotonic() - t0 - seconds)))
    return {"root": root, "class": klass, "out": out, "course": course, "rows": read_csv(out / "grades.csv"),
            "calm": read_csv(root / "out-bystanders" / "grades.csv"), "right_after": right_after,
            "instructor_db": instructor_db, "markers_before": markers_before, "seconds": seconds,
            "stdout": attacked.stdout}


@pytest.mark.parametrize("name", sorted(rt.ATTACKS))
def test_no_trick_earns_a_point(runs, name):
    attack = rt.ATTACKS[name]
    assignment, notebook = attack.lesson.split("/")
    row = runs["rows"][(name, assignment, notebook)]
    if attack.honest:   # the control: a correct answer that only looks suspicious keeps its points
        assert row["status"] == "suspicious" and row["score"] == "2", row
        return
    assert row["score"] == "0", (name, row)
    assert row["status"] in {"ok", "suspicious", "tests_modified", "cell_timeout"}, row


def test_the_bystanders_are_graded_as_without_the_attackers(runs):
    for name in rt.BYSTANDERS:
        mine = {k: (r["score"], r["max_score"], r["status"]) for k, r in runs["rows"].items() if k[0] == name}
        calm = {k: (r["score"], r["max_score"], r["status"]) for k, r in runs["calm"].items() if k[0] == name}
        assert mine == calm and mine, name
    assert runs["calm"][("honest_part1", "part1_foundations", "01_softmax_temperature")]["score"] == "3"
    assert runs["calm"][("half_right_part1", "part1_foundations", "01_softmax_temperature")]["score"] == "2"


def test_nothing_changes_after_the_command_returns(runs):
    out = runs["out"]
    assert (out / "grades.csv").read_bytes() == runs["right_after"]["csv"]
    assert _digest(out / "gradebook.db") == runs["right_after"]["db"]
    assert _digest(runs["course"] / "gradebook.db") == runs["instructor_db"], "the instructor's gradebook changed"
    assert _markers() == runs["markers_before"], "an attacker's daemon outlived its sandbox"
    assert _daemons() == []
    for db in (out / "gradebook.db", runs["course"] / "gradebook.db"):
        con = sqlite3.connect(db)
        assert con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall() == []
        con.close()


def test_the_answer_key_never_reaches_the_hand_ins(runs):
    out = runs["out"]
    # What the attackers' cells printed while they ran in the sandbox holds nothing of the key.
    for name in rt.ATTACKS:
        attack = rt.ATTACKS[name]
        assignment, notebook = attack.lesson.split("/")
        import nbformat

        nb = nbformat.read(str(out / "autograded" / name / assignment / f"{notebook}.ipynb"), as_version=4)
        printed = "".join(str(o.get("text", "")) + str(o.get("evalue", "")) for c in nb.cells
                          if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade") is not True
                          for o in c.outputs)
        for secret in ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "expect_choice(", "expect_number("):
            assert secret not in printed, (name, secret)
    # What crossed into a sandbox: the hidden inputs (plans) and a kdlab without any reference.
    master = out / ".kdlab-grade" / "master"
    lib = master / "sandbox-lib" / "kdlab"
    names = {p.relative_to(lib).as_posix() for p in lib.rglob("*.py")}
    assert names == {"__init__.py", "errors.py", "settings.py", "lessons.py", "checks.py", "grading/__init__.py",
                     "grading/sandbox.py", "grading/replay.py", "grading/transport.py"}
    text = "".join(p.read_text() for p in lib.rglob("*.py"))
    for reference in ("def softmax_t", "def entropy", "def kd_kl", "expect_choice", "def distillation_loss"):
        assert reference not in text


def test_a_rerun_reuses_nothing_forged(runs):
    out, klass, course = runs["out"], runs["class"], runs["course"]
    before = (out / "grades.csv").read_bytes()
    key = ("read_gradebook", "part4_interview", "10_interview_drill")
    cached = out / ".kdlab-grade" / "results" / key[0] / key[1] / f"{key[2]}.json"
    entry = json.loads(cached.read_text())
    entry["row"]["score"] = entry["row"]["max_score"]
    for g in entry["grades"].values():
        g["auto_score"] = g["max_score"]
    cached.write_text(json.dumps(entry))                       # a forged result, signature left as it was
    plan = next((out / ".kdlab-grade" / "master" / "plans").rglob("*.pt"))
    plan.write_bytes(plan.read_bytes() + b"\0")                # a master course changed behind the grader's back
    con = sqlite3.connect(out / "gradebook.db")                # a gradebook that gives full marks on every update
    con.execute("CREATE TRIGGER forged AFTER UPDATE ON grade BEGIN UPDATE grade SET auto_score = max_score; END")
    con.commit()
    con.close()
    rerun = grade(klass, out, course)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (out / "grades.csv").read_bytes() == before
    assert "rejected" in rerun.stdout and (out / "gradebook.db.rejected").exists()
    con = sqlite3.connect(out / "gradebook.db")
    assert con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall() == []
    con.close()
    # the forged result was graded again; every other result was reused (the master, rebuilt, is the same)
    jobs = sum(1 for r in runs["rows"].values() if r["status"] != "missing")
    assert f"({jobs - 1} reused" in rerun.stdout, rerun.stdout


def test_grading_without_the_sandbox_says_so_on_every_row(course, tmp_path):
    klass = tmp_path / "class"
    rt.write_handin(klass, "honest_part1", "honest_part1")
    proc = grade(klass, tmp_path / "out", course, "--no-sandbox")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--no-sandbox" in proc.stderr and "unsandboxed" in proc.stdout
    rows = read_csv(tmp_path / "out" / "grades.csv")
    row = rows[("honest_part1", "part1_foundations", "01_softmax_temperature")]
    assert row["status"] == "unsandboxed" and row["score"] == "3", row


def test_without_bubblewrap_grading_stops_with_one_line(course, tmp_path):
    klass = tmp_path / "class"
    rt.write_handin(klass, "honest_part1", "honest_part1")
    env = {**os.environ, "PATH": str(tmp_path)}   # no bwrap on PATH
    cmd = [sys.executable, "-m", "kdlab.cli", "grade", str(klass), "--out", str(tmp_path / "out"),
           "--course", str(course)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bubblewrap" in lines[0] and "--no-sandbox" in lines[0], proc.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_grades_go_into_the_course_gradebook_for_the_formgrader(runs, course, tmp_path):
    from nbgrader.api import Gradebook

    mine = tmp_path / "course"
    shutil.copytree(course, mine)
    klass = mine / "submitted"
    for name in rt.BYSTANDERS:
        rt.write_handin(klass, name, name)
    # The bystanders' signed results from the run above are reused (the same course, the same hand-ins):
    # what this test checks is the recording into the course, not the grading again.
    shutil.copytree(runs["root"] / "out-bystanders", mine / "grading")
    proc = grade(klass, mine / "grading", mine, "--into-course")
    assert proc.returncode == 0, proc.stderr[-2000:]
    graded = [r for r in read_csv(mine / "grading" / "grades.csv").values() if r["status"] != "missing"]
    assert "recorded" in proc.stdout and f"({len(graded)} reused" in proc.stdout, proc.stdout
    rows = read_csv(mine / "grading" / "grades.csv")
    with Gradebook(f"sqlite:///{mine / 'gradebook.db'}") as gb:
        for (student, assignment, notebook), row in rows.items():
            if row["status"] == "missing":
                continue
            nb = gb.find_submission_notebook(notebook, assignment, student)
            assert float(nb.score) == float(row["score"]), (student, notebook)
    assert (mine / "feedback" / "honest_drill" / "part4_interview" / "10_interview_drill.html").exists()
    assert (mine / "autograded" / "honest_part1" / "part1_foundations" / "01_softmax_temperature.ipynb").exists()
    # a course gradebook that was tampered with is refused, not written into
    con = sqlite3.connect(mine / "gradebook.db")
    con.execute("CREATE TRIGGER forged AFTER UPDATE ON grade BEGIN UPDATE grade SET auto_score = max_score; END")
    con.commit()
    con.close()
    proc = grade(klass, mine / "grading", mine, "--into-course")
    assert proc.returncode != 0 and "trigger forged" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
