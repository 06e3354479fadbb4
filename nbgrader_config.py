"""nbgrader configuration: the repository root is the course root (see docs/course.md).

    nbgrader generate_assignment part1_foundations --force   # solutions/ -> notebooks/
    nbgrader autograde part1_foundations                      # submitted/ -> autograded/

Grading executes only the setup, answer and test cells of a lesson: cells
marked ``#| experiment`` are skipped while nbgrader runs (kdlab/lessons.py).
"""

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

# Instructors write solutions/<part>/<lesson>.ipynb; learners get notebooks/<part>/<lesson>.ipynb.
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"

# A test cell the learner deleted is put back and graded (not silently scored 0).
c.OverwriteCells.add_missing_cells = True

# Per-cell limit while grading: a test cell runs in well under a second; this only stops runaway answers.
c.ExecutePreprocessor.timeout = 60
