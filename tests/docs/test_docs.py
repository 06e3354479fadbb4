"""The cheat sheet, the instructor guide and the JupyterHub kit: links, numbers, commands, configs, the exchange.

* every link resolves, every lesson section named exists, every number in a
  table is in the section (or the JSON of the command) it cites, the loss in
  code is kdlab's, every command documented parses;
* the files of docs/jupyterhub/ load as their programs load them and agree
  with each other and with the course; with JupyterHub installed, they pass
  its trait, role and scope validation;
* nbgrader's exchange round trip runs with those settings: release, fetch,
  submit, collect, autograde, feedback without hidden tests, release and
  fetch of the feedback; and ``kdlab grade`` on the collected hand-ins.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nbgrader_harness as h
from kdlab import course as manifest
from markdown_tools import broken_links, table_rows

DOCS = h.REPO / "docs"
CHEATSHEET = DOCS / "cheatsheet.md"
GUIDE = DOCS / "instructors.md"
HUB = DOCS / "jupyterhub"
POINTER = re.compile(r'\[([^\]]+)\]\(([^)\s]+\.ipynb)\), § "([^"]+)"')
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")


# ----------------------------------------------------------------------------- helpers

def numbers(text: str) -> set[str]:
    """Number tokens, commas inside numbers kept ("1,010"), a trailing ".0" dropped."""
    return {n[:-2] if n.endswith(".0") else n for n in NUMBER.findall(text)}


def section_text(notebook: Path, heading: str) -> str:
    """Everything from the heading ``heading`` to the next heading of the same or a higher level."""
    nb = h.load(notebook)
    lines = []
    for c in nb.cells:
        lines.extend((c.cell_type, line) for line in c.source.splitlines())
    start = level = None
    for i, (kind, line) in enumerate(lines):
        if kind == "markdown" and line.startswith("#") and line.lstrip("#").strip() == heading:
            start, level = i, len(line) - len(line.lstrip("#"))
            break
    if start is None:
        raise KeyError(f"{notebook.name} has no heading {heading!r}")
    out = []
    for kind, line in lines[start + 1:]:
        if kind == "markdown" and line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        out.append(line)
    return heading + "\n" + "\n".join(out)

def links_resolve(doc: Path) -> list[str]:
    """Broken links of ``doc``, and its pointers into the lessons that name no heading of them."""
    problems = broken_links(doc)
    text = doc.read_text()
    for name, link, heading in POINTER.findall(text):
        try:
            section_text((doc.parent / link).resolve(), heading)
        except KeyError as err:
            problems.append(str(err))
        lesson = re.match(r"Lesson (\d+)$", name)
        if lesson and not Path(link).name.startswith(f"{int(lesson.group(1)):02d}_"):
            problems.append(f"{name} links to {link}")
    return problems


def kdlab_commands(text: str) -> list[str]:
    """``kdlab ...`` commands: in code blocks (one per line) and in `backticks`."""
    found = []
    for block in re.findall(r"```(?:bash)?\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            m = re.search(r"(?:^|/)(kdlab (?:distill|experiment|grade|data)\b.*)$", line)
            if m:
                found.append(m.group(1))
    found += [c for c in re.findall(r"`(kdlab (?:distill|experiment|grade|data) [^`]+)`", text)]   # not a bare name
    return found


def parses(command: str) -> str | None:
    """None if ``command`` is accepted by kdlab's argument parser (nothing is run), else the error."""
    from kdlab.cli import build_parser

    import contextlib
    import io

    # A synopsis: placeholders stand for values, [optional parts] are dropped.
    placeholders = {"NAME": "soft-targets", "N": "2", "SUBMISSIONS": "hand-ins", "DIR": "out"}
    args = [placeholders.get(a, a) for a in shlex.split(re.sub(r"\[[^\]]*\]", "", command))[1:]]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as exc:
        if exc.code in (0, None):   # --help
            return None
        return f"{command}: {err.getvalue().strip() or exc}"
    return None


# ----------------------------------------------------------------------------- the cheat sheet

def test_cheatsheet_links_and_sections_resolve():
    assert links_resolve(CHEATSHEET) == []
    assert len(POINTER.findall(CHEATSHEET.read_text())) >= 40


def test_every_equation_and_landmark_number_is_in_the_section_it_cites():
    text = CHEATSHEET.read_text()
    start = text.index("## Key equations")
    end = text.index("### Our runs")
    problems, checked = [], 0
    for row in table_rows(text[start:end]):
        pointers = POINTER.findall(row[-1])
        if not pointers:
            continue   # a header row
        sections = " ".join(section_text((DOCS / link).resolve(), heading) for _, link, heading in pointers)
        available = numbers(sections)
        for cell in row[:-1]:
            for n in numbers(cell):
                checked += 1
                if n not in available:
                    problems.append(f"{n!r} (from {cell[:60]!r}) is in none of {[p[2] for p in pointers]}")
    assert checked >= 60
    assert problems == []


def test_the_landmark_numbers_are_the_papers():
    """The values the issue names, exactly as the cheat sheet states them."""
    text = CHEATSHEET.read_text()
    for fact in ["67 test errors", "146 test errors", "74 test errors", "$T = 20$", "98.6% of the 3s",
                 "raised by 3.5", "206 test errors, 133 of them on the 1,010 test 3s", "109 test errors, 14 on 3s",
                 "40% smaller, 60% faster, keeps 97%", "66M parameters", "110M", "77.0", "79.5",
                 "the distillation loss on the teacher's soft targets", "masked-language-modelling loss",
                 "cosine embedding loss", "58.9%, 61.1%, 60.8%", "44.5%, 57.0%"]:
        assert fact in text, fact


def our_runs() -> list[list[str]]:
    text = CHEATSHEET.read_text()
    section = text[text.index("### Our runs"):text.index("The same tables come out of the lessons")]
    return [r for r in table_rows(section) if r[0].startswith("`kdlab")]


def json_numbers(value) -> set[str]:
    out = set()
    if isinstance(value, dict):
        for v in value.values():
            out |= json_numbers(v)
    elif isinstance(value, list):
        for v in value:
            out |= json_numbers(v)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)):
        # As the docs write a value: itself, rounded, with thousands commas, or as a percentage.
        out |= numbers(repr(value)) | {str(round(value)), f"{round(value):,}"}
        for digits in range(1, 5):
            out |= numbers(f"{value:.{digits}f}") | numbers(f"{100 * value:.{digits}f}")
        out |= {str(round(100 * value))}
    elif isinstance(value, str):
        out |= numbers(value.replace("x", " "))
    return out


def test_our_run_numbers_are_in_the_json_their_command_wrote():
    rows = our_runs()
    assert len(rows) == 13
    for command_cell, values, json_cell in rows:
        command = re.match(r"`([^`]+)`", command_cell).group(1)
        assert parses(command) is None
        path = DOCS / re.search(r"\]\(([^)]+\.json)\)", json_cell).group(1)
        result = json.loads(path.read_text())
        assert result["seed"] == int(re.search(r"--seed (\d+)", command).group(1))
        assert result.get("fast_mode", result.get("fast")) is False and result.get("test_size", 10_000) == 10_000
        available = json_numbers(result) | numbers(command)
        missing = [n for n in numbers(command_cell + " " + values) if n not in available]
        assert missing == [], f"{command}: {missing} are not in {path.name}"


def test_our_runs_state_the_facts_that_matter():
    distill, soft = (json.loads((DOCS / "results" / name).read_text())
                     for name in ("distill-quick-mnist-s0.json", "soft-targets-s0.json"))
    assert distill["preset"] == "quick" and distill["dataset"] == "mnist"
    row = our_runs()[0][1]
    for role, label in (("teacher", "teacher"), ("student_scratch", "student alone"),
                        ("student_distilled", "student distilled")):
        assert f"{label} {distill[role]['test_errors']}" in row
    row = our_runs()[1][1]
    assert f"true labels {soft['test_errors']['true_labels']}" in row
    assert f"hard labels {soft['test_errors']['teacher_hard_labels']}" in row
    assert f"soft targets alone {soft['test_errors']['teacher_soft_targets']}" in row
    assert f"KD {soft['test_errors']['kd']}" in row and f"born-again {soft['test_errors']['born_again']}" in row
    assert ", ".join(map(str, soft["true_labels_seed_spread"]["test_errors"])) in row
    assert soft["environment"]["threads"] == 1 and "OMP_NUM_THREADS=1" in our_runs()[1][0]


def test_the_t_squared_ratio_quoted_is_the_json():
    """Lesson 3 (section 4 and what we learned, source and release) and the cheat sheet quote t-squared-s0.json."""
    r = json.loads((DOCS / "results" / "t-squared-s0.json").read_text())
    assert r["experiment"] == "t-squared" and r["seed"] == 0 and r["fast_mode"] is False and r["images"] == 10_000
    assert r["ratio_between"] == [1.0, 8.0] and r["temperatures"][0] == 1 and r["temperatures"][-1] == 64
    fresh, trained = (f"{r['ratio_with_t2'][k]:.2f} times" for k in ("fresh", "trained"))
    cheat = CHEATSHEET.read_text()
    why = next(row for row in table_rows(cheat) if row[0] == "why $T^2$")[1]
    assert fresh in why and trained in why and "kdlab experiment t-squared --seed 0" in why
    run = next(row for row in our_runs() if row[0].startswith("`kdlab experiment t-squared --seed 0`"))[1]
    assert fresh.replace(" times", "") in run and trained in run
    for folder in ("solutions", "notebooks"):
        lesson = h.REPO / folder / "part1_foundations" / "03_kd_loss.ipynb"
        section = section_text(lesson, "4. The gradient, and why the loss is multiplied by $T^2$")
        assert f"**{fresh}**" in section and f"**{trained}**" in section, folder
        assert "kdlab experiment t-squared --seed 0" in section and "docs/results/t-squared-s0.json" in section
        assert f"({r['teacher']['logit_gaps']['top2_mean']:.1f} on average" in section
        learned = section_text(lesson, "What we learned")
        assert fresh.replace(" times", "") in learned and trained.replace(" times", "") in learned, folder
        assert "same size whatever" not in section + learned, folder


def test_lesson_4_says_why_its_teacher_is_a_cnn_with_the_numbers_of_the_json():
    """The MLP teacher of lessons 2-3, the CNN of lessons 4-10, the student alone: as their commands wrote them."""
    result = {name: json.loads((DOCS / "results" / f"{name}.json").read_text())
              for name in ("t-squared-s0", "temperature-vs-width-s0", "distill-quick-mnist-s0")}
    mlp, cnn = (result[n]["teacher"]["test_errors"] for n in ("t-squared-s0", "temperature-vs-width-s0"))
    alone = result["distill-quick-mnist-s0"]["student_scratch"]["test_errors"]
    assert result["t-squared-s0"]["teacher"]["recipe"] == "mlp-teacher"
    assert result["temperature-vs-width-s0"]["teacher"]["recipe"] == "cnn-teacher"
    for folder in ("solutions", "notebooks"):
        lesson = h.REPO / folder / "part2_mnist" / "04_teacher.ipynb"
        why = section_text(lesson, "Why a CNN here, when lessons 2 and 3 used an MLP")
        assert f"the MLP teacher makes {mlp} test errors" in why and f"the CNN {cnn}" in why, folder
        assert f"makes {alone} on its own" in why, folder
        for command in ("kdlab experiment t-squared --seed 0", "kdlab experiment temperature-vs-width --seed 0",
                        "kdlab distill --seed 0"):
            assert command in why, (folder, command)
        shifts = section_text(lesson, "8. Measured: how much do shifted digits hurt a CNN and an MLP?")
        assert "equivariant" in shifts and "invariant by construction" not in shifts, folder


def test_the_drill_quotes_the_t_squared_ratio_of_the_json():
    """Lesson 10's question 5 (source and release) quotes t-squared-s0.json's ratios and the teacher's logit gap."""
    r = json.loads((DOCS / "results" / "t-squared-s0.json").read_text())
    assert r["ratio_between"] == [1.0, 8.0]
    fresh, trained = (f"**{r['ratio_with_t2'][k]:.2f} times**" for k in ("fresh", "trained"))
    gap = f"{r['teacher']['logit_gaps']['top2_mean']:.1f} between its top two logits"
    for folder in ("solutions", "notebooks"):
        drill = h.REPO / folder / ASSIGNMENT / f"{LESSON}.ipynb"
        q5 = " ".join(section_text(drill, "Q5. ★ Why is the soft loss multiplied by $T^2$?").split())
        assert fresh in q5 and trained in q5 and gap in q5, folder
        assert "kdlab experiment t-squared --seed 0" in q5 and "docs/results/t-squared-s0.json" in q5, folder


def test_the_loss_in_code_is_kdlabs():
    from kdlab import losses

    text = CHEATSHEET.read_text()
    code = re.search(r"## The loss in code\n\n```python\n(.*?)```", text, re.S).group(1)
    definition = code.split("# in the training loop")[0]
    namespace: dict = {}
    exec(definition, namespace)  # noqa: S102 - our own documentation
    fn = namespace["distillation_loss"]
    g = torch.Generator().manual_seed(0)
    for shape in [(8, 10), (2, 5, 7)]:
        s, t = torch.randn(*shape, generator=g) * 3, torch.randn(*shape, generator=g) * 3
        y = torch.randint(shape[-1], shape[:-1], generator=g)
        for T, alpha in [(1.0, 0.5), (4.0, 0.9), (2.0, 0.0), (8.0, 1.0)]:
            want = losses.distillation_loss(s, t, y, T, alpha)
            assert torch.allclose(fn(s, t, y, T=T, alpha=alpha), want, atol=1e-5), (shape, T, alpha)
    assert "teacher.eval()" in code and "torch.no_grad()" in code


def test_cheatsheet_commands_parse():
    commands = kdlab_commands(CHEATSHEET.read_text())
    assert len(commands) >= 8
    assert [c for c in commands if parses(c)] == []


# ----------------------------------------------------------------------------- the instructor guide

def test_guide_links_and_sections_resolve():
    assert links_resolve(GUIDE) == []


def test_guide_names_existing_lesson_sections():
    """The agendas name sections as `Lesson N, § "heading"` (and `§ "heading"` for the same lesson)."""
    text = GUIDE.read_text()
    notebooks = {int(p.name[:2]): p for p in (h.REPO / "notebooks").glob("*/*.ipynb")}
    problems, count = [], 0
    for cell in [c for row in table_rows(text) for c in row]:
        lesson = None
        for token in re.finditer(r'Lesson (\d+)|§ "([^"]+)"', cell):
            if token.group(1):
                lesson = int(token.group(1))
            elif lesson is not None:
                count += 1
                try:
                    section_text(notebooks[lesson], token.group(2))
                except KeyError as err:
                    problems.append(str(err))
    assert count >= 5 and problems == []


def test_guide_covers_the_workflows():
    text = GUIDE.read_text()
    for must in ["### 90 minutes", "### Half a day", "kdlab grade SUBMISSIONS --out DIR [--workers N]", "grades.csv",
                 "kdlab distill", "kdlab experiment", "JupyterHub", "Exchange" if False else "exchange",
                 "What was tested, and what was not"]:
        assert must in text, must
    for step in ["generate_assignment", "release_assignment", "collect", "autograde", "generate_feedback",
                 "release_feedback", "export"]:
        assert f"nbgrader {step}" in text, step


def test_guide_kdlab_commands_parse():
    commands = kdlab_commands(GUIDE.read_text())
    assert len(commands) >= 12
    assert [c for c in commands if parses(c)] == []


def test_guide_nbgrader_commands_exist():
    from nbgrader.apps.nbgraderapp import NbGraderApp

    known = set(NbGraderApp.subcommands)
    text = GUIDE.read_text()
    blocks = [line.split("#", 1)[0] for block in re.findall(r"```(?:bash)?\n(.*?)```", text, re.S)
              for line in block.splitlines()]                                  # comments are prose
    code = "\n".join(blocks + re.findall(r"`([^`\n]+)`", text))
    used = set(re.findall(r"(?:^|[\s/])nbgrader ([a-z_]+)", code, re.M))
    assert len(used) >= 7 and used <= known, used - known


def test_guide_workshop_timings_add_up():
    text = GUIDE.read_text()
    agenda = text[text.index("### 90 minutes"):text.index("### Half a day")]
    times = [int(hh) * 60 + int(mm) for hh, mm in re.findall(r"^\| (\d):(\d\d) \|", agenda, re.M)]
    assert times == sorted(times) and times[0] == 0 and times[-1] < 90


# ----------------------------------------------------------------------------- docs/jupyterhub

def load_config(path: Path, env: dict | None = None):
    from traitlets.config.loader import PyFileConfigLoader

    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def roster(tmp_path):
    path = tmp_path / "roster.txt"
    path.write_text((HUB / "roster.example.txt").read_text() + "learner dana  # late enrolment\n")
    return path


def hub_env(roster: Path) -> dict:
    return {"KDLAB_ROSTER": str(roster), "KDLAB_LEARNER_PASSWORD": "learners-pw",
            "KDLAB_INSTRUCTOR_PASSWORD": "i" * 40}


def test_hub_config_reads_the_roster(roster):
    cfg = load_config(HUB / "jupyterhub_config.py", hub_env(roster))
    assert cfg.Authenticator.admin_users == {"ada", "grace"}
    assert cfg.Authenticator.allowed_users == {"ada", "grace", "alan", "barbara", "claude", "dana"}
    assert cfg.JupyterHub.load_groups["nbgrader-kdlab"]["users"] == ["alan", "barbara", "claude", "dana"]
    assert cfg.JupyterHub.authenticator_class == "shared-password"
    assert cfg.SharedPasswordAuthenticator.user_password == "learners-pw"


@pytest.mark.parametrize("content,message", [
    ("instructor ada\nteacher bob\n", "expected 'instructor NAME' or 'learner NAME'"),
    ("instructor ada\nlearner ada\n", "both as instructor and learner"),
    ("instructor Ada\n", "not a usable account name"),
    ("learner grader-kdlab\n", "service account"),
    (None, "no roster"),
])
def test_hub_config_refuses_a_bad_roster(tmp_path, content, message):
    path = tmp_path / "roster.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit, match=message):
        load_config(HUB / "jupyterhub_config.py", hub_env(path))


def test_hub_nbgrader_and_course_configs_agree(roster):
    hub = load_config(HUB / "jupyterhub_config.py", hub_env(roster))
    glob = load_config(HUB / "nbgrader_config.py")
    grader = load_config(HUB / "grader_nbgrader_config.py")
    course = load_config(h.REPO / "nbgrader_config.py")
    course_id = glob.CourseDirectory.course_id
    assert course_id == "kdlab"
    (service,) = hub.JupyterHub.services
    assert service["name"] == course_id, "nbgrader: the grader service is named after the course"
    grader_user = service["user"]
    assert grader.CourseDirectory.root.startswith(f"/home/{grader_user}/") and service["cwd"] == f"/home/{grader_user}"
    assert f"formgrade-{course_id}" in hub.JupyterHub.load_groups
    role = next(r for r in hub.JupyterHub.load_roles if r["name"] == f"formgrade-{course_id}")
    assert role["groups"] == [f"formgrade-{course_id}"]
    assert f"access:services!service={course_id}" in role["scopes"]
    assert service["url"].endswith(":9999") and service["environment"]["OMP_NUM_THREADS"] == "1"
    for section, trait in [("CourseDirectory", "source_directory"), ("CourseDirectory", "release_directory"),
                           ("OverwriteCells", "add_missing_cells"), ("ExecutePreprocessor", "timeout")]:
        assert grader[section][trait] == course[section][trait], f"{section}.{trait} drifted from the course"
    assert glob.Exchange.root == "/srv/nbgrader/exchange"
    env = hub.Spawner.environment
    assert env["KDLAB_FAST"] == "1" and env["OMP_NUM_THREADS"] == "1" and env["KDLAB_DATA"]


def test_nbgrader_configs_pass_nbgrader_validation():
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.converters import GenerateFeedback
    from nbgrader.exchange.default import Exchange

    glob = load_config(HUB / "nbgrader_config.py")
    grader = load_config(HUB / "grader_nbgrader_config.py")
    glob.merge(grader)
    coursedir = CourseDirectory(config=glob)
    assert coursedir.course_id == "kdlab" and coursedir.root == "/home/grader-kdlab/kdlab"
    assert Exchange(coursedir=coursedir, config=glob).root == "/srv/nbgrader/exchange"
    names = [p.__name__ for p in GenerateFeedback(coursedir=coursedir, config=glob).preprocessors]
    assert names == ["GetGrades", "HideHiddenTestTracebacks", "ClearHiddenTests", "CSSHTMLHeaderPreprocessor"]


def test_hub_config_passes_jupyterhubs_own_validation(roster):
    """Every trait set exists and validates; roles and scopes are JupyterHub's; services have known fields."""
    pytest.importorskip("jupyterhub")
    from jupyterhub import orm, roles
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
    from jupyterhub.services.service import Service
    from jupyterhub.spawner import LocalProcessSpawner, Spawner

    cfg = load_config(HUB / "jupyterhub_config.py", hub_env(roster))
    classes = {"JupyterHub": JupyterHub, "Authenticator": Authenticator, "Spawner": Spawner,
               "SharedPasswordAuthenticator": SharedPasswordAuthenticator}
    for section, values in cfg.items():
        names = classes[section].class_trait_names(config=True)
        assert set(values) <= set(names), (section, set(values) - set(names))
    JupyterHub(config=cfg)
    SharedPasswordAuthenticator(config=cfg)
    LocalProcessSpawner(config=cfg)
    db = orm.new_session_factory("sqlite://")()
    for role in cfg.JupyterHub.load_roles:
        roles.create_role(db, role)
    for spec in cfg.JupyterHub.services:
        assert set(spec) <= set(Service.class_trait_names()), set(spec) - set(Service.class_trait_names())


# ----------------------------------------------------------------------------- the exchange, for real

ASSIGNMENT = "part4_interview"
LESSON = "10_interview_drill"


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    """A course, an exchange and a learner, with the hub's nbgrader configs; nbgrader as one user."""
    root = tmp_path_factory.mktemp("hub")
    for d in ("etc", "grader_jupyter", "grader_data", "learner_jupyter", "learner_data", "learner", "exchange"):
        (root / d).mkdir()
    (root / "etc" / "nbgrader_config.py").write_text((HUB / "nbgrader_config.py").read_text())
    (root / "grader_jupyter" / "nbgrader_config.py").write_text((HUB / "grader_nbgrader_config.py").read_text())
    course = h.make_course(root / "course", [ASSIGNMENT], env=h.grading_env(root / "cache"))

    def nbgrader(role: str, *args: str, config: bool = True):
        env = h.grading_env(root / "cache")
        env["JUPYTER_CONFIG_PATH"] = str(root / "etc")                    # stands for /etc/jupyter
        env["JUPYTER_CONFIG_DIR"] = str(root / f"{role}_jupyter" if config else root / "learner_jupyter")
        env["JUPYTER_DATA_DIR"] = str(root / f"{role}_data")
        extra = [f"--Exchange.root={root / 'exchange'}"]                  # stands for /srv/nbgrader/exchange
        cwd = root / "learner"
        if role == "grader":
            extra.append(f"--CourseDirectory.root={course}")             # stands for /home/grader-kdlab/kdlab
            cwd = course
        return h.nbgrader(cwd, *args, *extra, env=env)

    return root, course, nbgrader


@pytest.mark.slow   # a class through nbgrader's exchange: a minute or more
def test_release_fetch_submit_collect_autograde_feedback(exchange):
    root, course, nbgrader = exchange
    nbgrader("grader", "release_assignment", ASSIGNMENT)
    assert (root / "exchange" / "kdlab" / "outbound" / ASSIGNMENT / f"{LESSON}.ipynb").is_file()

    nbgrader("learner", "fetch_assignment", ASSIGNMENT)
    fetched = root / "learner" / ASSIGNMENT / f"{LESSON}.ipynb"
    nb = h.load(fetched)
    solution = h.load(h.REPO / "solutions" / ASSIGNMENT / f"{LESSON}.ipynb")
    answers = [h.grade_id(c) for c in solution.cells if c.metadata.get("nbgrader", {}).get("solution")]
    for gid in answers:                                                   # the learner answers everything ...
        h.set_source(nb, gid, h.cell(solution, gid).source)
    h.set_source(nb, "q_loss", 'def q_loss():\n    return "A"\n')          # ... and gets one question wrong
    import nbformat

    nbformat.write(nb, str(fetched))
    nbgrader("learner", "submit", ASSIGNMENT)

    nbgrader("grader", "collect", ASSIGNMENT)
    (student,) = [p.name for p in (course / "submitted").iterdir()]
    assert (course / "submitted" / student / ASSIGNMENT / f"{LESSON}.ipynb").is_file()
    nbgrader("grader", "autograde", ASSIGNMENT)
    grades = h.scores(course, ASSIGNMENT)[student][LESSON]
    autograded = {k: v for k, v in grades.items() if k.startswith("test_")}
    full = manifest.max_score(ASSIGNMENT, autograded_only=True)   # one point per autograded question
    assert sum(s for s, _ in autograded.values()) == len(autograded) - 1 == full - 1 and autograded["test_q_loss"] == (0.0, 1.0)

    nbgrader("grader", "generate_feedback", ASSIGNMENT, "--force")
    page = (course / "feedback" / student / ASSIGNMENT / f"{LESSON}.html").read_text()
    assert "is not the best answer" in page                              # the learner sees what failed ...
    for secret in ("BEGIN HIDDEN TESTS", "expect_choice", "expect_number"):
        assert secret not in page, secret                                 # ... but not the answer key
    autograded_nb = h.load(course / "autograded" / student / ASSIGNMENT / f"{LESSON}.ipynb")
    assert "expect_choice" in h.cell(autograded_nb, "test_q_loss").source   # it was there to hide

    nbgrader("grader", "release_feedback", ASSIGNMENT)
    nbgrader("learner", "fetch_feedback", ASSIGNMENT)
    pages = list((root / "learner" / ASSIGNMENT / "feedback").glob(f"*/{LESSON}.html"))
    assert len(pages) == 1 and "expect_choice" not in pages[0].read_text()


@pytest.mark.slow   # a class through nbgrader's exchange: a minute or more
def test_plain_nbgrader_feedback_would_show_the_answer_key(exchange):
    """Why the grader config changes the feedback: without it, the hidden tests are in the page."""
    root, course, nbgrader = exchange
    if not (course / "autograded").is_dir():
        pytest.skip("needs the round trip above")
    plain = root / "plain_jupyter"
    plain.mkdir(exist_ok=True)
    env = h.grading_env(root / "cache")
    env["JUPYTER_CONFIG_DIR"] = str(plain)
    h.nbgrader(course, "generate_feedback", ASSIGNMENT, "--force", "--CourseDirectory.feedback_directory=plain_feedback",
               env=env)
    (page,) = (course / "plain_feedback").glob(f"*/{ASSIGNMENT}/{LESSON}.html")
    assert "expect_choice" in page.read_text()


@pytest.mark.slow   # a class through nbgrader's exchange: a minute or more
def test_kdlab_grade_on_the_collected_hand_ins(exchange, tmp_path):
    root, course, _ = exchange
    if not (course / "submitted").is_dir():
        pytest.skip("needs the round trip above")
    out = tmp_path / "grades"
    env = h.grading_env(root / "cache")
    proc = subprocess.run([sys.executable, "-m", "kdlab.cli", "grade", str(course / "submitted"), "--out", str(out),
                           "--workers", "1", "--course", str(h.REPO), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = list(csv.DictReader((out / "grades.csv").open()))
    assert (row["assignment"], row["notebook"], row["status"]) == (ASSIGNMENT, LESSON, "ok")
    # every autograded point but one (q_loss is wrong), and the written answers left for the instructor
    assert (float(row["score"]), float(row["max_score"])) == (
        manifest.max_score(ASSIGNMENT, autograded_only=True) - 1, manifest.max_score(ASSIGNMENT))
    page = (out / "feedback" / row["student"] / ASSIGNMENT / f"{LESSON}.html").read_text()
    assert "expect_choice" not in page and "is not the best answer" in page


# ----------------------------------------------------------------------------- lesson 10 reads the course's results

RESULTS = DOCS / "results"


def _mean(xs):
    return sum(xs) / len(xs)


def _gap_closed():
    r = json.loads((RESULTS / "distill-quick-seeds.json").read_text())
    t, a, d = (r[k]["test_errors"] for k in ("teacher", "student_scratch", "student_distilled"))
    rows = [[s, *x] for s, *x in zip(r["seeds"], t, a, d)]
    return "distill-quick-seeds.json", rows, (_mean(a) - _mean(d)) / (_mean(a) - _mean(t))


def _soft_same_images():
    r = json.loads((RESULTS / "few-labels-s0.json").read_text())
    s = r["students"]
    rows = [[s["hard_labels"]["images"], r["hard_labels_test_errors"]],
            [s["soft_targets"]["images"], r["soft_targets_test_errors"]],
            [s["soft_targets_same_images"]["images"], r["soft_targets_same_images_test_errors"]],
            [r["train_size"], r["teacher"]["test_errors"]]]
    assert s["hard_labels"]["test_errors"] == r["hard_labels_test_errors"]
    assert s["soft_targets_same_images"]["test_errors"] == r["soft_targets_same_images_test_errors"]
    value = 1 - r["soft_targets_same_images_test_errors"] / r["hard_labels_test_errors"]
    return "few-labels-s0.json", rows, value


def _deployed_size_ratio():
    r = json.loads((RESULTS / "compress-s0.json").read_text())
    rows = [[x["params"], round(100 * x["sparsity"]), x["size_bytes"], x["state_dict_bytes"], x["latency_ms"],
             x["test_errors"]] for x in r["rows"]]
    assert "deployed" in r["rows"][-1]["name"] and "teacher" in r["rows"][0]["name"]
    return "compress-s0.json", rows, r["rows"][0]["size_bytes"] / r["rows"][-1]["size_bytes"]


def _high_t_cost():
    r = json.loads((RESULTS / "temperature-vs-width-s0.json").read_text())
    key = {T: next(k for k in r["test_errors"][str(r["widths"][0])] if float(k) == T) for T in r["temperatures"]}
    rows = [[w, r["student_alone_test_errors"][str(w)], *(r["test_errors"][str(w)][key[T]] for T in r["temperatures"])]
            for w in r["widths"]]
    small = rows[0][2:]
    return "temperature-vs-width-s0.json", rows, (small[-1] - min(small)) / min(small)


READ_THE_RESULT = {"n_gap_closed": _gap_closed, "n_soft_same_images": _soft_same_images,
                   "n_deployed_size_ratio": _deployed_size_ratio, "n_high_t_cost": _high_t_cost}


def _as_number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%").strip())


@pytest.mark.parametrize("name", sorted(READ_THE_RESULT))
def test_read_the_result_questions_agree_with_the_json(name):
    """The table in the question and the hidden test's expected value are the JSON's, recomputed here."""
    source, rows, value = READ_THE_RESULT[name]()
    nb = h.load(h.REPO / "solutions" / ASSIGNMENT / f"{LESSON}.ipynb")
    answer = h.cell(nb, name)
    i = nb.cells.index(answer)
    prompt, test = nb.cells[i - 1].source, nb.cells[i + 1].source
    assert f"docs/results/{source}" in prompt, f"{name}: the question names no docs/results/{source}"
    shown = [[_as_number(c) for c in row if re.fullmatch(r"[\d,.]+%?", c)] for row in table_rows(prompt)[1:]]
    assert shown == [[float(x) for x in row] for row in rows], f"{name}: the table disagrees with {source}"
    literal = re.search(rf'expect_number\("{name}", answer, (.+?), rel_tol=', test).group(1)
    expected = eval(literal, {"__builtins__": {}})
    assert expected == pytest.approx(value, rel=1e-12, abs=0), (
        f"{name}: the hidden test expects {literal} = {expected}, the JSON gives {value}")
    assert "rel_tol=0.01" in test and "review=\"Lesson " in test
    # and the solution computes it
    ns = {}
    exec(answer.source, ns)
    assert ns[name]() == pytest.approx(value, rel=1e-12)
