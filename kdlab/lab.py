"""``kdlab lab``: JupyterLab on the course's notebooks, for a learner working alone.

nbgrader's instructor tools (the formgrader, Create Assignment, the course
list) and its Assignment List, which needs an exchange a learner alone does
not have ("Error fetching courses!"), are switched off for this one server;
Validate stays. Nothing global changes: the settings live in a folder of
kdlab's cache (:func:`write_config`) that only this server reads, through
``JUPYTER_CONFIG_PATH``; they are the ones ``jupyter labextension disable``
and ``jupyter server extension disable`` write. Fast mode (``KDLAB_FAST``) is
off unless ``--fast`` is given.

:func:`plan` builds the command, environment and working folder (tested
without a server); :func:`main` checks the options and runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import KdlabError

# The lab extensions a learner alone must not see: the instructor's tools, and the two that need an exchange.
# "menu" is nbgrader's menu, which holds only these. Validate (validate-assignment) stays.
HIDDEN_LAB_PLUGINS = (
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:course-list",
    "@jupyter/nbgrader:assignment-list",
    "@jupyter/nbgrader:menu",
)
HIDDEN_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.assignment_list",
)


@dataclass
class LabPlan:
    """How to start the server: ``argv`` run in ``cwd`` with ``env``."""

    argv: list
    env: dict
    cwd: Path
    notebook_dir: Path


def default_config_dir() -> Path:
    """Where :func:`write_config` keeps the self-study settings: kdlab's user cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "kdlab" / "lab-config"


def write_config(folder: Path) -> Path:
    """Write the self-study settings into ``folder`` (a Jupyter config folder) and return it."""
    folder = Path(folder)
    page = {"disabledExtensions": {name: True for name in HIDDEN_LAB_PLUGINS}}
    server = {"ServerApp": {"jpserver_extensions": {name: False for name in HIDDEN_SERVER_EXTENSIONS}}}
    paths.atomic_write(folder / "labconfig" / "page_config.json", json.dumps(page, indent=2) + "\n")
    paths.atomic_write(folder / "jupyter_server_config.json", json.dumps(server, indent=2) + "\n")
    return folder


def find_course(start: Path | None = None) -> Path | None:
    """The course folder (the one holding notebooks/): ``start`` or a folder above it, else this checkout's."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents, Path(__file__).resolve().parents[1]):
        if (folder / "notebooks").is_dir():
            return folder
    return None


def plan(notebook_dir: Path, *, config_dir: Path, port: int | None = None, no_browser: bool = False,
         fast: bool = False, token: str | None = None, environ: dict | None = None) -> LabPlan:
    """The command, environment and working folder of a self-study JupyterLab on ``notebook_dir``."""
    notebook_dir = Path(notebook_dir).resolve()
    env = dict(os.environ if environ is None else environ)
    # Our folder first: it must win over the Python environment's folders, where nbgrader enables everything.
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(config_dir)] + [
        p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p])
    if fast:
        env["KDLAB_FAST"] = "1"
    else:
        env.pop("KDLAB_FAST", None)   # full lessons: a learner alone has the time (a hub sets it for a room)
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebook_dir}",
            "--ServerApp.ip=127.0.0.1"]
    if port is not None:
        argv += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]   # the port asked for, or an error
    if no_browser:
        argv.append("--no-browser")
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root is common in a container; the server listens on 127.0.0.1 only, behind its token
        argv.append("--allow-root")
    # nbgrader's Validate reads nbgrader_config.py from the server's working folder: the course's, if there.
    parent = notebook_dir.parent
    cwd = parent if (parent / "nbgrader_config.py").is_file() else notebook_dir
    return LabPlan(argv, env, cwd, notebook_dir)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise KdlabError(f"--port must lie in 1..65535, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise KdlabError(f"--port {port}: that port is in use; pick another, or leave --port out") from None


def add_cli(sub) -> None:
    p = sub.add_parser("lab", help="open the course in JupyterLab, for a learner working alone",
                       description="Start JupyterLab on the course's notebooks/ for self-study: nbgrader's "
                                   "instructor tools and Assignment List off (Validate stays), fast mode off "
                                   "unless --fast.")
    p.add_argument("--notebook-dir", type=Path, default=None, metavar="DIR",
                   help="the folder to open (default: notebooks/ of the course folder you are in)")
    p.add_argument("--port", type=int, default=None, help="the port to serve on (default: 8888 or the next free)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser; print the address")
    p.add_argument("--fast", action="store_true",
                   help="KDLAB_FAST=1: every lesson on a small slice of the data, in seconds (numbers are not "
                        "results)")
    p.set_defaults(func=_cmd_lab)


def _cmd_lab(args) -> int:
    if args.notebook_dir is not None:
        notebook_dir = paths.check_input_dir(args.notebook_dir, "--notebook-dir")
    else:
        course = find_course()
        if course is None:
            raise KdlabError("no course here: run `kdlab lab` in the course folder (the one holding notebooks/), "
                             "or give --notebook-dir DIR")
        notebook_dir = course / "notebooks"
    if args.port is not None:
        _check_port(args.port)
    if importlib.util.find_spec("jupyterlab") is None:
        raise KdlabError("JupyterLab is not installed in this Python: python -m pip install -r requirements.txt")
    try:
        config_dir = write_config(default_config_dir())
    except OSError as e:
        raise KdlabError(f"cannot write kdlab's JupyterLab settings in {default_config_dir()}: "
                         f"{e.strerror or e}") from None
    lab = plan(notebook_dir, config_dir=config_dir, port=args.port, no_browser=args.no_browser, fast=args.fast)
    mode = "fast mode (KDLAB_FAST=1)" if args.fast else "full mode (--fast for quick runs)"
    print(f"kdlab lab: JupyterLab on {lab.notebook_dir}, {mode}; nbgrader's instructor tools are off", flush=True)
    os.chdir(lab.cwd)
    os.execve(lab.argv[0], lab.argv, lab.env)   # the server takes over: its Ctrl-C, its exit status
    return 0   # not reached
