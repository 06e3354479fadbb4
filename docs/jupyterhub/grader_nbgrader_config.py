"""nbgrader settings of the grader account: copy to /home/grader-kdlab/.jupyter/nbgrader_config.py.

The grader service (the formgrader) runs in /home/grader-kdlab, where the
course repository is cloned as ./kdlab. The formgrader loads this file and
the global one, not the course's own nbgrader_config.py, so the course's
settings are repeated here (tests/docs/test_docs.py checks that they stay the
same as the repository's nbgrader_config.py).
"""

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

from kdlab.grading.preprocessors import HideHiddenTestTracebacks

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.root = "/home/grader-kdlab/kdlab"

# The course's own settings (its nbgrader_config.py): instructors write solutions/, learners get notebooks/.
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.OverwriteCells.add_missing_cells = True     # a deleted test cell is put back and graded
c.ExecutePreprocessor.timeout = 60             # per cell, while grading

# Feedback without the hidden tests: nbgrader's feedback pages otherwise show every hidden test, and with it
# the answer of every multiple-choice and numeric question (lesson 10), to the learner and to next year's class.
# HideHiddenTestTracebacks (kdlab grade uses it too) also drops the tracebacks that would quote them.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTestTracebacks, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
