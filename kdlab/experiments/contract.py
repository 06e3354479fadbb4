"""What every experiment shares: its keywords, its settings, the header of its result, its tables.

An experiment is a function ``experiment(*, seed=0, fast=None, data=None,
device=None, progress=True, **options) -> Outcome``:

* ``fast`` None means "from ``KDLAB_FAST``"; ``data`` replaces the data set it
  would load; ``device`` the device it would pick;
* ``Outcome.result`` is JSON-ready and starts with the common header
  (:meth:`Run.finish`): ``experiment``, ``seed``, ``fast_mode``, ``device``,
  ``environment``, ``seconds`` (``total`` and any phases) and, where there is
  one, ``teacher`` (``arch``, ``test_errors``, ...); then its own fields;
* ``Outcome.models`` holds what a lesson looks into (trained models, logits,
  the data), never part of the result.

Its settings come from two dicts, ``DEFAULTS`` and ``FAST`` (what fast mode
changes), and the options the caller gave (:meth:`Run.config`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from typing import NamedTuple

import torch

from .. import __version__, settings


class Outcome(NamedTuple):
    """An experiment's JSON-ready result and, apart from it, the objects a lesson looks into."""

    result: dict
    models: dict


def environment() -> dict:
    """Where the numbers come from: versions, platform, threads."""
    return {"kdlab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "threads": torch.get_num_threads(), "cpus": os.cpu_count()}


class Run:
    """One run of an experiment: resolves ``fast`` and ``device``, keeps the clock, writes the header."""

    def __init__(self, name: str, *, seed: int, fast: bool | None = None, device=None):
        self.name, self.seed = name, seed
        self.fast = settings.fast_mode() if fast is None else bool(fast)
        self.device = device if isinstance(device, torch.device) else settings.default_device(device)
        self.seconds: dict = {}
        self._start = time.perf_counter()

    def config(self, defaults: dict, fast: dict, **given) -> dict:
        """``defaults``, with ``fast``'s values in fast mode, then every option given (not None)."""
        unknown = set(given) - set(defaults)
        if unknown:
            raise TypeError(f"{self.name}: unknown settings {sorted(unknown)}")
        return {**defaults, **(fast if self.fast else {}), **{k: v for k, v in given.items() if v is not None}}

    @contextlib.contextmanager
    def timed(self, phase: str):
        """Adds the block's wall time to ``seconds[phase]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = round(self.seconds.get(phase, 0.0) + time.perf_counter() - start, 1)

    def finish(self, fields: dict, *, teacher: dict | None = None, models: dict | None = None) -> Outcome:
        """The header, then ``fields``; ``seconds.total`` is the time since the run started."""
        result = {"experiment": self.name, "seed": self.seed, "fast_mode": self.fast, "device": str(self.device),
                  "environment": environment(),
                  "seconds": {**self.seconds, "total": round(time.perf_counter() - self._start, 1)}}
        if teacher is not None:
            result["teacher"] = teacher
        return Outcome({**result, **fields}, models or {})


def format_table(header, rows, *, left: int = 1, footer=None) -> str:
    """An aligned text table: the first ``left`` columns left-aligned, the others right-aligned.

    A rule goes under the header, and above the ``footer`` row if there is one.
    """
    body = [list(map(str, header)), *(list(map(str, r)) for r in rows)]
    if footer is not None:
        body.append(list(map(str, footer)))
    widths = [max(len(r[i]) for r in body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in body]
    rule = "-" * len(lines[0])
    lines.insert(1, rule)
    if footer is not None:
        lines.insert(len(lines) - 1, rule)
    return "\n".join(lines)


def fast_note(result: dict, text: str = " (KDLAB_FAST slice)") -> str:
    """``text`` for a fast-mode result, else nothing: for the first line of a summary."""
    return text if result["fast_mode"] else ""
