"""The two nbgrader preprocessors ``kdlab grade`` adds to nbgrader's own pipeline.

:class:`BoundedExecute` is nbgrader's ``Execute`` with a cap on the output a
notebook may send while it runs: nbclient keeps every output in memory, so a
hand-in that prints in a loop would otherwise grow the grader until it falls
over. Past the cap, display data is dropped and each stream of a cell keeps one
notice in its place, so a cell that wrote to stderr still has stderr output and
errors are always kept: nbgrader scores a test cell from its errors, its stderr
and its result, so the cap never changes a score.

:class:`HideHiddenTestTracebacks` runs before nbgrader's ``ClearHiddenTests``
when feedback is generated: an error in a test cell that holds hidden tests
keeps its message (what the course author wrote for the learner) but loses its
traceback, which would quote the hidden test's source lines.
"""

from __future__ import annotations

import copy
import json

from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Integer, Unicode

# What happened while this process executed its notebook (one notebook per worker process).
STATS: dict = {"dropped_bytes": 0, "truncated_cells": set(), "exception": None}

TRUNCATION_NOTICE = "\n[kdlab grade: output past the limit of {limit} was dropped]\n"
_OUTPUT_MESSAGES = {"stream", "display_data", "execute_result", "update_display_data", "comm_msg"}
_RESULT_TEXT_LIMIT = 64 * 1024


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def _content_size(msg_type: str, content: dict) -> int:
    if msg_type == "stream":
        return len(content.get("text", ""))
    if msg_type in ("display_data", "execute_result", "update_display_data"):
        total = 0
        for value in (content.get("data") or {}).values():
            total += len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
        return total
    return len(json.dumps(content.get("data"), default=str))


class BoundedExecute(Execute):
    """nbgrader's ``Execute``, keeping at most ``max_output_bytes`` of a notebook's outputs in memory."""

    max_output_bytes = Integer(
        8 * 2**20, help="Outputs a notebook may send while it runs before further output is dropped."
    ).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._kd_total = 0
        self._kd_noticed: set = set()
        try:
            return super().preprocess(nb, resources, km)
        except BaseException as exc:  # recorded for the worker's status, then nbgrader handles it as usual
            STATS["exception"] = f"{type(exc).__name__}: {str(exc)[:500]}"
            raise

    def process_message(self, msg, cell, cell_index):
        msg_type = msg.get("msg_type")
        if msg_type in _OUTPUT_MESSAGES:
            content = msg.get("content") or {}
            size = _content_size(msg_type, content)
            self._kd_total += size
            if self._kd_total > self.max_output_bytes:
                STATS["dropped_bytes"] += size
                STATS["truncated_cells"].add(cell_index)
                if msg_type == "stream":
                    key = (cell_index, content.get("name"))
                    if key in self._kd_noticed:
                        return None
                    self._kd_noticed.add(key)
                    msg = copy.copy(msg)
                    msg["content"] = {**content,
                                      "text": TRUNCATION_NOTICE.format(limit=human_bytes(self.max_output_bytes))}
                elif msg_type == "execute_result":
                    # nbgrader reads partial credit from text/plain (a number): keep a bounded text/plain.
                    data = content.get("data") or {}
                    text = data.get("text/plain", "")
                    if not isinstance(text, str):
                        text = json.dumps(text, default=str)
                    msg = copy.copy(msg)
                    msg["content"] = {**content, "data": {"text/plain": text[:_RESULT_TEXT_LIMIT]}}
                else:
                    return None
        return super().process_message(msg, cell, cell_index)


class HideHiddenTestTracebacks(NbGraderPreprocessor):
    """In cells holding hidden tests, replace an error's traceback by its one-line message."""

    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and self.begin_test_delimeter in cell.source:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources
