"""Every lesson follows the course's conventions (docs/course.md), lesson by lesson from the course manifest.

The lessons, their assignments and their exercises come from :mod:`kdlab.course`; what is particular to a
lesson (its experiments, the drill's question bank) is tested in that lesson's own file.
"""

from __future__ import annotations

import re

import nbformat
import pytest

import nbgrader_harness as h
from kdlab import course

LESSONS = course.lessons()
# Lessons whose exercises are functions the learner writes (all but the interview drill).
CODE_LESSONS = [lesson for lesson in LESSONS if lesson.exercises and all(e.kind == "code" for e in lesson.exercises)]
SECTIONS = ["Learning goals", "Pitfalls", "What we learned"]


def names(lesson) -> list[str]:
    return [e.name for e in lesson.exercises]


def solution(lesson) -> nbformat.NotebookNode:
    return h.load(h.REPO / lesson.path)


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def by_name(lessons):
    return pytest.mark.parametrize("lesson", lessons, ids=[lesson.name for lesson in lessons])


def test_the_repository_root_is_the_nbgrader_course_root():
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(h.REPO)).load_config()
    assert config.CourseDirectory.source_directory == "solutions"
    assert config.CourseDirectory.release_directory == "notebooks"
    assert config.OverwriteCells.add_missing_cells is True   # a deleted test cell is put back and graded
    assert 0 < config.ExecutePreprocessor.timeout <= 300


def test_the_manifest_lists_every_lesson_of_the_course():
    on_disk = sorted(p.relative_to(h.REPO).as_posix() for p in (h.REPO / "solutions").glob("*/*.ipynb"))
    assert sorted(lesson.path for lesson in LESSONS) == on_disk
    assert len(CODE_LESSONS) == 9


@pytest.mark.parametrize("assignment", course.assignments())
def test_each_assignment_folder_holds_exactly_its_lessons(assignment):
    expected = sorted(f"{lesson.name}.ipynb" for lesson in course.lessons(assignment))
    for folder in ("solutions", "notebooks"):
        assert sorted(p.name for p in (h.REPO / folder / assignment).iterdir()) == expected, folder


@pytest.mark.parametrize("copy", ["path", "released_path"], ids=["solutions", "notebooks"])
@by_name(LESSONS)
def test_notebooks_are_valid_and_committed_without_outputs(lesson, copy):
    nb = h.load(h.REPO / getattr(lesson, copy))
    nbformat.validate(nb)
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")


@by_name(CODE_LESSONS)
def test_answer_and_test_cells_follow_the_grade_id_conventions(lesson):
    nb = solution(lesson)
    h.check_exercise_cells(nb, names(lesson))
    for exercise in lesson.exercises:   # the manifest's points are the notebook's
        test = h.cell(nb, f"test_{exercise.name}")
        assert test.metadata.nbgrader["points"] == exercise.points, exercise.name


@by_name(CODE_LESSONS)
def test_the_autograder_runs_only_the_setup_answers_tests_and_starter_code(lesson):
    nb = solution(lesson)
    graded = h.graded_cells(nb)
    assert "setup()" in graded[0].source, "the setup cell comes first"
    for c in graded[1:]:
        starter = any(tag.startswith("starter:") for tag in c.metadata.get("tags", []))
        assert h.grade_id(c) or starter, f"{lesson.name}: a code cell neither graded nor an experiment: {c.source[:80]}"


@by_name(CODE_LESSONS)
def test_released_notebooks_hide_tests_and_solutions_but_keep_the_visible_checks(lesson):
    nb = h.load(h.REPO / lesson.released_path)
    text = "\n".join(c.source for c in nb.cells)
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
    for name in names(lesson):
        assert "raise NotImplementedError()" in h.cell(nb, name).source
        visible = h.cell(nb, f"test_{name}").source
        assert f"Checker({name}" in visible and re.search(r"check\.(matches|equals|call)\(", visible), name


@by_name(CODE_LESSONS)
def test_lessons_read_like_a_chapter(lesson):
    nb = solution(lesson)
    text = markdown(nb)
    for section in SECTIONS:
        assert section in text, f"{lesson.name} lacks a '{section}' section"
    assert "$$" in text, "key equations in LaTeX"
    for name in names(lesson):
        assert re.search(rf"^## (\d+\. )?Exercise \d+ — `{name}\(", text, re.M), f"no exercise section for {name}"
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert any("plt.show()" in c.source for c in experiments), "an experiment with a plot"


@by_name(CODE_LESSONS)
def test_every_exercise_has_hints_in_tiers(lesson):
    """A nudge first, the key idea last (tests/course/test_assessment.py checks what they give away)."""
    text = markdown(solution(lesson))
    tiers = re.findall(r"<summary><b>(Hint \d+ · [^<]+)</b></summary>", text)
    assert "<summary><b>Hint</b></summary>" not in text, "a single-tier hint left"
    assert tiers.count("Hint 1 · a nudge") == len(lesson.exercises), tiers
    assert sum(t.endswith("· the key idea") for t in tiers) == len(lesson.exercises), tiers


@by_name(LESSONS)
def test_the_lesson_states_its_time_and_exercises_in_the_manifest(lesson):
    assert lesson.minutes > 0
    assert all(e.minutes > 0 and e.points > 0 and e.lesson == lesson.name for e in lesson.exercises)
