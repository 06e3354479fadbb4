"""The one program that runs a learner's code: inside the sandbox, one hand-in at a time.

``kdlab grade`` starts it under bubblewrap (:mod:`.bwrap`) as::

    python -I -c "import sys; sys.path.insert(0, LIB); from kdlab.grading.sandbox import main; main()"

where LIB holds the sandbox's own small copy of kdlab: the lesson plumbing
(``lessons``, ``settings``, ``checks``) and this package's sandbox side, and
no reference implementation of any exercise; every other ``kdlab`` module
imports as a stand-in whose functions refuse to run. It reads
``/job/in/run.json`` (the notebook's code cells, restored and in order: the
course's setup cells, the learner's answer cells and extra cells, and a
*probe* where each test cell stood) and ``/job/in/plan.pt`` (the hidden
inputs), runs the cells in one IPython shell with the hand-in's folder as
its working folder (never on ``sys.path``), and at each probe calls the
learner's function on the recorded inputs (:func:`.replay.perform`). It
sends its result through a pipe (``result_fd``): each cell's outputs
(bounded) and the records of the calls. Nothing here decides a score: the trusted scorer
reads that file as data.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import signal
import sys
import time
import types

JOB = "/job"


class _Unavailable:
    """Any name of a kdlab module the sandbox does not have: it exists, but refuses to be used."""

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _refuse(self, *args, **kwargs):
        raise RuntimeError(f"{self._name} is not available while kdlab grades a notebook: "
                           "graded exercises are your own code (torch is allowed, kdlab is not)")

    __call__ = __iter__ = __len__ = __getitem__ = __enter__ = _refuse

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self._name}.{attr}")

    def __repr__(self):
        return f"<{self._name}: not available while grading>"


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda attr: _Unavailable(f"{spec.name}.{attr}") if not attr.startswith("__") \
            else (_ for _ in ()).throw(AttributeError(attr))
        return module

    def exec_module(self, module):
        pass


class StubFinder(importlib.abc.MetaPathFinder):
    """``kdlab.X`` that the sandbox's kdlab does not ship imports as a stand-in module."""

    def __init__(self, lib: str):
        self.lib = lib

    def find_spec(self, name, path=None, target=None):
        if not name.startswith("kdlab."):
            return None
        rel = os.path.join(self.lib, *name.split("."))
        if os.path.isfile(rel + ".py") or os.path.isfile(os.path.join(rel, "__init__.py")):
            return None
        return importlib.machinery.ModuleSpec(name, _StubLoader(), is_package=True)


class _Bounded:
    """A text stream that keeps what fits in a shared budget and counts what it drops."""

    def __init__(self, name: str, budget: dict, sink: list):
        self.name, self.budget, self.sink = name, budget, sink
        self.encoding, self.errors = "utf-8", "replace"

    def write(self, text):
        if not isinstance(text, str):
            text = str(text)
        room = self.budget["left"]
        if room <= 0:
            self.budget["dropped"] += len(text)
            return len(text)
        kept = text[:room]
        self.budget["left"] -= len(kept)
        self.budget["dropped"] += len(text) - len(kept)
        if self.sink and self.sink[-1].get("output_type") == "stream" and self.sink[-1]["name"] == self.name:
            self.sink[-1]["text"] += kept
        else:
            self.sink.append({"output_type": "stream", "name": self.name, "text": kept})
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        raise OSError("no file descriptor")

    def writable(self):
        return True


class CellTimeout(BaseException):
    """The cell ran past the per-cell time limit and was interrupted (no ``except Exception`` swallows it)."""


def _alarm(signum, frame):
    raise CellTimeout("interrupted at the per-cell time limit")


def _shell(outputs_ref: dict, budget: dict):
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            size = sum(len(str(v)) for v in (data or {}).values())
            if size > budget["left"]:
                budget["dropped"] += size
                return
            budget["left"] -= size
            outputs_ref["current"].append({"output_type": "display_data",
                                           "data": {str(k): v if isinstance(v, str) else str(v)
                                                    for k, v in (data or {}).items()},
                                           "metadata": {}})

        def clear_output(self, wait=False):
            pass

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.xmode = "Context"
    shell = InteractiveShell.instance(config=config)
    shell.display_pub = Publisher(shell=shell)

    def showtraceback(etype, evalue, stb):
        text = shell.InteractiveTB.stb2text(stb) if stb else ""
        outputs_ref["current"].append({"output_type": "error", "ename": getattr(etype, "__name__", str(etype)),
                                       "evalue": str(evalue)[:2000], "traceback": text[-8000:].splitlines()})
    shell._showtraceback = showtraceback
    shell.ask_exit = lambda: setattr(shell, "exit_now", True)   # exit() and quit(), as a kernel's end it
    return shell


def _send(fd: int, data: dict) -> None:
    """The result, through the pipe the job reads (no file of the host is writable here)."""
    payload = json.dumps(data).encode("utf-8")
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)


def main(job: str = JOB) -> None:
    lib = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.meta_path.insert(0, StubFinder(lib))
    with open(os.path.join(job, "in", "run.json"), encoding="utf-8") as f:
        spec = json.load(f)
    result_fd = int(spec["result_fd"])
    handin = os.path.join(job, "handin")
    if os.path.isdir(handin) and os.path.realpath(handin) != os.path.realpath(os.getcwd()):
        import shutil

        shutil.copytree(handin, os.getcwd(), dirs_exist_ok=True)   # the hand-in's files, in its working folder
    import torch

    from . import replay

    plan = torch.load(os.path.join(job, "in", "plan.pt"), weights_only=False)
    budget = {"left": int(spec.get("max_output", 8 * 2**20)), "dropped": 0}
    outputs_ref: dict = {"current": []}
    shell = _shell(outputs_ref, budget)
    for entry in ("", ".", os.getcwd()):
        while entry in sys.path:
            sys.path.remove(entry)   # a kdlab/ or torch.py handed in must not shadow the real ones
    cell_timeout = int(spec.get("cell_timeout") or 0)
    signal.signal(signal.SIGALRM, _alarm)
    result = {"cells": {}, "observations": {}, "timed_out": [], "seconds": {}}
    real_out, real_err = sys.stdout, sys.stderr
    for cell in spec["cells"]:
        outputs: list = []
        outputs_ref["current"] = outputs
        sys.stdout, sys.stderr = _Bounded("stdout", budget, outputs), _Bounded("stderr", budget, outputs)
        start = time.perf_counter()
        probe = cell.get("probe")
        try:
            if cell_timeout:
                signal.alarm(cell_timeout)
            if probe:
                records = result["observations"][probe] = []
                for call in plan["tests"].get(probe, []):
                    fn = shell.user_ns.get(call["fn"])
                    records.append(replay.perform(fn, call, None) if callable(fn) else None)
            else:
                ran = shell.run_cell(cell["source"], store_history=False, silent=False)
                if isinstance(ran.error_in_exec, CellTimeout):
                    result["timed_out"].append(cell["index"])
                if shell.exit_now:   # exit() or quit(): a kernel would be gone, and so is this notebook's run
                    os._exit(3)
        except CellTimeout:
            result["timed_out"].append(cell["index"])
            outputs.append({"output_type": "error", "ename": "CellTimeoutError",
                            "evalue": f"interrupted after {cell_timeout} s", "traceback": []})
        except BaseException as e:  # noqa: BLE001 - a probe that broke records nothing more
            outputs.append({"output_type": "error", "ename": type(e).__name__, "evalue": str(e)[:500],
                            "traceback": []})
        finally:
            signal.alarm(0)
            sys.stdout, sys.stderr = real_out, real_err
        result["cells"][str(cell["index"])] = outputs
        result["seconds"][str(cell["index"])] = time.perf_counter() - start
    result["dropped_output"] = budget["dropped"]
    result["done"] = True
    _send(result_fd, result)
    sys.stdout.flush()
    os._exit(0)
