"""Drive the real nbgrader on the course, in a scratch copy: generate, submit, autograde, read the scores.

The repository root is the nbgrader course root (docs/course.md). Grading never
happens there: :func:`make_course` copies ``nbgrader_config.py`` and the
assignments' ``solutions/`` into a scratch folder and runs
``nbgrader generate_assignment`` in it, which fills that folder's gradebook
with the source cells (hidden tests included) and writes ``notebooks/``.
Then::

    course = make_course(tmp / "course", ["part1_foundations"])
    submit(course, "alice", "part1_foundations", {"01_softmax_temperature": nb})
    autograde(course, "part1_foundations")
    scores(course, "part1_foundations")["alice"]["01_softmax_temperature"]["test_softmax_t"]  # (score, max)

Notebooks are edited as ``nbformat`` nodes with :func:`load`, :func:`cell`,
:func:`set_source` and :func:`delete_cell`, addressed by nbgrader grade_id
(the answer cell's id is the function's name, its test cell's is
``test_<name>``). :func:`run_graded_cells` runs what the autograder runs (the
setup, answer and test cells, never ``#| experiment`` cells) in this process,
for quick checks of many answers without starting kernels. Which lessons and
exercises the course has comes from its manifest (:mod:`kdlab.course`):
:func:`lesson_names`, :func:`exercise_names`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

import kdlab.course as manifest

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT_MARKER = "#| experiment"


# ----------------------------------------------------------------------------- the course

def grading_env(cache_dir: Path | None = None, **extra: str) -> dict:
    """The environment for nbgrader and notebook kernels in tests: fast mode, a private cache."""
    env = dict(os.environ)
    env.pop("NBGRADER_EXECUTION", None)
    env["KDLAB_FAST"] = "1"
    if cache_dir is not None:
        env["XDG_CACHE_HOME"] = str(cache_dir)
    env.update(extra)
    return env


def nbgrader(course: Path, *args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course``; raise with its output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env or grading_env(),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_course(dest: Path, assignments, *, env: dict | None = None) -> Path:
    """A scratch course in ``dest``: the repo's config and solutions, with every assignment generated."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    for assignment in assignments:
        shutil.copytree(REPO / "solutions" / assignment, dest / "solutions" / assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        nbgrader(dest, "generate_assignment", assignment, "--force", env=env)
    return dest


def notebook_names(course: Path, assignment: str) -> list[str]:
    """The assignment's notebook names (file stems) in the scratch course ``course``, sorted."""
    return sorted(p.stem for p in (Path(course) / "solutions" / assignment).glob("*.ipynb"))


def lesson_names(assignment: str) -> list[str]:
    """The assignment's lessons (notebook names), in course order, from the course manifest (kdlab/course.json)."""
    return [lesson.name for lesson in manifest.lessons(assignment)]


def exercise_names(lesson: str) -> list[str]:
    """The graded exercises of ``lesson`` (their answer cells' grade_ids), in notebook order, from the manifest."""
    return [e.name for e in manifest.lesson(lesson).exercises]


def submit(course: Path, student: str, assignment: str, notebooks: dict) -> Path:
    """Place a student's submission: ``notebooks`` maps a notebook name to a NotebookNode or a path."""
    folder = Path(course) / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        target = folder / f"{name}.ipynb"
        if isinstance(nb, (str, Path)):
            shutil.copy2(nb, target)
        else:
            nbformat.write(nb, str(target))
    return folder


def autograde(course: Path, assignment: str, student: str | None = None, *, env: dict | None = None,
              timeout: float = 900) -> float:
    """``nbgrader autograde`` for one student (or all submitted ones); returns the wall-clock seconds."""
    args = ["autograde", assignment, "--force"]
    if student:
        args.append(f"--student={student}")
    start = time.perf_counter()
    nbgrader(course, *args, env=env, timeout=timeout)
    return time.perf_counter() - start


def scores(course: Path, assignment: str) -> dict:
    """``{student: {notebook: {grade_id: (score, max_score)}}}`` from the course's gradebook."""
    from nbgrader.api import Gradebook

    result: dict = {}
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gb:
        for submission in gb.assignment_submissions(assignment):
            per_notebook = result.setdefault(submission.student.id, {})
            for nb in submission.notebooks:
                per_notebook[nb.name] = {grade.name: (grade.score, grade.max_score) for grade in nb.grades}
    return result


def exercise_scores(course: Path, assignment: str) -> dict:
    """``{student: {exercise: (score, max_score)}}``: test cell ``test_<name>`` scores exercise ``name``."""
    out: dict = {}
    for student, notebooks in scores(course, assignment).items():
        for grades in notebooks.values():
            for grade_id, value in grades.items():
                out.setdefault(student, {})[grade_id.removeprefix("test_")] = value
    return out


def execute_fast(nb, path: Path = REPO, timeout: float = 600) -> float:
    """Execute ``nb`` in a kernel started from ``path``, plots inline; fail unless it ran in fast mode.

    The kernel inherits this process's environment, so the caller sets KDLAB_FAST=1; the lesson's
    ``setup()`` prints which mode it saw, and a lesson that ran on the full data fails here (it would
    also make the test suite far slower). Returns the seconds it took.
    """
    from nbclient import NotebookClient

    # Jupyter's inline backend, as a learner gets it (CI exports MPLBACKEND=Agg, which shows no plots).
    backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path)}}).execute()
        seconds = time.perf_counter() - start
    finally:
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend
    said = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "kdlab lesson setup: KDLAB_FAST=1" in said, "the lesson did not run in fast mode (setup() said otherwise)"
    return seconds


def check_exercise_cells(nb, names: list[str]) -> None:
    """The conventions of docs/course.md: answer cell ``name`` defines exactly ``name()``; its locked test cell
    ``test_name`` follows it, with points, one hidden-tests block and the visible checks; none is an experiment.

    ``names``: the lesson's code exercises, e.g. ``exercise_names(lesson)``."""
    import ast

    answer_ids = [grade_id(c) for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert answer_ids == names
    graded_ids = [grade_id(c) for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert graded_ids == [f"test_{name}" for name in names]
    for name in names:
        answer = cell(nb, name)
        functions = [node.name for node in ast.parse(answer.source).body if isinstance(node, ast.FunctionDef)]
        assert functions == [name], f"answer cell {name} must define exactly the function {name}"
        assert "### BEGIN SOLUTION" in answer.source and "### END SOLUTION" in answer.source
        following = nb.cells[nb.cells.index(answer) + 1]
        meta = following.metadata.get("nbgrader", {})
        assert grade_id(following) == f"test_{name}", "the test cell comes right after its answer cell"
        assert meta.get("grade") and meta.get("locked") and meta.get("points", 0) > 0 and not meta.get("solution")
        assert following.source.count("### BEGIN HIDDEN TESTS") == 1
        assert following.source.count("### END HIDDEN TESTS") == 1
        assert f"Checker({name}" in following.source and following.source.rstrip().endswith("check.done()")
        assert not is_experiment(answer) and not is_experiment(following)


# ----------------------------------------------------------------------------- notebooks

def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def solution(assignment: str, lesson: str) -> nbformat.NotebookNode:
    """A fresh copy of the instructor's notebook ``solutions/ASSIGNMENT/LESSON.ipynb``."""
    return load(REPO / "solutions" / assignment / f"{lesson}.ipynb")


def released(assignment: str, lesson: str) -> nbformat.NotebookNode:
    """A fresh copy of the learner's notebook ``notebooks/ASSIGNMENT/LESSON.ipynb``."""
    return load(REPO / "notebooks" / assignment / f"{lesson}.ipynb")


def with_answers(assignment: str, lesson_of: dict, replacements: dict) -> dict:
    """Solution notebooks with some answer cells replaced: {lesson: notebook}, only the lessons touched.

    ``lesson_of`` maps each exercise (its answer cell's grade_id) to its lesson.
    """
    out = {}
    for exercise, source in replacements.items():
        lesson = lesson_of[exercise]
        nb = out.setdefault(lesson, solution(assignment, lesson))
        set_source(nb, exercise, source)
    return out


def full_marks(score) -> bool:
    """A (points earned, points possible) pair that earned every point of a graded exercise."""
    return score[0] == score[1] and score[1] > 0


def grade_id(c) -> str | None:
    return c.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def cell(nb, gid: str):
    """The cell whose nbgrader grade_id is ``gid``."""
    for c in nb.cells:
        if grade_id(c) == gid:
            return c
    raise KeyError(f"no cell with grade_id {gid!r}")


def set_source(nb, gid: str, source: str):
    """Replace the source of the cell ``gid`` (returns ``nb``, edited in place)."""
    cell(nb, gid).source = source
    return nb


def delete_cell(nb, gid: str):
    """Delete the cell ``gid`` (returns ``nb``)."""
    nb.cells.remove(cell(nb, gid))
    return nb


def is_experiment(c) -> bool:
    return c.cell_type == "code" and c.source.lstrip().startswith(EXPERIMENT_MARKER)


def graded_cells(nb) -> list:
    """The code cells the autograder executes: every code cell but the ``#| experiment`` ones."""
    return [c for c in nb.cells if c.cell_type == "code" and not is_experiment(c)]


def run_graded_cells(nb, answers: dict | None = None) -> dict:
    """Run the graded cells of ``nb`` in this process; ``{test grade_id: None | error message}``.

    ``answers`` maps an answer cell's grade_id to replacement source. Cells run
    in one fresh namespace with NBGRADER_EXECUTION set, as under the autograder;
    an answer cell that fails leaves its test to report the consequence.
    """
    answers = answers or {}
    namespace: dict = {"__name__": "__main__"}
    results: dict = {}
    saved = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        for c in graded_cells(nb):
            gid = grade_id(c)
            source = answers.get(gid, c.source)
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(source, f"<cell {gid or 'setup'}>", "exec"), namespace)  # noqa: S102
                error = None
            except Exception as exc:  # noqa: BLE001 - recorded per test cell
                error = f"{type(exc).__name__}: {exc}"
            if gid and gid.startswith("test_"):
                results[gid] = error
    finally:
        if saved is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = saved
    return results
