"""JupyterHub for a kdlab workshop or course: learners, instructors, a shared grader, nbgrader's exchange.

One Linux machine, every person a system account, JupyterHub's default
LocalProcessSpawner: the setup of nbgrader's own "one class, multiple graders"
demo, on JupyterHub 5.3 or later (role-based access; the shared-password
authenticator). docs/instructors.md, section "Serving many learners", walks
through it; in short:

    /srv/kdlab/roster.txt                      who is who (see roster.example.txt)
    /etc/jupyterhub/jupyterhub_config.py       this file
    /etc/jupyter/nbgrader_config.py            nbgrader_config.py (course id, exchange)
    /home/grader-kdlab/.jupyter/nbgrader_config.py   grader_nbgrader_config.py
    /home/grader-kdlab/.jupyter/jupyter_server_config.json     grader_jupyter_server_config.json
    /home/grader-kdlab/.jupyter/labconfig/page_config.json     grader_page_config.json
    /home/grader-kdlab/kdlab                   a clone of the course repository
    /srv/nbgrader/exchange                     the exchange (mode 1777)

    KDLAB_LEARNER_PASSWORD=... KDLAB_INSTRUCTOR_PASSWORD=... \\
        jupyterhub -f /etc/jupyterhub/jupyterhub_config.py

What it sets up:

* **who may log in**: the names in the roster; instructors are hub admins.
  Authentication is JupyterHub's shared-password authenticator: one password
  for learners, a longer one for instructors. That suits a workshop, not an
  exam: anyone with the learner password can log in as any learner. For a
  graded course, swap in your institution's authenticator (for example
  ``oauthenticator``), keeping the rest.
* **the grader service**: a Jupyter server named after the course, running as
  the system account ``grader-kdlab`` in its home, where the course
  repository is cloned. Instructors open it from the hub's Services menu
  (nbgrader's formgrader: release, collect, autograde, manual grading,
  feedback). Its group and role follow nbgrader's naming rules
  (``formgrade-<course id>``).
* **the learners' servers**: JupyterLab, with kdlab's settings in the
  environment (fast mode by default, the shared data folder, one thread each
  so that a room of learners shares the cores).

Tested in kdlab's test suite (tests/docs/test_docs.py): this file executes
with a stub ``get_config``, its roster parsing, its consistency with the
nbgrader configs beside it, and, when JupyterHub is importable, that every
value it sets passes JupyterHub's own trait validation. A real hub runs it in
scripts/rehearse_workshop.py (opt-in: KDLAB_REHEARSAL=1 python -m pytest
tests/grading/test_workshop_rehearsal.py, as root): real Linux accounts, a class
worked through the hub's API, from release to each learner's own feedback.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

# ----------------------------------------------------------------------------- the course
COURSE_ID = "kdlab"                   # must equal CourseDirectory.course_id in nbgrader_config.py
GRADER = f"grader-{COURSE_ID}"        # the system account that holds the course and runs the formgrader
GRADER_PORT = 9999
ROSTER = Path(os.environ.get("KDLAB_ROSTER", "/srv/kdlab/roster.txt"))
ENV_BIN = os.environ.get("KDLAB_ENV_BIN", "/opt/kdlab/bin")   # the Python environment holding jupyterhub,
                                                               # jupyterlab, nbgrader and kdlab
DATA = "/srv/kdlab/data"              # MNIST and Fashion-MNIST, downloaded once: KDLAB_DATA
LEARNERS_FAST = True                  # KDLAB_FAST=1 for learners: every lesson in seconds on a shared machine


def read_roster(path: Path) -> tuple[list, list]:
    """``(instructors, learners)`` from lines ``instructor NAME`` / ``learner NAME``; ``#`` starts a comment."""
    instructors, learners = [], []
    if not path.is_file():
        raise SystemExit(f"kdlab hub: no roster at {path}: write one (see roster.example.txt) or set KDLAB_ROSTER")
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("instructor", "learner"):
            raise SystemExit(f"kdlab hub: {path}:{number}: expected 'instructor NAME' or 'learner NAME', got {raw!r}")
        role, name = parts
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or name != name.lower():
            raise SystemExit(f"kdlab hub: {path}:{number}: {name!r} is not a usable account name "
                             "(lowercase letters, digits, '-', '_', '.')")
        (instructors if role == "instructor" else learners).append(name)
    both = set(instructors) & set(learners)
    if both:
        raise SystemExit(f"kdlab hub: {path}: listed both as instructor and learner: {', '.join(sorted(both))}")
    if GRADER in instructors + learners:
        raise SystemExit(f"kdlab hub: {path}: {GRADER} is the grader's service account, not a person")
    return instructors, learners


INSTRUCTORS, LEARNERS = read_roster(ROSTER)

# ----------------------------------------------------------------------------- who may log in
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ.get("KDLAB_LEARNER_PASSWORD")         # 8+ characters
c.SharedPasswordAuthenticator.admin_password = os.environ.get("KDLAB_INSTRUCTOR_PASSWORD")     # 32+ characters
c.Authenticator.allowed_users = set(INSTRUCTORS + LEARNERS)
c.Authenticator.admin_users = set(INSTRUCTORS)

# ----------------------------------------------------------------------------- groups, roles, the grader service
FORMGRADE_GROUP = f"formgrade-{COURSE_ID}"   # nbgrader's naming rule: instructors of the course
c.JupyterHub.load_groups = {
    FORMGRADE_GROUP: {"users": list(INSTRUCTORS)},
    f"nbgrader-{COURSE_ID}": {"users": list(LEARNERS)},   # nbgrader's naming rule: learners of the course
}
c.JupyterHub.load_roles = [
    {   # instructors reach the grader service (the formgrader) and see it in the Services menu
        "name": FORMGRADE_GROUP,
        "groups": [FORMGRADE_GROUP],
        "scopes": [f"access:services!service={COURSE_ID}", "list:services", f"read:services!service={COURSE_ID}"],
    },
    {   # a user's server may act as its user (nbgrader's course list asks the hub for services)
        "name": "server",
        "scopes": ["inherit"],
    },
]
c.JupyterHub.services = [
    {
        "name": COURSE_ID,   # nbgrader: the service's name must be the course id
        "url": f"http://127.0.0.1:{GRADER_PORT}",
        "command": [f"{ENV_BIN}/jupyterhub-singleuser", "--debug"],
        "user": GRADER,
        "cwd": f"/home/{GRADER}",
        "environment": {
            "JUPYTERHUB_DEFAULT_URL": "/lab",
            "PATH": f"{ENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "KDLAB_DATA": DATA,
            "OMP_NUM_THREADS": "1",   # autograding kernels: one thread each
        },
    },
]

# ----------------------------------------------------------------------------- the learners' servers
c.Spawner.cmd = [f"{ENV_BIN}/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    "KDLAB_DATA": DATA,
    "KDLAB_FAST": "1" if LEARNERS_FAST else "",
    "OMP_NUM_THREADS": "1",
    "PATH": f"{ENV_BIN}:/usr/local/bin:/usr/bin:/bin",
}
c.Spawner.notebook_dir = "~"
c.JupyterHub.bind_url = "http://:8000"   # put it behind HTTPS: ssl_key / ssl_cert below, or a reverse proxy
# c.JupyterHub.ssl_key = "/etc/letsencrypt/live/HOST/privkey.pem"
# c.JupyterHub.ssl_cert = "/etc/letsencrypt/live/HOST/fullchain.pem"
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
c.JupyterHub.shutdown_on_logout = True            # a learner's server stops when they log out
