"""The trusted scorer: build a lesson's plan from its solution, and score a hand-in from what its sandbox recorded.

Both run the solution notebook's own cells (instructor code from
``solutions/``), never a hand-in's: the setup cells, then each test cell,
visible checks and hidden tests alike, with the exercise's function replaced
by a stand-in (:mod:`.replay`). :func:`build_plan` runs them against the
solution and keeps every call (the hidden inputs); :func:`judge` runs them
against the learner's recorded answers and says, per test cell, whether it
passed. A test cell is all or nothing, as under nbgrader.

Failure messages of the visible checks are shown as they are; a failure in
the hidden tests shows only which case failed and its hint, never the
expected value.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass

import torch

from ..lessons import is_experiment
from . import replay
from . import transport as tr

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"


class PlanError(RuntimeError):
    """A solution notebook's tests fail on its own solution: the course cannot be graded."""


@dataclass
class Cell:
    index: int
    kind: str          # "code" (setup or plain), "answer", "test", "manual", "markdown", "experiment"
    grade_id: str | None
    source: str
    points: float = 0.0
    cell_type: str = "code"


def source_of(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def lesson_cells(nb) -> list:
    """The cells of a solution notebook with their role for grading."""
    out = []
    for i, c in enumerate(nb["cells"]):
        meta = (c.get("metadata") or {}).get("nbgrader") or {}
        gid = meta.get("grade_id")
        src = source_of(c)
        ctype = c.get("cell_type", "code")
        if ctype != "code":
            kind = "manual" if meta.get("solution") and meta.get("grade") else "markdown"
        elif is_experiment(src):
            kind = "experiment"
        elif meta.get("solution") and meta.get("grade"):
            kind = "manual"
        elif meta.get("solution"):
            kind = "answer"
        elif meta.get("grade"):
            kind = "test"
        else:
            kind = "code"
        out.append(Cell(i, kind, gid, src, float(meta.get("points") or 0.0), ctype))
    return out


def split_hidden(source: str) -> tuple[str, str, str]:
    """(before, hidden, after) of a test cell's source; ``hidden`` is "" when it has no hidden tests."""
    lines = source.splitlines(keepends=True)
    begin = next((i for i, line in enumerate(lines) if line.strip() == HIDDEN_BEGIN), None)
    if begin is None:
        return source, "", ""
    end = next((i for i in range(begin + 1, len(lines)) if lines[i].strip() == HIDDEN_END), len(lines))
    return "".join(lines[:begin]), "".join(lines[begin + 1:end]), "".join(lines[end + 1:])


@contextlib.contextmanager
def _quietly():
    """Instructor code prints its all-clear and plots: keep the scorer's own output clean."""
    previous = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    rng = torch.get_rng_state()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        torch.set_rng_state(rng)
        if previous is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = previous


def _run(source: str, ns: dict, label: str) -> None:
    exec(compile(source, f"<{label}>", "exec"), ns)  # noqa: S102 - instructor code from solutions/


def _fresh_namespace() -> dict:
    return {"__name__": "__main__", "__builtins__": __builtins__}


def build_plan(nb) -> dict:
    """A solution notebook's plan: ``{"answers": [names], "tests": {test_id: [call, ...]}, "points", "rng"}``."""
    cells = lesson_cells(nb)
    ns = _fresh_namespace()
    solutions: dict = {}
    plan = {"answers": [], "tests": {}, "points": {}}
    with _quietly():
        torch.manual_seed(0)
        for cell in cells:
            if cell.kind == "code":
                _run(cell.source, ns, f"setup cell {cell.index + 1}")
            elif cell.kind == "answer":
                _run(cell.source, ns, cell.grade_id or f"cell {cell.index + 1}")
                name = cell.grade_id
                if not callable(ns.get(name)):
                    raise PlanError(f"the answer cell {name!r} defines no function {name}()")
                solutions[name] = ns[name]
                plan["answers"].append(name)
            elif cell.kind == "test":
                # The scorer starts each test cell from this same RNG state: how far an earlier cell got
                # (it stops at its first failure) must not change the inputs of the next one.
                plan.setdefault("rng", {})[cell.grade_id] = torch.get_rng_state()
                calls: list = []
                for name, fn in solutions.items():
                    ns[name] = replay.PlanProxy(name, fn, ns, calls)
                try:
                    _run(cell.source, ns, cell.grade_id)
                except Exception as e:  # noqa: BLE001
                    raise PlanError(f"{cell.grade_id} fails on the solution: {type(e).__name__}: {e}") from e
                finally:
                    ns.update(solutions)
                plan["tests"][cell.grade_id] = calls
                plan["points"][cell.grade_id] = cell.points
    return plan


def _redacted(message: str) -> str:
    """A hidden check's failure without its expected value: the case and the hint."""
    lines = [line for line in message.splitlines() if line.strip()]
    if not lines:
        return "a hidden test failed"
    keep = [lines[0]]
    keep += [line.strip() for line in lines[1:] if line.strip().startswith("hint:")]
    return "\n".join(keep)


@dataclass
class Verdict:
    grade_id: str
    points: float
    passed: bool
    message: str
    hidden: bool = False    # the failure was in the hidden tests


def judge(nb, plan: dict, observed: dict) -> dict:
    """``{test_id: Verdict}``: each test cell of the solution notebook run on the learner's recorded answers."""
    from ..checks import CheckFailed

    cells = lesson_cells(nb)
    ns = _fresh_namespace()
    out = {}
    tests_seen = type(observed) is dict
    with _quietly():
        torch.manual_seed(0)
        for cell in cells:
            if cell.kind == "code":
                _run(cell.source, ns, f"setup cell {cell.index + 1}")
                continue
            if cell.kind != "test":
                continue
            tid = cell.grade_id
            calls = plan["tests"].get(tid, [])
            records = observed.get(tid) if tests_seen else None
            if type(records) is not list:
                records = []
            for name in plan["answers"]:
                pairs = [(c, records[i] if i < len(records) else None) for i, c in enumerate(calls) if c["fn"] == name]
                ns[name] = replay.JudgeProxy(name, pairs)
            if tid in plan.get("rng", {}):
                torch.set_rng_state(plan["rng"][tid])
            before, hidden, after = split_hidden(cell.source)
            verdict = Verdict(tid, cell.points, True, "")
            for part, is_hidden in ((before, False), (hidden, True), (after, False)):
                if not part.strip():
                    continue
                try:
                    _run(part, ns, tid)
                except replay.GradingError as e:
                    # The learner's earlier answers changed the test's own objects (a model they modified, say),
                    # so later checks meet other inputs than the course was built with: the cell cannot pass.
                    verdict = Verdict(tid, cell.points, False, f"the test could not go on with your answers: {e}")
                    break
                except CheckFailed as e:
                    text = str(e)
                    verdict = Verdict(tid, cell.points, False, _redacted(text) if is_hidden else text, is_hidden)
                    break
                except tr.DecodeError as e:
                    verdict = Verdict(tid, cell.points, False, f"what your notebook recorded cannot be read: {e}")
                    break
                except Exception as e:  # noqa: BLE001 - a check that broke on the learner's answer fails
                    text = f"{type(e).__name__}: {e}"
                    verdict = Verdict(tid, cell.points, False, _redacted(text) if is_hidden else text, is_hidden)
                    break
            out[tid] = verdict
    return out


SUSPICIOUS = re.compile(
    r"get_ipython|settrace|setprofile|sys\.modules|/proc|sqlite3|__globals__|f_locals|f_back|_getframe|"
    r"inspect\.|linecache|ctypes|subprocess|os\.fork|setsid|importlib|builtins|__class__|__subclasses__|"
    r"gc\.get_|os\.environ|socket|urllib|\.kdlab-grade|gradebook")


def suspicious(sources: dict) -> list:
    """Answer cells that touch the grader's machinery: ``[(grade_id, what)]``, for the instructor to look at."""
    found = []
    for gid, src in sources.items():
        hits = sorted({m.group(0) for m in SUSPICIOUS.finditer(src or "")})
        if hits:
            found.append((gid, ", ".join(hits[:5])))
    return found
