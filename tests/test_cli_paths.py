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
from pathlib import Path

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


def bad_paths(tmp_path: Path) -> dict:
    a_folder = tmp_path / "a-folder"
    a_folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {"unwritable": "/proc/kdlab-x.json", "a folder": str(a_folder), "under a file": str(a_file / "x.json"),
            "a file": str(a_file), "missing": str(tmp_path / "no-such-folder")}


def commands(paths: dict, tmp_path: Path) -> list:
    """(argv, the option named in the error) for every option that takes a path, and each way it can be bad."""
    ok = str(tmp_path / "ok.json")
    out = []
    for kind in ("unwritable", "a folder", "under a file"):
        out.append((["distill", "--json", paths[kind]], "--json"))
        out.append((["distill", "--json", ok, "--plot", paths[kind]], "--plot"))
        out += [(["experiment", name, "--json", paths[kind]], "--json") for name in EXPERIMENTS]
    out.append((["distill", "--json", ok, "--data", paths["missing"]], "--data"))
    out.append((["distill", "--json", ok, "--data", paths["a file"]], "--data"))
    out.append((["data", "download", "--data", paths["a file"]], "--data"))
    out.append((["data", "download", "--data", "/proc/kdlab-data"], "--data"))
    out.append((["data", "verify", "--data", paths["missing"]], "--data"))
    out.append((["data", "where", "--data", paths["missing"]], "--data"))
    klass = tmp_path / "class"
    klass.mkdir(exist_ok=True)
    out.append((["grade", str(klass), "--out", paths["a file"]], "--out"))
    out.append((["grade", str(klass), "--out", "/proc/kdlab-out"], "--out"))
    out.append((["grade", str(klass), "--out", str(tmp_path / "o"), "--course", paths["missing"]], "--course"))
    out.append((["grade", paths["missing"], "--out", str(tmp_path / "o")], paths["missing"]))
    out.append((["distill", "--json", ok, "--device", "cuda"], "--device"))
    out.append((["distill", "--json", ok, "--device", "warp-drive"], "--device"))
    out.append((["distill", "--json", ok, "--seed", "-1"], "--seed"))
    out += [(["experiment", name, "--json", ok, "--seed", "-3"], "--seed") for name in EXPERIMENTS]
    return out


def test_every_path_device_and_seed_is_checked_before_any_work(tmp_path, capsys):
    paths = bad_paths(tmp_path)
    cases = commands(paths, tmp_path)
    assert len(cases) > 30
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for argv, option in cases:
        if "--device" in argv and "cuda" in argv:
            import torch

            if torch.cuda.is_available():   # pragma: no cover - a machine with a GPU accepts it
                continue
        code = cli.main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("kdlab: error:") and option in lines[0], (argv, err)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, "something was written"


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
