"""The course manifest (kdlab/course.json, read by kdlab.course) is the truth, and the docs say what it says.

* every graded cell of every solutions notebook is in the manifest, with its
  points, kind and test cells, in notebook order, and nothing else is there;
  every lesson's notebook and its released copy exist and hold those cells;
* the README's course table, docs/instructors.md's table of the material and
  docs/course.md list the same lessons, exercises, points and minutes;
  docs/course.md lists the KD bugs 1 to 10 in the order of kdlab/pitfalls.py;
* every experiment a lesson runs is in kdlab's experiment registry, and every
  registered experiment is run by a lesson;
* no file of the repository cites the course plan that used to live outside it,
  or any other path outside the repository (the one exception: the CI's data
  folder, ``../shared/datasets``, where ``KDLAB_DATA`` points).

Nothing here executes a notebook: it reads JSON and Markdown, in a second or two.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

from kdlab import course
from markdown_tools import LINK, broken_links, table_rows

REPO = Path(__file__).resolve().parents[2]
COURSE_MD = REPO / "docs" / "course.md"
README = REPO / "README.md"
GUIDE = REPO / "docs" / "instructors.md"
KIND_WORDS = {"choice": "multiple choice", "numeric": "numeric", "written": "written"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


# ----------------------------------------------------------------------------- helpers

def _source(cell) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def graded_cells_of(path: Path) -> list[dict]:
    """What the notebook's nbgrader metadata says, one dict per answer cell, in notebook order.

    ``{"name", "kind", "tests", "points", "rubric", "label"}``; raises on a graded cell that belongs to no answer.
    """
    cells = _notebook(path)["cells"]
    out, by_name = [], {}
    for i, cell in enumerate(cells):
        meta = _meta(cell)
        if not meta:
            continue
        gid = meta.get("grade_id")
        if meta.get("task"):
            raise AssertionError(f"{path.name}: task cell {gid}: the course has no task cells")
        if meta.get("solution"):
            entry = {"name": gid, "tests": [], "points": 0, "rubric": "", "label": ""}
            if cell["cell_type"] == "markdown":
                assert meta.get("grade"), f"{path.name}: written answer {gid} is not graded"
                entry.update(kind="written", points=meta["points"])
                before = _meta(cells[i - 1]) if i else {}
                if before.get("locked") and not before.get("grade") and before.get("grade_id"):
                    entry["rubric"] = before["grade_id"]
            else:
                assert not meta.get("grade"), f"{path.name}: answer cell {gid} carries points itself"
                label = re.search(r"Your answer to (MC\d+|N\d+):", _source(cell))
                entry["label"] = label.group(1) if label else ""
            out.append(entry)
            by_name[gid] = entry
        elif meta.get("grade"):
            assert gid and gid.startswith("test_"), f"{path.name}: graded cell {gid} is not a test cell"
            owner = by_name.get(gid.removeprefix("test_"))
            assert owner is not None, f"{path.name}: test cell {gid} grades no answer cell before it"
            owner["tests"].append(gid)
            owner["points"] += meta["points"]
            test = _source(cell)
            kind = ("choice" if "quiz.read_choice(" in test else "numeric" if "quiz.read_number(" in test
                    else "code")
            assert owner.setdefault("kind", kind) == kind, f"{path.name}: {gid}'s tests disagree on its kind"
    for entry in out:
        assert entry.get("kind"), f"{path.name}: answer cell {entry['name']} has no test cell"
    return out


def manifest_entry(e: course.Exercise) -> dict:
    return {"name": e.name, "kind": e.kind, "tests": list(e.tests), "points": e.points, "rubric": e.rubric,
            "label": e.label}


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of the same or a higher level."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    out = []
    for line in lines[start + 1:]:
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        out.append(line)
    return "\n".join(out)

def minutes_text(item) -> str:
    """"30 min", or "60–90 min" for a range."""
    return f"{item.minutes}–{item.minutes_max} min" if item.minutes_max else f"{item.minutes} min"


def of_kind(lesson: course.Lesson, kind: str) -> list[course.Exercise]:
    return [e for e in lesson.exercises if e.kind == kind]


def same_minutes(exercises) -> tuple:
    """The (minutes, minutes_max) that all these exercises share (README and the guide give one per kind)."""
    values = {(e.minutes, e.minutes_max) for e in exercises}
    assert len(values) == 1, f"{[e.name for e in exercises]} do not share their minutes: {values}"
    return values.pop()

def repo_files() -> list[Path]:
    """The repository's files: tracked, and untracked but not ignored (the build outputs are ignored)."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, check=True).stdout.decode().split("\0")
        files = [REPO / n for n in names if n]
    except (OSError, subprocess.CalledProcessError):   # not a git checkout: walk it, skipping what git ignores
        skip = {".git", "build", "dist", "__pycache__", ".pytest_cache", "runs", ".ipynb_checkpoints"}
        files = [p for p in REPO.rglob("*") if not any(part in skip or part.endswith(".egg-info")
                                                       for part in p.relative_to(REPO).parts)]
    return sorted(p for p in files if p.is_file())


TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".txt", ".cfg", ".ini", ".json", ".yml", ".yaml", ".sh", ".html",
                 ".js", ".css", ""}


# ----------------------------------------------------------------------------- the manifest against solutions/

def test_the_manifest_loads_with_the_api_the_tests_use():
    assert course.assignments() == ["part1_foundations", "part2_mnist", "part3_beyond", "part4_interview"]
    lessons = course.lessons()
    assert [lesson.number for lesson in lessons] == list(range(1, 11))
    assert [l.name for a in course.assignments() for l in course.lessons(a)] == [l.name for l in lessons]
    assert course.exercises() == [e for l in lessons for e in l.exercises]
    for lesson in lessons:
        assert course.lesson(lesson.name) is lesson
        assert lesson.path == f"solutions/{lesson.assignment}/{lesson.name}.ipynb"
        assert lesson.released_path == f"notebooks/{lesson.assignment}/{lesson.name}.ipynb"
        for e in lesson.exercises:
            assert course.exercise(e.name) is e and e.lesson == lesson.name and e.assignment == lesson.assignment
            assert e.kind in course.KINDS and e.points > 0 and e.minutes > 0
            assert (e.tests == ()) == (e.kind == "written") and e.autograded == (e.kind != "written")
    assert sum(course.max_score(a) for a in course.assignments()) == course.max_score()
    assert course.max_score("part4_interview", autograded_only=True) == course.max_score("part4_interview") - sum(
        e.points for e in course.exercises("part4_interview") if e.kind == "written")
    with pytest.raises(KeyError):
        course.lesson("11_nothing")
    with pytest.raises(KeyError):
        course.exercise("no_such_exercise")
    with pytest.raises(KeyError):
        course.lessons("part9")


def test_the_manifest_is_installed_with_the_package():
    tomllib = pytest.importorskip("tomllib")     # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "course.json" in config["tool"]["setuptools"]["package-data"]["kdlab"]
    assert (REPO / "kdlab" / "course.json").is_file()


def test_assignments_and_lessons_are_the_solutions_notebooks():
    folders = sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert course.assignments() == folders
    on_disk = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "solutions").glob("*/*.ipynb"))
    assert sorted(lesson.path for lesson in course.lessons()) == on_disk
    assert [lesson.name for lesson in course.lessons()] == sorted(lesson.name for lesson in course.lessons())


@pytest.mark.parametrize("lesson", [lesson.name for lesson in course.lessons()])
def test_every_graded_cell_is_in_the_manifest_with_its_points(lesson):
    """The solution's nbgrader cells, answer by answer in notebook order, are exactly the manifest's exercises."""
    meta = course.lesson(lesson)
    assert graded_cells_of(REPO / meta.path) == [manifest_entry(e) for e in meta.exercises]


@pytest.mark.parametrize("lesson", [lesson.name for lesson in course.lessons()])
def test_the_released_notebook_exists_and_holds_the_same_graded_cells(lesson):
    meta = course.lesson(lesson)
    released = REPO / meta.released_path
    assert released.is_file(), f"{meta.released_path} is missing: run nbgrader generate_assignment {meta.assignment}"
    assert graded_cells_of(released) == [manifest_entry(e) for e in meta.exercises]


@pytest.mark.parametrize("lesson", [lesson.name for lesson in course.lessons()])
def test_the_notebook_title_is_the_manifests(lesson):
    meta = course.lesson(lesson)
    first = next(c for c in _notebook(REPO / meta.path)["cells"] if c["cell_type"] == "markdown")
    assert _source(first).splitlines()[0] == f"# Lesson {meta.number} — {meta.title}"


# ----------------------------------------------------------------------------- the experiments

def test_every_experiment_a_lesson_runs_is_registered_and_every_registered_one_is_run():
    from kdlab import experiments

    run = [name for lesson in course.lessons() for name in lesson.experiments]
    assert len(run) == len(set(run)), "an experiment is listed under two lessons"
    for name in run:
        assert experiments.get(name).name == name
    assert set(experiments.REGISTRY) == set(run)


@pytest.mark.parametrize("lesson", [lesson.name for lesson in course.lessons() if lesson.experiments])
def test_the_lesson_names_the_command_of_each_of_its_experiments(lesson):
    meta = course.lesson(lesson)
    text = "\n".join(_source(c) for c in _notebook(REPO / meta.path)["cells"])
    for name in meta.experiments:
        assert f"kdlab experiment {name}" in text, f"{meta.path} never shows `kdlab experiment {name}`"


# ----------------------------------------------------------------------------- the README and the instructor guide

def test_the_readme_course_table_is_the_manifest():
    rows = table_rows(section(README.read_text(encoding="utf-8"), "## The course"))[1:]   # without the header
    assignments = iter(course.assignments())
    assignment, seen = None, []
    for part, lesson_cell, exercises_cell in rows:
        if part:
            assignment = next(assignments)
            assert part.startswith(f"{course.assignments().index(assignment) + 1} "), (part, assignment)
        name = re.match(r"`(\d\d_\w+)`", lesson_cell).group(1)
        lesson = course.lesson(name)
        assert lesson.assignment == assignment, f"README: {name} is listed under {assignment}"
        seen.append(name)
        code = [(e.name, e.minutes) for e in of_kind(lesson, "code")]
        listed = [(n, int(m)) for n, m in re.findall(r"`(\w+)` \((\d+) min\)", exercises_cell)]
        assert listed == code, f"README, {name}: {listed} against the manifest's {code}"
        for kind, pattern in [("choice", r"(\d+) multiple-choice \((\d+)-(\d+) min each"),
                              ("numeric", r"(\d+) numeric \((\d+)-(\d+) min each"),
                              ("written", r"(\d+) written prompts[^(]*\((\d+) min each")]:
            exercises = of_kind(lesson, kind)
            m = re.search(pattern, exercises_cell)
            if not exercises:
                assert m is None, f"README, {name}: lists {kind} questions the lesson does not have"
                continue
            assert m, f"README, {name}: does not list its {len(exercises)} {kind} questions"
            low, high = same_minutes(exercises)
            assert int(m.group(1)) == len(exercises), f"README, {name}: {m.group(0)}"
            assert [int(g) for g in m.groups()[1:]] == [low] + ([high] if high else []), f"README, {name}: {m.group(0)}"
    assert seen == [lesson.name for lesson in course.lessons()]


def test_the_instructor_guide_lists_the_manifests_lessons_times_and_exercises():
    text = GUIDE.read_text(encoding="utf-8")
    rows = table_rows(section(text, "## The material"))[1:]
    assignment, seen = None, []
    for part, lesson_cell, time, exercises_cell in rows:
        if part:
            assignment = part.strip("`")
        number, short_title, link = re.match(r"\[(\d+)\. ([^\]]+)\]\(\.\./([^)]+)\)", lesson_cell).groups()
        lesson = next(l for l in course.lessons() if l.released_path == link)
        seen.append(lesson.name)
        assert (int(number), lesson.assignment) == (lesson.number, assignment), lesson_cell
        assert lesson.title.startswith(short_title), f"guide: {short_title!r} against the title {lesson.title!r}"
        assert time == minutes_text(lesson), f"guide, {lesson.name}: {time} against {minutes_text(lesson)}"
        code = [e.name for e in of_kind(lesson, "code")]
        assert re.findall(r"`(\w+)`", exercises_cell) == code, f"guide, {lesson.name}: {exercises_cell}"
        if len(code) < len(lesson.exercises):
            m = re.fullmatch(r"(\d+) multiple-choice and (\d+) numeric questions \((\d+) points\), (\w+) 60-second "
                             r"prompts graded by hand \((\d+) points\)", exercises_cell)
            assert m, f"guide, {lesson.name}: {exercises_cell}"
            choice, numeric, written = (of_kind(lesson, k) for k in ("choice", "numeric", "written"))
            assert (int(m.group(1)), int(m.group(2)), NUMBER_WORDS.get(m.group(4), m.group(4))) == (
                len(choice), len(numeric), len(written))
            assert int(m.group(3)) == sum(e.points for e in choice + numeric)
            assert int(m.group(5)) == sum(e.points for e in written)
    assert seen == [lesson.name for lesson in course.lessons()]
    drill = course.assignments()[-1]
    auto, full = course.max_score(drill, autograded_only=True), course.max_score(drill)
    assert f"{auto} of {full}" in text, f"the guide should say a perfect autograded hand-in shows as {auto} of {full}"
    written = [e for e in course.exercises(drill) if e.kind == "written"]
    assert f"{written[0].points} points each, {sum(e.points for e in written)} in all" in text


# ----------------------------------------------------------------------------- docs/course.md

def test_course_md_is_linked_from_the_readme():
    text = README.read_text(encoding="utf-8")
    assert "[docs/course.md](docs/course.md)" in section(text, "## The course")
    assert "`course.md`" in section(text, "## Layout")


def test_course_md_names_every_lesson_and_exercise():
    text = COURSE_MD.read_text(encoding="utf-8")
    missing = [name for name in [l.name for l in course.lessons()] + [e.name for e in course.exercises()]
               if f"`{name}" not in text]
    assert missing == []


def test_course_md_syllabus_tables_are_the_manifest():
    text = COURSE_MD.read_text(encoding="utf-8")
    syllabus = section(text, "## Syllabus")
    parts = re.findall(r"^### Part (\d+) — .*?\(`(\w+)`, (\d+) points", syllabus, re.MULTILINE)
    assert [(int(n), a, int(p)) for n, a, p in parts] == [
        (i + 1, a, course.max_score(a)) for i, a in enumerate(course.assignments())]
    drill = course.assignments()[-1]
    assert (f"{course.max_score(drill)} points: {course.max_score(drill, autograded_only=True)} autograded, "
            f"{course.max_score(drill) - course.max_score(drill, autograded_only=True)} graded by hand") in syllabus
    seen = []
    for row in table_rows(syllabus):
        m = re.fullmatch(r"`(\d\d_\w+)`", row[0])
        if not m:
            continue
        lesson = course.lesson(m.group(1))
        seen.append(lesson.name)
        _, time, exercises_cell, experiments_cell = row
        assert time == minutes_text(lesson), f"course.md, {lesson.name}: {time}"
        assert re.findall(r"`([\w-]+)`", experiments_cell) == list(lesson.experiments), experiments_cell
        code = [(e.name, e.points) for e in of_kind(lesson, "code")]
        assert [(n, int(p)) for n, p in re.findall(r"`(\w+)` \((\d+)\)", exercises_cell)] == code, exercises_cell
        if len(code) < len(lesson.exercises):
            m = re.search(r"(\d+) multiple-choice and (\d+) numeric questions \((\d+) each\), (\d+) written answers "
                          r"\((\d+) each\)", exercises_cell)
            choice, numeric, written = (of_kind(lesson, k) for k in ("choice", "numeric", "written"))
            assert m and [int(g) for g in m.groups()] == [
                len(choice), len(numeric), *{e.points for e in choice + numeric}, len(written),
                *{e.points for e in written}], exercises_cell
    assert seen == [lesson.name for lesson in course.lessons()]


def test_course_md_lists_lesson_10s_graded_questions_as_the_manifest():
    text = COURSE_MD.read_text(encoding="utf-8")
    listed = [row for row in table_rows(text) if len(row) == 4 and re.fullmatch(r"`[qn]_\w+`|`explain_\w+`", row[1])]
    expected = [e for e in course.exercises() if e.kind != "code"]
    assert len(listed) == len(expected)
    for (label, name, kind, points), e in zip(listed, expected):
        assert name == f"`{e.name}`" and int(points) == e.points, (label, name, points)
        assert label == (e.label or "written") and kind.startswith(KIND_WORDS[e.kind]), (label, kind, e)


def pitfalls_in_code() -> list[tuple[int, str]]:
    """(number, title) of kdlab/pitfalls.py's PITFALLS, read from its source (no torch import needed)."""
    tree = ast.parse((REPO / "kdlab" / "pitfalls.py").read_text(encoding="utf-8"))
    for node in tree.body:
        targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if "PITFALLS" in targets:
            return [(call.args[0].value, call.args[1].value) for call in node.value.elts]
    raise AssertionError("kdlab/pitfalls.py has no PITFALLS list")


def test_the_bugs_are_numbered_alike_in_course_md_the_manifest_and_pitfalls():
    bugs = [(b.number, b.title) for b in course.bugs()]
    assert [n for n, _ in bugs] == list(range(1, 11))
    assert pitfalls_in_code() == bugs
    listed = re.findall(r"^(\d+)\. \*\*(.+?)\*\*", section(COURSE_MD.read_text(encoding="utf-8"),
                                                           "## The KD bugs every grader must catch"), re.MULTILINE)
    assert [(int(n), title) for n, title in listed] == bugs


def test_course_md_links_resolve():
    assert broken_links(COURSE_MD, inside=REPO) == []


# ----------------------------------------------------------------------------- nothing outside the repository

# The course plan used to be a file outside the repository; it is docs/course.md now. (Spelled in two pieces so that
# this file does not cite it.)
OLD_PLAN = re.compile(r"\bCOURSE" + r"(?:\.md\b| bugs?\b)")
# Any path into the folder beside the repository, or the machine's copy of it, except its data sets (KDLAB_DATA).
OUTSIDE = re.compile(r"(?:\.\./|/work/)shared\b(?!/datasets\b)")


def test_no_file_cites_the_old_course_plan_or_a_path_outside_the_repository():
    problems = []
    for path in repo_files():
        if path.suffix not in TEXT_SUFFIXES or path.stat().st_size > 8 * 2**20:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for pattern in (OLD_PLAN, OUTSIDE):
                if pattern.search(line):
                    problems.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert problems == [], "cite docs/course.md (inside the repository) instead:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", sorted(str(p.relative_to(REPO)) for p in
                                       [*REPO.glob("*.md"), *(REPO / "docs").rglob("*.md")]))
def test_markdown_links_stay_inside_the_repository(doc):
    path = REPO / doc
    outside = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.partition("#")[0]).resolve()
        if resolved != REPO and REPO not in resolved.parents:
            outside.append(target)
    assert outside == []
