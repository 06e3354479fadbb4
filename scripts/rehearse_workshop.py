#!/usr/bin/env python3
"""Rehearse a kdlab workshop on a real JupyterHub, end to end, on this machine (as root).

    sudo python scripts/rehearse_workshop.py [--logs DIR] [--keep]

What it does, following docs/instructors.md ("Serving many learners") step by step:

 1. installs what the guide installs: npm (apt, if absent), configurable-http-proxy (npm -g, if absent),
    a Python environment with JupyterHub (pip) and kdlab, and nbgrader's extensions as the guide sets them;
 2. writes a roster (one instructor, two learners), creates their Linux accounts and the grader account
    as the guide's steps 4 and 5 do, and the grader's copy of the course (`nbgrader generate_assignment`);
 3. starts JupyterHub on 127.0.0.1 with docs/jupyterhub/ as shipped;
 4. every person logs in with the shared password and gets an API token of their own; from then on all
    they do goes through the hub's API with that token, as that user:
    - the instructor releases part1_foundations through the formgrader's REST API (the grader service);
    - each learner starts their server, fetches the assignment (nbgrader's Assignments REST API in their
      own single-user server), writes an answer to `softmax_t` (contents API; one right, one wrong) and submits;
    - the instructor collects (formgrader API), runs `kdlab grade submitted --out grading --into-course` in
      the grader service's terminal (terminals websocket), and releases feedback (formgrader API);
    - each learner fetches feedback and reads their own page: their own score, their own answer, nobody else's;
 5. checks what learners see and what they are refused: no instructor tools in their JupyterLab (the grader's
    has them); a learner's token on another learner's server and on the grader service; a learner's terminal
    reading another learner's home or feedback, the exchange's hand-ins or feedback folders, the answer key;
 6. cleans up, also on failure or Ctrl-C: stops the hub (and the proxy and servers it started), ends the
    processes of the accounts it created, removes those accounts with their homes and the scratch folder,
    and restores any directory mode it changed.

It prints each step with the time since the start, and exits 0 only if every check passed.

What a rehearsal changes from the guide, and why (everything else is the guide's command or file as shipped):

* **Paths.** The guide's /opt/kdlab (environment), /opt/kdlab/src (the clone), /etc/jupyterhub,
  /etc/jupyter/nbgrader_config.py, /srv/jupyterhub, /srv/nbgrader/exchange and /srv/kdlab/roster.txt are
  replaced by folders under one scratch folder (/opt/kdlab-rehearsal-*), so that a rehearsal never touches a
  real hub's files on the same machine. The hub finds them through what the shipped jupyterhub_config.py
  already reads from the environment (KDLAB_ROSTER, KDLAB_ENV_BIN) and through an override file that runs the
  shipped one first, unchanged, and then sets only: the ports, the hub's database and cookie secret, the
  proxy's pid file.
  The global nbgrader_config.py goes to the environment's etc/jupyter (read by every nbgrader of that
  environment, in place of /etc/jupyter) with one line added: the scratch exchange.
* **Ports.** Four free ports on 127.0.0.1 instead of :8000 (public), 8081, 8001 and the grader's 9999.
* **The Python environment.** A fresh `pip install -r requirements.txt` downloads torch (minutes), so the
  environment is a venv on top of the Python running this script (--system-site-packages), where the
  course's requirements are already installed; JupyterHub is pip-installed into it, kdlab is installed from
  the copy of the course as a package, and JupyterLab's data and extension settings are copied in, as a
  fresh install would have put them there. If that Python lives under a folder other users cannot enter
  (pyenv under /root), the folders on its path get search permission (o+x: enter, not list) for the
  rehearsal and their modes are restored afterwards.
* **The course.** The grader's copy is a copy of this working tree (tracked and untracked files, not the
  ignored ones) instead of a `git clone`, so that uncommitted edits are rehearsed too.
* **PATH in terminals.** The guide's /etc/profile.d/kdlab.sh is /etc/profile.d/kdlab-rehearsal-*.sh, naming the
  scratch environment; it is removed at the end.
* **Names.** The roster's people are kdr-ada (instructor), kdr-alan and kdr-barbara (learners), so that they
  cannot collide with real accounts; the grader account is the configuration's own, grader-kdlab. The
  rehearsal refuses to start if any of these accounts exists.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from kdlab import course  # the course manifest (kdlab/course.json): where the exercise lives

HUB_DOCS = REPO / "docs" / "jupyterhub"
COURSE_ID = "kdlab"
GRADER = f"grader-{COURSE_ID}"
INSTRUCTOR = "kdr-ada"
RIGHT, WRONG = "kdr-alan", "kdr-barbara"          # the learner who answers softmax_t right, and the one who does not
LEARNERS = [RIGHT, WRONG]
ACCOUNTS = [INSTRUCTOR, *LEARNERS, GRADER]
EXERCISE = "softmax_t"                             # the exercise the learners answer; its lesson and assignment:
LESSON = course.exercise(EXERCISE).lesson          # 01_softmax_temperature
ASSIGNMENT = course.exercise(EXERCISE).assignment  # part1_foundations
SCORE = re.compile(r"\(Score: ([\d.]+) / ([\d.]+)\)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")

T0 = time.monotonic()


class Failed(Exception):
    """A check of the rehearsal failed: the message says which and what was seen."""


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


class Step:
    """``with Step("name"):`` prints the step, its duration and ok/FAILED."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.start = time.monotonic()
        say(f"{self.name} ...")
        return self

    def __exit__(self, kind, value, tb):
        took = time.monotonic() - self.start
        say(f"{self.name}: {'ok' if kind is None else 'FAILED'} ({took:.1f} s)")
        return False


def run(cmd, *, user: str | None = None, cwd=None, env=None, check=True, timeout=600):
    """Run a command (as ``user`` through runuser, with a login-like environment); raise Failed if it fails."""
    if user:
        home = pwd.getpwnam(user).pw_dir
        base = {"HOME": home, "USER": user, "LOGNAME": user, "SHELL": "/bin/bash",
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        base.update(env or {})
        cmd = ["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in base.items()], *cmd]
        env = None
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise Failed(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# ----------------------------------------------------------------------------- the rehearsal's state and cleanup

class Rehearsal:
    def __init__(self, args):
        self.args = args
        self.scratch: Path | None = None
        self.hub: subprocess.Popen | None = None
        self.created_users: list[str] = []
        self.modes: list[tuple[Path, int]] = []     # (directory, original mode) changed for the rehearsal
        self.ports = {}
        self.tokens: dict[str, str] = {}
        self.results: dict = {}
        self.cleanup_problems: list[str] = []

    # -- paths
    @property
    def venv(self) -> Path:
        return self.scratch / "opt-kdlab"

    @property
    def src(self) -> Path:
        return self.scratch / "opt-kdlab" / "src"

    @property
    def exchange(self) -> Path:
        return self.scratch / "srv-nbgrader-exchange"

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['public']}"

    # -- cleanup, also on failure
    def cleanup(self) -> None:
        say("cleanup: stopping the hub, ending the rehearsal's processes, removing accounts and scratch")
        problems = []
        if self.hub and self.hub.poll() is None:
            try:
                self.hub.send_signal(signal.SIGTERM)     # the hub stops the servers, services and proxy it started
                self.hub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.hub.pid, signal.SIGKILL)
                self.hub.wait(timeout=10)
        if self.args.logs and self.scratch:
            self._save_logs()
        uids = set()
        for name in self.created_users:
            try:
                uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                pass
        for attempt in range(3):        # the proxy (pid file in scratch) and anything left running as our accounts
            left = self._leftover_pids(uids)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGTERM if attempt == 0 else signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(2)
        if self._leftover_pids(uids):
            problems.append(f"processes still running: {self._leftover_pids(uids)}")
        for name in reversed(self.created_users):
            p = subprocess.run(["userdel", "-r", name], capture_output=True, text=True)
            if p.returncode not in (0, 12) or account_exists(name):   # 12: could not remove the mail spool
                problems.append(f"userdel -r {name}: {p.stderr.strip()}")
        if getattr(self, "profile", None) and self.profile.exists():
            self.profile.unlink()
        if self.scratch and self.scratch.exists():
            if self.args.keep:
                say(f"--keep: scratch folder left at {self.scratch}")
            else:
                shutil.rmtree(self.scratch, ignore_errors=True)
        for path, mode in reversed(self.modes):
            os.chmod(path, mode)
        if self.modes:
            say("restored the modes of " + ", ".join(str(p) for p, _ in self.modes))
        if problems:
            say("cleanup problems: " + "; ".join(problems))
        else:
            say("cleanup: done")
        self.cleanup_problems = problems

    def _leftover_pids(self, uids: set[int]) -> list[int]:
        out = []
        marker = str(self.scratch) if self.scratch else None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if entry.stat().st_uid in uids:
                    out.append(int(entry.name))
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker and marker in cmdline:
                out.append(int(entry.name))
        return out

    def _save_logs(self) -> None:
        dest = Path(self.args.logs)
        dest.mkdir(parents=True, exist_ok=True)
        for path in [self.scratch / "hub" / "jupyterhub.log"]:
            if path.exists():
                shutil.copy(path, dest / path.name)
        try:
            grading = Path(pwd.getpwnam(GRADER).pw_dir) / "kdlab" / "grading"
        except KeyError:
            return
        if (grading / "grades.csv").exists():
            shutil.copy(grading / "grades.csv", dest / "grades.csv")
        if (grading / "logs").exists():
            shutil.copytree(grading / "logs", dest / "grading-logs", dirs_exist_ok=True)

    def hub_log_tail(self, n=60) -> str:
        path = self.scratch / "hub" / "jupyterhub.log" if self.scratch else None
        if path and path.exists():
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        return "(no hub log)"

    # ------------------------------------------------------------------------- 0. preconditions
    def preconditions(self) -> None:
        if os.geteuid() != 0:
            raise Failed("run as root: JupyterHub's LocalProcessSpawner starts each server as its Linux user")
        for tool in ("useradd", "userdel", "runuser"):
            if not shutil.which(tool):
                raise Failed(f"{tool} not found")
        if not shutil.which("bwrap"):
            raise Failed("bubblewrap (bwrap) not found: kdlab grade needs it (apt-get install bubblewrap)")
        taken = [a for a in ACCOUNTS if account_exists(a)]
        if taken:
            raise Failed(f"accounts already exist: {', '.join(taken)}; a rehearsal creates and deletes these, "
                         "so it does not run where they exist (a real hub, or a rehearsal left over: userdel -r)")

    # ------------------------------------------------------------------------- 1. installs
    def install(self) -> None:
        # Under /opt like the guide's /opt/kdlab, not under /tmp: kdlab grade's sandbox mounts a fresh /tmp over
        # the one it shares, which would hide an environment kept there.
        self.scratch = Path(tempfile.mkdtemp(prefix="kdlab-rehearsal-", dir="/opt"))
        os.chmod(self.scratch, 0o755)                     # the accounts run the environment inside it
        if not shutil.which("npm"):
            say("  npm not found: apt-get install -y npm")
            run(["apt-get", "update", "-qq"], timeout=600)
            run(["apt-get", "install", "-y", "-qq", "npm"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                timeout=900)
        chp = shutil.which("configurable-http-proxy")
        if not chp:
            say("  configurable-http-proxy not found: npm install -g configurable-http-proxy")
            run(["npm", "install", "-g", "--no-fund", "--no-audit", "configurable-http-proxy"], timeout=600)
            npm_bin = Path(run(["npm", "prefix", "-g"]).stdout.strip()) / "bin"
            chp = shutil.which("configurable-http-proxy") or str(npm_bin / "configurable-http-proxy")
        self.chp = chp
        say(f"  configurable-http-proxy {run([chp, '--version']).stdout.strip()} ({chp})")

        # The course, as the guide's clone in /opt/kdlab/src: this working tree's files.
        files = run(["git", "-C", REPO, "ls-files", "-co", "--exclude-standard", "-z"]).stdout.split("\0")
        for rel in filter(None, files):
            source = REPO / rel
            if source.is_file():
                target = self.src / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)

        # The environment (guide step 1): a venv over this Python, JupyterHub from pip, kdlab from the course.
        run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", self.venv], timeout=300)
        site = Path(run([self.venv / "bin" / "python", "-c",
                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
        if sys.prefix != sys.base_prefix:     # this Python is itself a venv: see its packages too
            import site as site_module
            (site / "kdlab_rehearsal_base.pth").write_text("\n".join(site_module.getsitepackages()) + "\n")
        for sub in ("share/jupyter", "etc/jupyter"):   # JupyterLab's extensions and settings, as pip put them
            if (Path(sys.prefix) / sub).is_dir():
                shutil.copytree(Path(sys.prefix) / sub, self.venv / sub, dirs_exist_ok=True, symlinks=True)
        # The commands of the packages already installed (jupyter, nbgrader, ...), bound to this environment's
        # Python as a fresh install would write them (else `jupyter ... --sys-prefix` would change the base's).
        base_bin = Path(sys.prefix) / "bin"
        pythons = {str(base_bin / "python"), str(base_bin / Path(sys.executable).name), sys.executable,
                   os.path.realpath(sys.executable)}
        for script in base_bin.iterdir():
            target = self.venv / "bin" / script.name
            if target.exists() or not script.is_file():
                continue
            try:
                first, rest = script.read_text().split("\n", 1)
            except (UnicodeDecodeError, ValueError):
                continue
            if first.startswith("#!") and first[2:].strip() in pythons:
                target.write_text(f"#!{self.venv / 'bin' / 'python'}\n{rest}")
                target.chmod(0o755)
        pip = [self.venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        run([*pip, "jupyterhub>=5.3"], timeout=900)
        # requirements.txt installs kdlab editable (-e .); the guide then installs it as a package and closes the
        # sources to learners (they hold the answer key): the same here.
        run([*pip, "--no-deps", "--no-build-isolation", self.src], timeout=600)
        shutil.rmtree(self.src / "build", ignore_errors=True)
        os.chmod(self.src, 0o700)
        version = run([self.venv / "bin" / "jupyterhub", "--version"]).stdout.strip()
        say(f"  JupyterHub {version} in {self.venv}")

        # Other accounts must be able to run this environment's Python.
        self._open_path_to_python()
        say("  other accounts can run it")

        # The environment's commands (kdlab, nbgrader, jupyter) in every login shell: JupyterLab's terminals start
        # one, and /etc/profile resets PATH, so the PATH the hub's configuration sets does not reach them.
        self.profile = Path("/etc/profile.d") / f"{self.scratch.name}.sh"
        self.profile.write_text(f'# kdlab workshop rehearsal (removed at its end)\nexport PATH="{self.venv / "bin"}:$PATH"\n')

        # Guide step 2: learners get the Assignments tab only.
        jupyter = self.venv / "bin" / "jupyter"
        run([jupyter, "server", "extension", "disable", "--sys-prefix", "nbgrader.server_extensions.formgrader"])
        for ext in ("formgrader", "create-assignment", "course-list"):
            run([jupyter, "labextension", "disable", "--level=sys_prefix", f"@jupyter/nbgrader:{ext}"])

    def _open_path_to_python(self) -> None:
        probe = [self.venv / "bin" / "python", "-c", "import kdlab, torch, nbgrader, jupyterhub"]
        if run(["runuser", "-u", "nobody", "--", *probe], check=False).returncode == 0:
            return
        targets = {Path(os.path.realpath(self.venv / "bin" / "python")), Path(sys.prefix), Path(sys.base_prefix)}
        import site as site_module
        targets.update(Path(p) for p in site_module.getsitepackages())
        for target in sorted(targets):
            for d in [*reversed(target.parents), target]:
                if d.is_dir() and not d.stat().st_mode & stat.S_IXOTH:
                    mode = stat.S_IMODE(d.stat().st_mode)
                    self.modes.append((d, mode))
                    os.chmod(d, mode | stat.S_IXOTH)
                    say(f"  {d}: mode {mode:o} -> {mode | stat.S_IXOTH:o} for the rehearsal (others may enter, "
                        "not list; restored at cleanup)")
        p = run(["runuser", "-u", "nobody", "--", *probe], check=False)
        if p.returncode != 0:
            raise Failed(f"another account cannot run {probe[0]}:\n{p.stderr[-2000:]}")

    # ------------------------------------------------------------------------- 2. accounts, configs, the course
    def setup(self) -> None:
        env_bin = self.venv / "bin"
        # Guide step 3: the exchange, the configuration (scratch paths; see the module docstring).
        self.exchange.mkdir()
        os.chmod(self.exchange, 0o1777)
        etc_hub = self.scratch / "etc-jupyterhub"
        etc_hub.mkdir()
        shutil.copy(HUB_DOCS / "jupyterhub_config.py", etc_hub / "jupyterhub_config.py")
        p = self.ports = {name: free_port() for name in ("public", "hub", "proxy_api", "grader")}
        (self.scratch / "hub").mkdir()
        (etc_hub / "rehearsal_config.py").write_text(f'''\
# The rehearsal's overrides of docs/jupyterhub/jupyterhub_config.py (run first, as shipped): ports and state only.
c = get_config()  # noqa: F821
SHIPPED = "{etc_hub / 'jupyterhub_config.py'}"
exec(compile(open(SHIPPED).read(), SHIPPED, "exec"), {{"get_config": get_config, "__file__": SHIPPED}})  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{p['public']}"                 # shipped: http://:8000
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{p['hub']}"                # default 8081
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{p['proxy_api']}"     # default 8001
c.ConfigurableHTTPProxy.pid_file = "{self.scratch}/hub/jupyterhub-proxy.pid"
c.JupyterHub.services[0]["url"] = "http://127.0.0.1:{p['grader']}"      # shipped: GRADER_PORT 9999
c.JupyterHub.cookie_secret_file = "{self.scratch}/hub/jupyterhub_cookie_secret"   # shipped: /srv/jupyterhub/...
c.JupyterHub.db_url = "sqlite:///{self.scratch}/hub/jupyterhub.sqlite"
''')
        global_nbgrader = self.venv / "etc" / "jupyter" / "nbgrader_config.py"
        global_nbgrader.parent.mkdir(parents=True, exist_ok=True)
        global_nbgrader.write_text((HUB_DOCS / "nbgrader_config.py").read_text()
                                   + f'\n# rehearsal: the scratch exchange instead of /srv/nbgrader/exchange\n'
                                     f'c.Exchange.root = "{self.exchange}"\n')
        roster = self.scratch / "roster.txt"
        roster.write_text(f"# the rehearsal's roster (format: docs/jupyterhub/roster.example.txt)\n"
                          f"instructor {INSTRUCTOR}\nlearner {RIGHT}\nlearner {WRONG}\n")
        os.chmod(roster, 0o644)

        # Guide step 4: one Linux account per person in the roster, homes closed to the others.
        names = [line.split()[1] for line in roster.read_text().splitlines()
                 if line.strip() and not line.startswith("#") and len(line.split()) == 2]
        for name in names:
            run(["useradd", "-m", "-s", "/bin/bash", name])
            self.created_users.append(name)
            os.chmod(pwd.getpwnam(name).pw_dir, 0o700)
        # Guide step 5: the grader account, the course, its nbgrader settings, the formgrader.
        run(["useradd", "-m", "-s", "/bin/bash", GRADER])
        self.created_users.append(GRADER)
        home = Path(pwd.getpwnam(GRADER).pw_dir)
        os.chmod(home, 0o700)
        shutil.copytree(self.src, home / "kdlab", ignore=shutil.ignore_patterns("*.egg-info", "build"))
        (home / ".jupyter" / "labconfig").mkdir(parents=True)
        shutil.copy(HUB_DOCS / "grader_nbgrader_config.py", home / ".jupyter" / "nbgrader_config.py")
        # The instructor tools, back on for the grader only. (`jupyter server extension enable --user` and
        # `jupyter labextension enable --level=user` cannot: the first only toggles an extension already named at
        # the user level, the second refuses a plugin locked at the sys-prefix level; both exit 0.)
        shutil.copy(HUB_DOCS / "grader_jupyter_server_config.json", home / ".jupyter" / "jupyter_server_config.json")
        shutil.copy(HUB_DOCS / "grader_page_config.json", home / ".jupyter" / "labconfig" / "page_config.json")
        run(["chown", "-R", f"{GRADER}:", home])
        env = {"PATH": f"{env_bin}:/usr/local/bin:/usr/bin:/bin"}
        say(f"  accounts {', '.join(self.created_users)} created; nbgrader generate_assignment {ASSIGNMENT} as {GRADER}")
        run([env_bin / "nbgrader", "generate_assignment", ASSIGNMENT, "--force"], user=GRADER, cwd=home / "kdlab",
            env=env, timeout=600)
        self.passwords = {"learner": secrets.token_urlsafe(12), "instructor": secrets.token_urlsafe(32)}
        self.roster = roster

    # ------------------------------------------------------------------------- 3. the hub
    def start_hub(self) -> None:
        env_bin = self.venv / "bin"
        chp_dir = str(Path(self.chp).parent)
        env = {
            "PATH": f"{env_bin}:{chp_dir}:/usr/local/bin:/usr/bin:/bin",
            "KDLAB_ROSTER": str(self.roster),
            "KDLAB_ENV_BIN": str(env_bin),
            "KDLAB_LEARNER_PASSWORD": self.passwords["learner"],
            "KDLAB_INSTRUCTOR_PASSWORD": self.passwords["instructor"],
            "LANG": "C.UTF-8",
            "HOME": "/root",
        }
        log = open(self.scratch / "hub" / "jupyterhub.log", "w")
        self.hub = subprocess.Popen(
            [env_bin / "jupyterhub", "-f", self.scratch / "etc-jupyterhub" / "rehearsal_config.py"],
            cwd=self.scratch / "hub", env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        import requests
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.hub.poll() is not None:
                raise Failed(f"JupyterHub exited {self.hub.returncode}:\n{self.hub_log_tail()}")
            try:
                r = requests.get(f"{self.hub_url}/hub/api", timeout=5)
                if r.status_code == 200:
                    say(f"  JupyterHub {r.json()['version']} answers at {self.hub_url}")
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        else:
            raise Failed(f"JupyterHub did not answer within 90 s:\n{self.hub_log_tail()}")
        # The grader service is started by the hub: wait until the instructor can reach it (below).

    # ------------------------------------------------------------------------- HTTP helpers
    def api(self, method: str, path: str, who: str, *, expect=(200,), **kw):
        import requests
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {self.tokens[who]}"
        r = requests.request(method, f"{self.hub_url}{path}", headers=headers, timeout=kw.pop("timeout", 120),
                             allow_redirects=False, **kw)
        if expect and r.status_code not in expect:
            raise Failed(f"{who}: {method} {path} -> {r.status_code} (expected {expect}): {r.text[:1500]}")
        return r

    def login(self, name: str, password: str) -> None:
        """Log in through the hub's login form, then ask the hub's API for a token of one's own."""
        import requests
        s = requests.Session()
        s.get(f"{self.hub_url}/hub/login", timeout=30)
        xsrf = s.cookies.get("_xsrf")
        r = s.post(f"{self.hub_url}/hub/login", data={"username": name, "password": password, "_xsrf": xsrf},
                   allow_redirects=False, timeout=30)
        if r.status_code != 302:
            raise Failed(f"{name}: login refused ({r.status_code}): {r.text[:500]}")
        r = s.post(f"{self.hub_url}/hub/api/users/{name}/tokens", json={"note": "rehearsal", "expires_in": 3600},
                   headers={"X-XSRFToken": s.cookies.get("_xsrf") or xsrf, "Referer": f"{self.hub_url}/hub/token"},
                   timeout=30)
        if r.status_code != 201:
            raise Failed(f"{name}: token request -> {r.status_code}: {r.text[:500]}")
        self.tokens[name] = r.json()["token"]

    def start_server(self, name: str) -> None:
        self.api("POST", f"/hub/api/users/{name}/server", name, expect=(201, 202), timeout=120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            model = self.api("GET", f"/hub/api/users/{name}", name).json()
            if model.get("server") and not model.get("pending"):
                self.api("GET", f"/user/{name}/api/status", name)
                return
            time.sleep(1)
        raise Failed(f"{name}'s server did not start within 120 s:\n{self.hub_log_tail()}")

    def assignments(self, name: str, action: str | None = None) -> list:
        data = {"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}
        if action:
            r = self.api("POST", f"/user/{name}/assignments/{action}", name, data=data)
        else:
            r = self.api("GET", f"/user/{name}/assignments", name, params={"course_id": COURSE_ID})
        out = r.json()
        if not out.get("success"):
            raise Failed(f"{name}: assignments {action or 'list'} failed: {str(out.get('value'))[:2000]}")
        return out["value"]

    def formgrader(self, action: str) -> dict:
        r = self.api("POST", f"/services/{COURSE_ID}/formgrader/api/assignment/{ASSIGNMENT}/{action}", INSTRUCTOR,
                     timeout=600)
        out = r.json()
        if not out.get("success"):
            raise Failed(f"formgrader {action} failed: {str(out)[:3000]}")
        return out

    def terminal(self, prefix: str, who: str, command: str, timeout: float = 600) -> tuple[int, str]:
        """Type ``command`` into a new terminal of the server at ``prefix`` (as ``who``); its exit code and output."""
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        name = self.api("POST", f"{prefix}/api/terminals", who).json()["name"]
        url = f"ws://127.0.0.1:{self.ports['public']}{prefix}/terminals/websocket/{name}"

        async def talk():
            conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {self.tokens[who]}"}))
            await conn.write_message(json.dumps(["stdin", f"{command}; echo __KDR_RC=$?\r"]))
            out, end = "", time.monotonic() + timeout
            while time.monotonic() < end:
                msg = await asyncio.wait_for(conn.read_message(), timeout=max(1, end - time.monotonic()))
                if msg is None:
                    break
                kind, *rest = json.loads(msg)
                if kind == "stdout":
                    out += rest[0]
                    m = re.search(r"__KDR_RC=(\d+)", out)
                    if m:
                        conn.close()
                        return int(m.group(1)), out[:m.start()]
            conn.close()
            raise Failed(f"{who}: no end of `{command}` in the terminal within {timeout} s:\n{out[-3000:]}")

        try:
            code, out = asyncio.run(talk())
        finally:
            self.api("DELETE", f"{prefix}/api/terminals/{name}", who, expect=(204, 404))
        text = ANSI.sub("", out)
        lines = text.splitlines()
        if lines and command[:30] in lines[0]:     # the echo of the typed command
            lines = lines[1:]
        return code, "\n".join(lines).strip()

    # ------------------------------------------------------------------------- 4. the workshop
    def answer(self, name: str, right: bool) -> None:
        """Write an answer into the learner's fetched notebook through their server's contents API."""
        sol = json.loads((self.src_for_answers / "solutions" / ASSIGNMENT / f"{LESSON}.ipynb").read_text())
        source = next("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in sol["cells"]
                      if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == EXERCISE)
        body = "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line
                         and "### END SOLUTION" not in line)
        if not right:       # the classic mistake: the temperature is ignored
            broken = body.replace("scaled = logits / T", "scaled = logits")
            if broken == body:
                raise Failed(f"the solution of {EXERCISE} no longer has 'scaled = logits / T' to break")
            body = broken
        body = f"# {name}'s answer\n{body}"
        path = f"/user/{name}/api/contents/{ASSIGNMENT}/{LESSON}.ipynb"
        model = self.api("GET", path, name).json()
        nb = model["content"]
        cells = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == EXERCISE]
        if len(cells) != 1 or "NotImplementedError" not in "".join(cells[0]["source"]):
            raise Failed(f"{name}'s fetched {LESSON} has no unanswered {EXERCISE} cell")
        cells[0]["source"] = body
        self.api("PUT", path, name, json={"type": "notebook", "format": "json", "content": nb}, expect=(200, 201))
        back = self.api("GET", path, name).json()["content"]
        if f"# {name}'s answer" not in json.dumps(back):
            raise Failed(f"{name}'s answer was not saved")

    def workshop(self) -> None:
        self.src_for_answers = self.src        # the course as copied at the start
        with Step("log in: everyone with the shared password, then a token of their own from the hub's API"):
            self.login(INSTRUCTOR, self.passwords["instructor"])
            for name in LEARNERS:
                self.login(name, self.passwords["learner"])
            me = self.api("GET", "/hub/api/user", INSTRUCTOR).json()
            if not me.get("admin") or f"formgrade-{COURSE_ID}" not in me.get("groups", []):
                raise Failed(f"the instructor is not an admin in formgrade-{COURSE_ID}: {me}")
            for name in LEARNERS:
                me = self.api("GET", "/hub/api/user", name).json()
                if me.get("admin") or f"nbgrader-{COURSE_ID}" not in me.get("groups", []):
                    raise Failed(f"{name} is not a plain learner in nbgrader-{COURSE_ID}: {me}")
            say(f"  {INSTRUCTOR}: admin, group formgrade-{COURSE_ID}; {', '.join(LEARNERS)}: group nbgrader-{COURSE_ID}")

        with Step(f"instructor: the grader service '{COURSE_ID}' (the formgrader) answers"):
            deadline = time.monotonic() + 120
            while True:
                r = self.api("GET", f"/services/{COURSE_ID}/formgrader/api/assignments", INSTRUCTOR, expect=None)
                if r.status_code == 200:
                    break
                if time.monotonic() > deadline:
                    raise Failed(f"the grader service did not answer: {r.status_code} {r.text[:500]}\n"
                                 f"{self.hub_log_tail()}")
                time.sleep(2)
            names = [a["name"] for a in r.json()]
            if ASSIGNMENT not in names:
                raise Failed(f"the formgrader does not list {ASSIGNMENT}: {names}")
            say(f"  formgrader lists {names}")

        with Step(f"instructor: release {ASSIGNMENT} (formgrader API: nbgrader release_assignment)"):
            self.formgrader("release")

        with Step("learners: start their servers through the hub's API"):
            for name in LEARNERS:
                self.start_server(name)
                say(f"  /user/{name}/ is running as the Linux user {name}")

        with Step("JupyterLab: learners get the Assignments tab only; the grader service has the instructor tools"):
            tools = {f"@jupyter/nbgrader:{x}" for x in ("formgrader", "create-assignment", "course-list")}
            for name, prefix in [(LEARNERS[0], f"/user/{LEARNERS[0]}"), (INSTRUCTOR, f"/services/{COURSE_ID}")]:
                html = self.api("GET", f"{prefix}/lab", name).text
                m = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
                if not m:
                    raise Failed(f"{prefix}/lab has no page config")
                config = json.loads(m.group(1))
                disabled = set(config.get("disabledExtensions", []))
                if name == INSTRUCTOR and disabled & tools:
                    raise Failed(f"the grader service's JupyterLab hides {sorted(disabled & tools)}")
                if name != INSTRUCTOR and not tools <= disabled:
                    raise Failed(f"a learner's JupyterLab shows {sorted(tools - disabled)}")
                say(f"  {prefix}/lab: instructor tools {'shown' if name == INSTRUCTOR else 'disabled'}"
                    f" ({', '.join(sorted(tools & disabled)) or 'none disabled'})")
            r = self.api("GET", f"/user/{LEARNERS[0]}/formgrader/api/assignments", LEARNERS[0], expect=None)
            if r.status_code != 404:
                raise Failed(f"a learner's server answers the formgrader API: {r.status_code}")
            say(f"  /user/{LEARNERS[0]}/formgrader/api/assignments: HTTP 404 (no formgrader in learners' servers)")

        with Step(f"learners: fetch {ASSIGNMENT} (Assignments API in their own server)"):
            for name in LEARNERS:
                listed = self.assignments(name)
                if not any(a["assignment_id"] == ASSIGNMENT and a["status"] == "released" for a in listed):
                    raise Failed(f"{name} does not see {ASSIGNMENT} released: {listed}")
                self.assignments(name, "fetch")
                files = [e["name"] for e in self.api("GET", f"/user/{name}/api/contents/{ASSIGNMENT}", name)
                         .json()["content"]]
                if f"{LESSON}.ipynb" not in files:
                    raise Failed(f"{name}'s fetched folder lacks {LESSON}.ipynb: {files}")
                say(f"  {name}: ~/{ASSIGNMENT}/ holds {', '.join(sorted(files))}")

        with Step(f"learners: answer {EXERCISE} ({RIGHT} right, {WRONG} wrong: T ignored) and submit"):
            for name in LEARNERS:
                self.answer(name, right=(name == RIGHT))
                self.assignments(name, "submit")
                listed = self.assignments(name)
                if not any(a.get("status") == "submitted" and a.get("submissions") for a in listed):
                    raise Failed(f"{name}'s submission is not listed: {listed}")
                say(f"  {name}: submitted")

        with Step(f"instructor: collect (formgrader API: nbgrader collect)"):
            self.formgrader("collect")

        grader_prefix = f"/services/{COURSE_ID}"
        with Step("instructor: kdlab grade submitted --out grading --into-course, in the grader service's terminal"):
            code, out = self.terminal(grader_prefix, INSTRUCTOR,
                                      "cd ~/kdlab && kdlab grade submitted --out grading --into-course")
            for line in out.splitlines()[-4:]:
                say(f"  | {line}")
            if code != 0:
                raise Failed(f"kdlab grade exited {code}:\n{out[-3000:]}")
            import csv
            grades_csv = Path(pwd.getpwnam(GRADER).pw_dir) / "kdlab" / "grading" / "grades.csv"
            rows = list(csv.reader(grades_csv.read_text().splitlines()))
            header, rows = rows[0], rows[1:]
            grades = {(r[header.index("student")], r[header.index("notebook")]):
                      (float(r[header.index("score")]), float(r[header.index("max_score")]), r[header.index("status")])
                      for r in rows}
            self.results["grades"] = grades
            mine = {s: grades.get((s, LESSON)) for s in LEARNERS}
            for s, g in mine.items():
                say(f"  grades.csv: {s} {LESSON}: {g[0]:g} / {g[1]:g} ({g[2]})" if g else f"  {s}: no row")
            if not mine[RIGHT] or not mine[WRONG] or mine[RIGHT][2] != "ok" or mine[WRONG][2] != "ok":
                raise Failed(f"both learners must be graded ok: {mine}")
            if not mine[RIGHT][0] > mine[WRONG][0] == 0:
                raise Failed(f"{RIGHT} (right) must score above {WRONG} (wrong, 0): {mine}")

        with Step("instructor: release feedback (formgrader API: nbgrader release_feedback)"):
            self.formgrader("release_feedback")

        with Step("learners: fetch feedback and read their own page"):
            for name in LEARNERS:
                self.assignments(name, "fetch_feedback")
                listed = self.assignments(name)
                paths = [sub.get("local_feedback_path") for a in listed for sub in a.get("submissions", [])
                         if sub.get("local_feedback_path")]
                if not paths:
                    raise Failed(f"{name} fetched no feedback: {listed}")
                folder = self.api("GET", f"/user/{name}/api/contents/{paths[-1]}", name).json()
                pages = [e["path"] for e in folder["content"] if e["name"] == f"{LESSON}.html"]
                if not pages:
                    raise Failed(f"{name}'s feedback folder {paths[-1]} lacks {LESSON}.html")
                html = self.api("GET", f"/user/{name}/api/contents/{pages[0]}", name,
                                params={"type": "file", "format": "text"}).json()["content"]
                m = SCORE.search(html)
                if not m:
                    raise Failed(f"{name}'s feedback page shows no score")
                score = (float(m.group(1)), float(m.group(2)))
                expected = self.results["grades"][(name, LESSON)][:2]
                other = next(o for o in LEARNERS if o != name)
                if score != expected:
                    raise Failed(f"{name}'s feedback says {score}, grades.csv {expected}")
                if f"# {name}'s answer" not in html or other in html:
                    raise Failed(f"{name}'s feedback page is not {name}'s alone (own answer shown: "
                                 f"{f'# {name}' in html}; {other} named: {other in html})")
                self.results.setdefault("feedback", {})[name] = (pages[0], score)
                say(f"  {name}: ~/{pages[0]}: Score {score[0]:g} / {score[1]:g}; own answer shown, {other} nowhere")

    # ------------------------------------------------------------------------- 5. refusals
    def refusals(self) -> None:
        alan_page = self.results["feedback"][RIGHT][0]
        with Step(f"refused: {WRONG} reaching {RIGHT}'s feedback, the exchange's feedback, the answer key"):
            r = self.api("GET", f"/user/{RIGHT}/api/contents/{alan_page}", WRONG, expect=None,
                         params={"type": "file", "format": "text"})
            if r.status_code not in (403, 404) or "Score" in r.text:
                raise Failed(f"{WRONG}'s token on {RIGHT}'s server: {r.status_code} {r.text[:300]}")
            say(f"  {WRONG}'s token, GET /user/{RIGHT}/api/contents/{alan_page}: HTTP {r.status_code}")
            r = self.api("GET", f"/hub/api/users/{RIGHT}/tokens", WRONG, expect=None)
            if r.status_code not in (403, 404):
                raise Failed(f"{WRONG} listing {RIGHT}'s tokens: {r.status_code}")
            say(f"  {WRONG}'s token, GET /hub/api/users/{RIGHT}/tokens: HTTP {r.status_code}")
            r = self.api("GET", f"/services/{COURSE_ID}/formgrader/api/assignments", WRONG, expect=None)
            if r.status_code not in (403, 404) or ASSIGNMENT in r.text:
                raise Failed(f"{WRONG} reached the grader service: {r.status_code} {r.text[:300]}")
            say(f"  {WRONG}'s token, the grader service /services/{COURSE_ID}/formgrader/api/assignments: "
                f"HTTP {r.status_code}")
            # In the learner's own terminal (their JupyterLab's Terminal), as their Linux user:
            mine = f"/user/{WRONG}"
            attempts = [
                (f"{RIGHT}'s fetched feedback", f"cat {shlex.quote(f'/home/{RIGHT}/{alan_page}')}"),
                (f"{RIGHT}'s home", f"ls /home/{RIGHT}"),
                ("the exchange's feedback folder", f"ls {self.exchange}/{COURSE_ID}/feedback"),
                ("the exchange's hand-ins", f"ls {self.exchange}/{COURSE_ID}/inbound"),
                ("the grader's course (solutions, hidden tests)",
                 f"cat /home/{GRADER}/kdlab/solutions/{ASSIGNMENT}/{LESSON}.ipynb"),
                ("the environment's course sources", f"ls {self.src}/solutions"),
            ]
            for what, command in attempts:
                code, out = self.terminal(mine, WRONG, command + " 2>&1 >/dev/null", timeout=60)
                first = next((line for line in out.splitlines() if "Permission denied" in line), "")
                if code == 0 or not first:
                    raise Failed(f"{WRONG}'s terminal could read {what}: `{command}` -> {out[:500]}")
                say(f"  {WRONG}'s terminal, {what}: `{command}` -> {first}")
            # nbgrader's own fetch_feedback brings a learner only their own pages.
            self.assignments(WRONG, "fetch_feedback")
            code, out = self.terminal(mine, WRONG, f"grep -rl \"{RIGHT}'s answer\" ~/{ASSIGNMENT} | wc -l", timeout=60)
            if out.strip().splitlines()[-1:] != ["0"]:
                raise Failed(f"{WRONG}'s home holds {RIGHT}'s answer: {out}")
            say(f"  {WRONG}'s fetch_feedback again: nothing of {RIGHT}'s in ~/{ASSIGNMENT}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", help="copy the hub's log here before cleaning up")
    parser.add_argument("--keep", action="store_true", help="leave the scratch folder (accounts are still removed)")
    args = parser.parse_args(argv)
    rehearsal = Rehearsal(args)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    ok = False
    try:
        with Step("preconditions: root, bubblewrap, none of the rehearsal's accounts exists"):
            rehearsal.preconditions()
        with Step("install: npm, configurable-http-proxy, JupyterHub and kdlab in a venv, nbgrader's extensions"):
            rehearsal.install()
        with Step("set up: exchange, configs (docs/jupyterhub/ + overrides), roster accounts, grader, the course"):
            rehearsal.setup()
        with Step("start JupyterHub with docs/jupyterhub/jupyterhub_config.py"):
            rehearsal.start_hub()
        rehearsal.workshop()
        rehearsal.refusals()
        ok = True
    except Failed as exc:
        say(f"FAILED: {exc}")
    except KeyboardInterrupt:
        say("interrupted")
    except Exception:
        say("FAILED with an error:\n" + traceback.format_exc())
    finally:
        if not ok and rehearsal.scratch:
            say("hub log (last lines):\n" + rehearsal.hub_log_tail(40))
        rehearsal.cleanup()
    ok = ok and not rehearsal.cleanup_problems
    total = time.monotonic() - T0
    if ok:
        g = rehearsal.results["grades"]
        say(f"REHEARSAL PASSED in {total:.0f} s: {RIGHT} {g[(RIGHT, LESSON)][0]:g}/{g[(RIGHT, LESSON)][1]:g}, "
            f"{WRONG} {g[(WRONG, LESSON)][0]:g}/{g[(WRONG, LESSON)][1]:g} on {LESSON}; each read their own feedback, "
            "the other learner's was refused")
    else:
        say(f"REHEARSAL FAILED after {total:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
