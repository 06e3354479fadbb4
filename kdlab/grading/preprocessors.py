"""The nbgrader preprocessor ``kdlab grade`` adds to nbgrader's feedback pipeline.

:class:`HideHiddenTestTracebacks` runs before nbgrader's ``ClearHiddenTests``
when feedback is generated: an error in a test cell that holds hidden tests
keeps its message (what the course author wrote for the learner) but loses its
traceback, which would quote the hidden test's source lines.
"""

from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode


class HideHiddenTestTracebacks(NbGraderPreprocessor):
    """In cells holding hidden tests, replace an error's traceback by its one-line message."""

    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and self.begin_test_delimeter in cell.source:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources
