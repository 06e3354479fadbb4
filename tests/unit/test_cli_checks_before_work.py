"""Every ``kdlab`` subcommand checks its paths, device and seed before any work starts.

A problem is one line, ``kdlab: error: ...``, exit status 2, and nothing is
written (no file, no ``.part``). The work itself (training, an experiment,
a download, grading) is replaced by a function that fails the test if it is
ever reached, so a check that runs too late is caught, not waited for.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from kdlab import cli, data, jobs
from kdlab import experiments as ex
from kdlab.grading import runner

ex._discover()
EXPERIMENTS = sorted(ex.REGISTRY)


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(jobs, "run_distill", refuse)
    monkeypatch.setattr(data, "download", refuse)
    monkeypatch.setattr(runner, "grade_class", refuse)
    import kdlab.grading as grading

    monkeypatch.setattr(grading, "grade_class", refuse)
    for name in EXPERIMENTS:
        monkeypatch.setattr(ex.REGISTRY[name], "run", refuse)
    monkeypatch.delenv("KDLAB_DATA", raising=False)


def cases() -> list:
    """(argv, the option the error must name), with {A_FOLDER}, {A_FILE}, {MISSING}, {OK}, {CLASS} to fill in."""
    out = []
    for bad in ("/proc/kdlab-x.json", "{A_FOLDER}", "{A_FILE}/x.json"):
        out.append((["distill", "--json", bad], "--json"))
        out.append((["distill", "--json", "{OK}", "--plot", bad], "--plot"))
        out += [(["experiment", name, "--json", bad], "--json") for name in EXPERIMENTS]
    out += [(["distill", "--json", "{OK}", "--data", "{MISSING}"], "--data"),
            (["distill", "--json", "{OK}", "--data", "{A_FILE}"], "--data"),
            (["data", "download", "--data", "{A_FILE}"], "--data"),
            (["data", "download", "--data", "/proc/kdlab-data"], "--data"),
            (["data", "verify", "--data", "{MISSING}"], "--data"),
            (["data", "where", "--data", "{MISSING}"], "--data"),
            (["grade", "{CLASS}", "--out", "{A_FILE}"], "--out"),
            (["grade", "{CLASS}", "--out", "/proc/kdlab-out"], "--out"),
            (["grade", "{CLASS}", "--out", "{OK}.d", "--course", "{MISSING}"], "--course"),
            (["grade", "{MISSING}", "--out", "{OK}.d"], "no-such-folder"),
            (["distill", "--json", "{OK}", "--device", "warp-drive"], "--device"),
            (["distill", "--json", "{OK}", "--seed", "-1"], "--seed")]
    out += [(["experiment", name, "--json", "{OK}", "--seed", "-3"], "--seed") for name in EXPERIMENTS]
    import torch

    if not torch.cuda.is_available():
        out.append((["distill", "--json", "{OK}", "--device", "cuda"], "--device"))
    return out


CASES = cases()


@pytest.mark.parametrize("argv, option", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_bad_path_device_or_seed_is_one_line_before_any_work(tmp_path, capsys, argv, option):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "class").mkdir()
    fill = {"{A_FOLDER}": str(tmp_path / "a-folder"), "{A_FILE}": str(tmp_path / "a-file"),
            "{MISSING}": str(tmp_path / "no-such-folder"), "{OK}": str(tmp_path / "ok.json"),
            "{CLASS}": str(tmp_path / "class")}
    args = []
    for a in argv:
        for key, value in fill.items():
            a = a.replace(key, value)
        args.append(a)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = cli.main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("kdlab: error:") and option in lines[0], err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "something was written"


def test_a_bad_json_path_fails_in_seconds_from_the_shell(tmp_path):
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "kdlab.cli", "distill", "--json", "/proc/x.json"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    seconds = time.monotonic() - start
    print(f"\nkdlab distill --json /proc/x.json: exit {r.returncode} after {seconds:.1f} s: {r.stderr.strip()}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--json /proc/x.json" in r.stderr
    assert seconds < 15   # about 2 s on an idle 2-core machine: the time to import torch
    assert not list(tmp_path.iterdir())


def test_nothing_half_written_when_writing_fails(tmp_path, monkeypatch):
    from kdlab.paths import atomic_write

    target = tmp_path / "r.json"

    class Boom(KeyboardInterrupt):
        pass

    def explode(*args, **kwargs):
        raise Boom

    monkeypatch.setattr("os.replace", explode)
    with pytest.raises(Boom):
        atomic_write(target, "{}")
    assert list(tmp_path.iterdir()) == []
