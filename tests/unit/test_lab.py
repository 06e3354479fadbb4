"""``kdlab lab`` (kdlab/lab.py): JupyterLab for a learner alone, without nbgrader's instructor tools.

The command, environment and settings are checked without a server; one test
starts the real server on 127.0.0.1 with a token and asks it, through its
HTTP API, which nbgrader extensions it serves.
"""

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kdlab import cli, lab

REPO = Path(__file__).resolve().parents[2]
INSTRUCTORS_MD = REPO / "docs" / "instructors.md"


def test_the_settings_disable_the_instructor_tools_and_keep_validate(tmp_path):
    folder = lab.write_config(tmp_path / "cfg")
    page = json.loads((folder / "labconfig" / "page_config.json").read_text())
    server = json.loads((folder / "jupyter_server_config.json").read_text())
    assert set(page["disabledExtensions"]) == set(lab.HIDDEN_LAB_PLUGINS)
    assert all(page["disabledExtensions"].values())
    for name in ("formgrader", "create-assignment", "course-list", "assignment-list"):
        assert f"@jupyter/nbgrader:{name}" in page["disabledExtensions"]
    assert "@jupyter/nbgrader:validate-assignment" not in page["disabledExtensions"]
    assert server["ServerApp"]["jpserver_extensions"] == {name: False for name in lab.HIDDEN_SERVER_EXTENSIONS}
    assert "nbgrader.server_extensions.validate_assignment" not in server["ServerApp"]["jpserver_extensions"]


def test_the_plan_serves_the_notebooks_on_localhost_with_fast_mode_off_unless_asked(tmp_path):
    environ = {"KDLAB_FAST": "1", "JUPYTER_CONFIG_PATH": "/etc/other", "HOME": "/home/x"}
    plan = lab.plan(REPO / "notebooks", config_dir=tmp_path, port=9123, no_browser=True, token="t0k",
                    environ=environ)
    assert plan.argv[1:3] == ["-m", "jupyterlab"]
    for arg in (f"--ServerApp.root_dir={REPO / 'notebooks'}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port=9123",
                "--ServerApp.port_retries=0", "--no-browser", "--IdentityProvider.token=t0k"):
        assert arg in plan.argv
    assert "KDLAB_FAST" not in plan.env                       # off, even if the shell had it on
    assert plan.env["JUPYTER_CONFIG_PATH"] == os.pathsep.join([str(tmp_path), "/etc/other"])   # ours first
    assert plan.env["HOME"] == "/home/x" and environ["KDLAB_FAST"] == "1"   # the caller's dict is untouched
    assert plan.cwd == REPO                                   # where nbgrader_config.py is (for Validate)

    fast = lab.plan(tmp_path, config_dir=tmp_path, fast=True, environ={})
    assert fast.env["KDLAB_FAST"] == "1" and fast.cwd == tmp_path
    assert not any(a.startswith(("--ServerApp.port", "--IdentityProvider", "--no-browser")) for a in fast.argv)


def test_the_command_checks_its_options_in_one_line(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cases = [
            (["lab", "--notebook-dir", str(tmp_path / "missing")], "--notebook-dir .*missing: no such folder"),
            (["lab", "--notebook-dir", str(a_file)], "is a file, not a folder"),
            (["lab", "--port", "70000"], "--port must lie in 1..65535, got 70000"),
            (["lab", "--port", str(busy.getsockname()[1])], "that port is in use"),
        ]
        for argv, message in cases:
            assert cli.main(argv) == 2
            err = capsys.readouterr().err
            assert re.fullmatch(f"kdlab: error: .*{message}.*\n", err), err
    finally:
        busy.close()
    monkeypatch.setattr(lab, "find_course", lambda start=None: None)
    assert cli.main(["lab"]) == 2
    assert "no course here" in capsys.readouterr().err


def test_the_command_hands_over_to_jupyterlab(tmp_path, monkeypatch, capsys):
    started = {}

    def execve(path, argv, env):
        started.update(path=path, argv=argv, env=env, cwd=Path.cwd())
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setenv("KDLAB_FAST", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli.main(["lab", "--notebook-dir", str(REPO / "notebooks"), "--no-browser"])
    assert "full mode" in capsys.readouterr().out
    assert started["argv"][:3] == [started["path"], "-m", "jupyterlab"] and "--no-browser" in started["argv"]
    assert "KDLAB_FAST" not in started["env"] and started["cwd"] == REPO
    config = Path(started["env"]["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0])
    assert config == lab.default_config_dir() and (config / "labconfig" / "page_config.json").is_file()
    assert str(config).startswith(os.environ["XDG_CACHE_HOME"])   # kdlab's cache, not the learner's settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, ""


def test_the_real_server_has_no_instructor_tools(tmp_path):
    pytest.importorskip("jupyterlab")
    nbgrader = pytest.importorskip("nbgrader")
    token, port = "kdlab-test-token", free_port()
    plan = lab.plan(REPO / "notebooks", config_dir=lab.write_config(tmp_path / "cfg"), port=port,
                    no_browser=True, token=token)
    env = dict(plan.env, JUPYTER_CONFIG_DIR=str(tmp_path / "user-config"),   # no settings of the developer's
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(plan.argv, cwd=plan.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                try:
                    status, body = get(f"{base}/api/status", token)
                    if status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "JupyterLab did not answer /api/status"
                time.sleep(0.3)
            status, page = get(f"{base}/lab", token)
            assert status == 200
            config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                          page, re.DOTALL).group(1))
            assert set(lab.HIDDEN_LAB_PLUGINS) <= set(config["disabledExtensions"])
            assert "@jupyter/nbgrader:validate-assignment" not in config["disabledExtensions"]
            assert any(e["name"] == "@jupyter/nbgrader" for e in config["federated_extensions"])   # it is installed
            # nbgrader's instructor and exchange handlers are not served; Validate's is
            assert get(f"{base}/formgrader", token)[0] == 404
            assert get(f"{base}/formgraders", token)[0] == 404          # the course list
            assert get(f"{base}/assignments", token)[0] == 404          # the assignment list (the exchange)
            assert get(f"{base}/api/contents/part1_foundations", token)[0] == 200   # the course's notebooks
            # Validate's server side stays (only it answers this, the others being off)
            status, body = get(f"{base}/nbgrader_version?version={nbgrader.__version__}", token)
            assert status == 200 and json.loads(body) == {"success": True}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_in_class_the_hub_recipe_leaves_learners_the_assignments_tab_only():
    """docs/instructors.md switches the instructor tools off machine-wide (the grader turns them back on)."""
    text = INSTRUCTORS_MD.read_text(encoding="utf-8")
    disabled = set(re.findall(r"jupyter labextension disable --level=sys_prefix (\S+)", text))
    assert disabled == {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                        "@jupyter/nbgrader:course-list"}
    assert disabled <= set(lab.HIDDEN_LAB_PLUGINS)                # what a learner alone does not see either
    assert "@jupyter/nbgrader:assignment-list" not in disabled   # the learners' Assignments tab
    assert "jupyter server extension disable --sys-prefix nbgrader.server_extensions.formgrader" in text
