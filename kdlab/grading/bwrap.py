"""The sandbox a hand-in runs in: bubblewrap (Debian's ``bubblewrap``), and the small kdlab it sees.

Each hand-in runs :mod:`.sandbox` in a fresh bubblewrap container:

* a private mount namespace built from nothing: the system's ``/usr``
  (read-only), Python's own installation (read-only), the sandbox's kdlab
  (read-only, :func:`build_lib`), the job's input and the files handed in
  (read-only), and a working folder and ``/tmp`` in memory, bounded: nothing
  the hand-in writes reaches the disk, and its result leaves through a pipe.
  Nothing of the instructor's is there: no course, no solutions, no
  gradebook, no ``--out``, no class folder, no home directory;
* its own user (nobody, no capabilities), PID, network (loopback only),
  IPC, UTS and cgroup namespaces: no process outlives the sandbox's first
  process, and nothing outside can be reached;
* a clean environment, ``/tmp`` in memory and bounded, and Python started
  with ``-I`` (no user site, no environment variables, no working folder
  on ``sys.path``).

Where bubblewrap is missing (macOS, Windows, a Linux without it),
:func:`check` says how to get it; ``kdlab grade --no-sandbox`` runs the same
program without the container, and every row says so.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import KdlabError

# The only kdlab files a hand-in can see: lesson plumbing and the sandbox's side of grading.
# No reference implementation of an exercise is among them (tests/ checks this).
SANDBOX_FILES = ("errors.py", "settings.py", "lessons.py", "checks.py",
                 "grading/sandbox.py", "grading/replay.py", "grading/transport.py")
INIT = {
    "__init__.py": '"""kdlab as a hand-in sees it while it is graded: lesson plumbing only."""\n\n'
                   '__version__ = "sandbox"\n\nfrom .errors import DataError, KdlabError  # noqa: F401\n',
    "grading/__init__.py": '"""The sandbox side of kdlab grade."""\n',
}
LIB_MOUNT = "/opt/kdlab-sandbox"
JOB_MOUNT = "/job"
TMP_SIZE = 256 * 2**20     # /tmp, in memory
WORK_SIZE = 256 * 2**20    # the hand-in's working folder, in memory: nothing it writes reaches the disk
INSTALL_HINT = ("bubblewrap (bwrap) is needed to grade untrusted hand-ins safely: install it with "
                "`sudo apt-get install bubblewrap` (Debian/Ubuntu) or `sudo dnf install bubblewrap` (Fedora); "
                "on macOS or Windows, grade inside a Linux container or VM. `kdlab grade --no-sandbox` grades "
                "without it, unprotected")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def build_lib(dest: Path) -> Path:
    """Write the sandbox's kdlab into ``dest/kdlab`` from the installed package; returns ``dest``."""
    source = Path(__file__).resolve().parents[1]
    for rel in SANDBOX_FILES:
        target = dest / "kdlab" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
    for rel, text in INIT.items():
        (dest / "kdlab" / rel).write_text(text, encoding="utf-8")
    return dest


def boot(lib: str, job: str) -> list:
    """The Python command line that runs the sandbox program."""
    code = f"import sys; sys.path.insert(0, {lib!r}); from kdlab.grading.sandbox import main; main({job!r})"
    return [os.path.realpath(sys.executable), "-I", "-c", code]


def environment(home: str) -> dict:
    env = {"HOME": home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.matplotlib", "IPYTHONDIR": f"{home}/.ipython",
           "NBGRADER_EXECUTION": "autograde", "TMPDIR": home}
    env.update({var: "1" for var in THREAD_VARS})
    return env


def _python_roots() -> list:
    roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    for p in sys.path:
        if p and "site-packages" in p and os.path.isdir(p):
            roots.add(os.path.realpath(p))
    out = []
    for r in sorted(roots, key=len):   # a root inside another one is already bound
        if not r.startswith("/usr/") and not any(r == o or r.startswith(o + os.sep) for o in out):
            out.append(r)
    return out


def command(job: Path, lib: Path) -> list:
    """The bubblewrap command line for one job folder (``in/``: the cells and plan; ``handin/``: its files).

    Nothing of the host is writable inside: the working folder and ``/tmp`` are bounded tmpfs, and the
    result leaves through a pipe (the file descriptor named in ``in/run.json``)."""
    argv = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/passwd", "/etc/group",
              "/etc/nsswitch.conf"):
        argv += ["--ro-bind-try", f, f]
    for root in _python_roots():
        argv += ["--ro-bind", root, root]
    argv += ["--ro-bind", str(lib), LIB_MOUNT,
             "--ro-bind", str(job / "in"), f"{JOB_MOUNT}/in",
             "--ro-bind", str(job / "handin"), f"{JOB_MOUNT}/handin",
             "--size", str(WORK_SIZE), "--tmpfs", f"{JOB_MOUNT}/work",
             "--proc", "/proc", "--dev", "/dev", "--size", str(TMP_SIZE), "--tmpfs", "/tmp",
             "--chdir", f"{JOB_MOUNT}/work", "--clearenv"]
    for k, v in environment("/tmp").items():
        argv += ["--setenv", k, v]
    return argv + ["--"] + boot(LIB_MOUNT, JOB_MOUNT)


def unsandboxed_command(job: Path, lib: Path) -> list:
    """The same program without the container (``--no-sandbox``)."""
    return boot(str(lib), str(job))


@functools.lru_cache(maxsize=1)
def problem() -> str | None:
    """Why bubblewrap cannot be used here, or None when it works."""
    if not sys.platform.startswith("linux"):
        return f"kdlab grade's sandbox needs Linux (this is {sys.platform}): {INSTALL_HINT}"
    if shutil.which("bwrap") is None:
        return f"bwrap was not found on PATH: {INSTALL_HINT}"
    try:
        proc = subprocess.run(["bwrap", "--unshare-all", "--unshare-user", "--die-with-parent",
                               "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap could not start ({type(e).__name__}): {INSTALL_HINT}"
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        return (f"bwrap cannot create a sandbox here ({why[-1] if why else 'exit ' + str(proc.returncode)}); "
                "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1): "
                + INSTALL_HINT)
    return None


def check() -> None:
    """Raise a one-line KdlabError when the sandbox cannot be used."""
    why = problem()
    if why:
        raise KdlabError(why)
