"""Checks that the lessons' test cells run on a learner's function.

A test cell wraps the learner's function in a :class:`Checker` and states its
cases; the first case that fails raises :class:`CheckFailed` with a message
that names the case, shows the call, what was expected and what came back::

    check = Checker(softmax_t, reference=kdlab.losses.softmax_t)
    check.matches("[1, 2, 3] at T = 1", torch.tensor([1.0, 2.0, 3.0]), 1.0)
    check.raises("T = 0 is rejected", ValueError, torch.tensor([1.0, 2.0]), 0.0)
    check.done()

Every call of the learner's function

* gets copies of the inputs, and the case fails if the function changed them
  in place;
* runs with stderr (Python's and the process's file descriptor 2), logging and
  Python warnings swallowed: nbgrader scores a test cell 0 when anything
  reaches stderr, and a correct answer must never lose points to noise;
* is watched for calls into kdlab: the exercises are the learner's own code, so
  a function that is, or calls, a kdlab reference fails. Names listed in
  ``trusted`` are the exception: while the check runs, the learner's globals of
  those names are replaced by kdlab's reference, so that an exercise that calls
  another exercise (``distillation_loss`` calling ``kd_kl``) is graded on its
  own code alone.

The expected values come from ``reference`` (computed outside the watch) or
are given explicitly.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import site
import sys
import sysconfig
import tempfile
import traceback
import warnings
from typing import Any, Callable

import torch

__all__ = ["CheckFailed", "Checker", "LogitsProbe", "as_pairs", "quiet", "randn", "show"]

_KDLAB_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_GRADING_DIR = _KDLAB_DIR + "grading" + os.sep   # kdlab grade's stand-ins for the learner's functions
_THIS_FILE = os.path.abspath(__file__)
_trusted_depth = 0  # > 0 while a trusted kdlab reference runs on the learner's behalf


MAX_FEEDBACK_LINES = 10  # the whole output of one failed check, as the learner reads it


class CheckFailed(AssertionError):
    """A check of the learner's function failed; the message says which case and why.

    ``learner_error`` is the exception the learner's own code raised, if any.
    IPython (the notebook, and nbgrader's Validate, which shows the kernel's
    traceback lines) renders it through :meth:`_render_traceback_`: the message
    and the learner's own frames, at most :data:`MAX_FEEDBACK_LINES` lines,
    without kdlab's frames or a chained traceback that would bury the message.
    """

    learner_error: BaseException | None = None

    def _render_traceback_(self) -> list[str]:
        return feedback_lines(self)


def _library_dirs() -> tuple[str, ...]:
    """Folders of installed code (the standard library, site-packages): not the learner's code."""
    found = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            found.add(sysconfig.get_paths()[key])
    with contextlib.suppress(AttributeError):
        found.update(site.getsitepackages())
    with contextlib.suppress(AttributeError):
        found.add(site.getusersitepackages())
    return tuple(os.path.abspath(d) + os.sep for d in found if d) + (_KDLAB_DIR,)


def _frame_label(filename: str, lineno, name: str) -> str:
    """IPython's name for a cell ("Cell In[3], line 4"), else the file's."""
    with contextlib.suppress(Exception):
        from IPython import get_ipython

        shell = get_ipython()
        named = shell.compile.format_code_name(filename) if shell is not None else None
        if named:
            return f"{named[0]} {named[1]}, line {lineno}, in {name}"
    return f'File "{filename}", line {lineno}, in {name}'


def learner_frames(error: BaseException | None) -> list[list[str]]:
    """Where the learner's code raised ``error``: one ``[location, source line]`` per frame of theirs,
    outermost first (kdlab's, the standard library's and installed packages' frames left out)."""
    if error is None or error.__traceback__ is None:
        return []
    skip = _library_dirs()
    frames = []
    for fs in traceback.extract_tb(error.__traceback__):
        path = fs.filename
        if os.path.isabs(path) and os.path.abspath(path).startswith(skip):
            continue
        if path.startswith("<frozen "):
            continue
        block = [f"  in your code: {_frame_label(path, fs.lineno, fs.name)}"]
        if fs.line:
            block.append(f"      {fs.line.strip()}")
        frames.append(block)
    return frames


def feedback_lines(error: CheckFailed) -> list[str]:
    """What the learner reads for a failed check: its message, then where their own code raised (if it
    did), before the hint; at most :data:`MAX_FEEDBACK_LINES` lines (the innermost frames kept)."""
    lines = f"{type(error).__name__}: {error}".splitlines() or [type(error).__name__]
    if len(lines) > MAX_FEEDBACK_LINES:   # an over-long message keeps its head and its last line (the hint)
        lines = lines[:MAX_FEEDBACK_LINES - 2] + ["  ..."] + lines[-1:]
    hint = lines[-1:] if len(lines) > 1 and lines[-1].lstrip().startswith("hint:") else []
    body = lines[:len(lines) - len(hint)]
    room = MAX_FEEDBACK_LINES - len(lines)
    kept: list[list[str]] = []
    for block in reversed(learner_frames(error.learner_error)):
        if len(block) > room:
            break
        kept.insert(0, block)
        room -= len(block)
    return body + [line for block in kept for line in block] + hint


def _error_text(error: BaseException) -> str:
    """``Type: message`` on one line (a multi-line message keeps its first line)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" + (" ..." if first != text else "")


class _NoGraph(Exception):
    """The learner's result has no autograd graph back to the input."""


def randn(*shape: int, seed: int = 0, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """Reproducible normal noise for test cases (its own generator: global RNG untouched)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype) * scale


@contextlib.contextmanager
def quiet():
    """Swallow everything written to stderr, logged, or warned inside the block."""
    for stream in (sys.stderr, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    saved_fd = sink = None
    try:
        saved_fd = os.dup(2)
        sink = tempfile.TemporaryFile()
        os.dup2(sink.fileno(), 2)
    except OSError:  # no file descriptor 2 to redirect: Python-level redirection still applies
        if saved_fd is not None:
            os.close(saved_fd)
        saved_fd = None
    previous_disable = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous_disable)
        if saved_fd is not None:
            with contextlib.suppress(Exception):
                sys.__stderr__.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        if sink is not None:
            sink.close()


@contextlib.contextmanager
def _watch_kdlab(calls: list):
    """Record into ``calls`` every kdlab function entered inside the block (this module excepted)."""
    def hook(frame, event, arg):
        if event == "call" and not _trusted_depth:
            filename = frame.f_code.co_filename
            if filename.startswith(_KDLAB_DIR) and filename != _THIS_FILE and not filename.startswith(_GRADING_DIR):
                module = frame.f_globals.get("__name__", "kdlab")
                calls.append(f"{module}.{getattr(frame.f_code, 'co_qualname', frame.f_code.co_name)}")
    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)


def _trust(reference: Callable) -> Callable:
    @functools.wraps(reference)
    def call(*args, **kwargs):
        global _trusted_depth
        _trusted_depth += 1
        try:
            return reference(*args, **kwargs)
        finally:
            _trusted_depth -= 1
    return call


def _copy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone().requires_grad_(x.requires_grad)
    if isinstance(x, (list, tuple)):
        return type(x)(_copy(v) for v in x)
    return x


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(
            torch.nan_to_num(a.detach()), torch.nan_to_num(b.detach()))
    return True


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(u) for u in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def show(x, limit: int = 24, brief: bool = False) -> str:
    """A short, readable rendering of a value for a failure message (``brief``: big tensors by shape only)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.numel() <= limit:
            return f"tensor({_fmt(x.tolist())})" if x.dim() else f"tensor({_fmt(x.item())})"
        if brief:
            return f"<{x.dtype} tensor of shape {tuple(x.shape)}>"
        head = ", ".join(_fmt(v) for v in x.reshape(-1)[:6].tolist())
        return f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}, starting [{head}, ...]"
    text = repr(x)
    return text if len(text) <= 300 else text[:300] + " ..."


class LogitsProbe(torch.nn.Module):
    """A "model" whose logits are its input rows, negated in training mode (like dropout, training
    mode changes what it predicts). It records every batch size and whether gradients were on.

    Lesson 4's test of ``count_errors`` feeds it to the learner's function (it lives here, not in
    the test cell, so that ``kdlab grade`` can rebuild it in the sandbox)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.batch_sizes, self.grad_enabled = [], []

    def forward(self, x):
        self.batch_sizes.append(len(x))
        self.grad_enabled.append(torch.is_grad_enabled())
        return -x * self.scale if self.training else x * self.scale


def as_pairs(result) -> list[tuple[int, int]]:
    """Normalize a list of class pairs: each as (smaller, larger) Python ints, order kept."""
    return [tuple(sorted((int(a), int(b)))) for a, b in result]


class Checker:
    """Runs cases against a learner's function and explains the first failure."""

    def __init__(self, fn: Callable, reference: Callable | None = None, *, name: str | None = None,
                 trusted: dict[str, Callable] | None = None):
        __tracebackhide__ = True
        self.name = (name or getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None)
                     or "your function")
        self.fn = fn
        self.reference = reference
        self.trusted = {k: _trust(v) for k, v in (trusted or {}).items()}
        self.count = 0
        tell = getattr(fn, "_kdlab_trusted", None)   # kdlab grade's stand-ins record the trusted helpers
        if callable(tell) and type(fn).__module__ == "kdlab.grading.replay":
            tell(self.trusted)
        if not callable(fn):
            raise CheckFailed(f"{self.name} is not a function (got {type(fn).__name__}): "
                              "run the cell that defines it first")
        module = getattr(fn, "__module__", None) or ""
        if module == "kdlab" or module.startswith("kdlab."):
            raise CheckFailed(f"{self.name} is kdlab's own {module}.{getattr(fn, '__qualname__', '?')}, "
                              "not your code: write the function yourself (torch is allowed, kdlab is not)")

    # -- running the learner's function ---------------------------------------------------------
    def _fail(self, case: str, lines: list[str], hint: str | None = None, cause=None):
        __tracebackhide__ = True
        text = f"{self.name} failed the case: {case}\n" + "\n".join("  " + line for line in lines)
        if hint:
            text += f"\n  hint: {hint}"
        failure = CheckFailed(text)
        failure.learner_error = cause   # shown as the learner's frames only (see CheckFailed), not as a chain
        raise failure from None

    def _call_text(self, args) -> str:
        return f"called   {self.name}({', '.join(show(a, limit=12, brief=True) for a in args)})"

    @contextlib.contextmanager
    def _substituted(self):
        namespace = getattr(self.fn, "__globals__", None)
        saved = {}
        if namespace is not None:
            for key, value in self.trusted.items():
                if key in namespace and key != self.name:
                    saved[key] = namespace[key]
                    namespace[key] = value
        try:
            yield
        finally:
            if namespace is not None:
                namespace.update(saved)

    def _run(self, args, grad_of: tuple[int, ...] = (), weights=None):
        """Run the learner's function on copies of ``args``: (result, copies, error, kdlab calls).

        For each index in ``grad_of`` the copy requires grad, and the result
        (times ``weights``, summed, if it is not a scalar) is back-propagated.
        """
        copies = [_copy(a) for a in args]
        for i in grad_of:
            copies[i].requires_grad_(True)
        kdlab_calls: list[str] = []
        result = error = None
        with quiet(), self._substituted(), _watch_kdlab(kdlab_calls):
            try:
                result = self.fn(*copies)
                if grad_of:
                    if not isinstance(result, torch.Tensor) or not result.requires_grad:
                        raise _NoGraph()
                    out = result if weights is None else (result * weights).sum()
                    out.sum().backward()
            except Exception as exc:  # noqa: BLE001 - reported as a failed case by the caller
                error = exc
        self.count += 1
        return result, copies, error, kdlab_calls

    def _explain(self, case, args, copies, error, kdlab_calls, hint):
        """Fail ``case`` for a kdlab call, an exception, or an input changed in place."""
        __tracebackhide__ = True
        if kdlab_calls:
            self._fail(case, [self._call_text(args),
                              f"it calls kdlab's {kdlab_calls[0]}: the exercise is to write this yourself "
                              "(torch is allowed, kdlab is not)"])
        if isinstance(error, _NoGraph):
            self._fail(case, [self._call_text(args), "expected a result that autograd can differentiate",
                              "got      a result with no gradient path back to the input"],
                       hint or "don't detach, convert to numpy or build a new tensor from Python numbers")
        if isinstance(error, NotImplementedError):
            self._fail(case, [self._call_text(args), "it raised NotImplementedError: "
                              "replace `raise NotImplementedError()` with your code"], cause=error)
        if error is not None:
            self._fail(case, [self._call_text(args), f"it raised {_error_text(error)}"], hint, cause=error)
        for original, copy in zip(args, copies):
            if not _same(original, copy):
                self._fail(case, [self._call_text(args), "it changed its input in place: "
                                  f"{show(original, 12)} became {show(copy, 12)}"],
                           hint or "work on new tensors (x - m, not x -= m)")

    def call(self, case: str, *args, hint: str | None = None) -> Any:
        """The learner's result on copies of ``args`` (quietly, watched for kdlab calls)."""
        __tracebackhide__ = True
        result, copies, error, kdlab_calls = self._run(args)
        self._explain(case, args, copies, error, kdlab_calls, hint)
        return result

    def expected(self, *args) -> Any:
        """The reference's answer for ``args`` (on copies, quietly)."""
        if self.reference is None:
            raise ValueError("this Checker has no reference: pass expected= explicitly")
        with quiet():
            return self.reference(*[_copy(a) for a in args])

    # -- cases --------------------------------------------------------------------------------
    def matches(self, case: str, *args, expected=None, atol: float = 1e-5, rtol: float = 1e-4,
                hint: str | None = None) -> Any:
        """The learner's result is a tensor equal (allclose) to ``expected`` or the reference's."""
        __tracebackhide__ = True
        want = self.expected(*args) if expected is None else expected
        got = self.call(case, *args, hint=hint)
        self.compare(case, got, want, args=args, atol=atol, rtol=rtol, hint=hint)
        return got

    def compare(self, case: str, got, want, *, args=(), atol: float = 1e-5, rtol: float = 1e-4,
                hint: str | None = None) -> None:
        """Fail ``case`` unless ``got`` is a tensor close to ``want`` (same shape, finite)."""
        __tracebackhide__ = True
        want = torch.as_tensor(want)
        head = [self._call_text(args)] if args else []
        problem = None
        if not isinstance(got, torch.Tensor):
            problem = f"expected a torch.Tensor, got {type(got).__name__}: {show(got)}"
        elif tuple(got.shape) != tuple(want.shape):
            problem = (f"expected shape {tuple(want.shape)}, got shape {tuple(got.shape)}\n"
                       f"  expected {show(want)}\n  got      {show(got)}")
        elif not got.is_floating_point():
            problem = f"expected floating-point values, got dtype {got.dtype}: {show(got)}"
        else:
            g, w = got.detach().cpu().double(), want.detach().cpu().double()
            if not torch.isfinite(g[torch.isfinite(w)]).all():
                problem = f"expected finite values {show(want)}\n  got      {show(got)} (NaN or inf)"
            elif not torch.allclose(g, w, atol=atol, rtol=rtol, equal_nan=True):
                diff = (g - w).abs().nan_to_num(float("inf"))
                worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
                problem = (f"expected {show(want)}\n  got      {show(got)}\n"
                           f"  largest difference {float(diff.max()):.3g} at index {worst}")
        if problem:
            self._fail(case, head + problem.split("\n  "), hint)

    def equals(self, case: str, *args, expected=None, normalize: Callable | None = None,
               hint: str | None = None) -> Any:
        """The learner's result equals ``expected`` (after ``normalize``, if given)."""
        __tracebackhide__ = True
        want = self.expected(*args) if expected is None else expected
        got = self.call(case, *args, hint=hint)
        try:
            ok = (normalize(got) if normalize else got) == want
        except Exception as exc:  # noqa: BLE001
            ok, got = False, f"{show(got)} (unreadable: {type(exc).__name__}: {exc})"
        if not ok:
            self._fail(case, [self._call_text(args), f"expected {show(want)}", f"got      {show(got)}"], hint)
        return got

    def raises(self, case: str, error: type[BaseException], *args, hint: str | None = None) -> None:
        """Calling with ``args`` raises ``error``."""
        __tracebackhide__ = True
        result, copies, raised, kdlab_calls = self._run(args)
        if kdlab_calls or isinstance(raised, NotImplementedError):
            self._explain(case, args, copies, raised, kdlab_calls, hint)
        if isinstance(raised, error):
            return
        what = (f"it returned {show(result)}" if raised is None
                else f"it raised {_error_text(raised)}")
        self._fail(case, [self._call_text(args), f"expected it to raise {error.__name__}", what], hint, cause=raised)

    def gradient(self, case: str, *args, wrt: int = 0, weights=None, atol: float = 1e-5, rtol: float = 1e-4,
                 hint: str | None = None) -> None:
        """The gradient of the result (times ``weights``, summed) w.r.t. ``args[wrt]`` matches the reference's."""
        __tracebackhide__ = True
        result, copies, error, kdlab_calls = self._run(args, grad_of=(wrt,), weights=weights)
        self._explain(case, args, copies, error, kdlab_calls, hint)
        got = copies[wrt].grad
        ref_args = [_copy(a) for a in args]
        ref_args[wrt].requires_grad_(True)
        with quiet():
            out = self.reference(*ref_args)
            (out if weights is None else (out * weights).sum()).sum().backward()
        want = ref_args[wrt].grad
        if got is None:
            self._fail(case, [self._call_text(args), f"expected a gradient like {show(want)}",
                              "got      no gradient at all"], hint)
        self.compare(case + " (gradient)", got, want, args=args, atol=atol, rtol=rtol, hint=hint)

    def no_gradient(self, case: str, *args, wrt: int = 1, hint: str | None = None) -> None:
        """Back-propagating the result leaves ``args[wrt]`` without gradient (a fixed target, e.g. the teacher)."""
        __tracebackhide__ = True
        result, copies, error, kdlab_calls = self._run(args, grad_of=tuple(sorted({0, wrt})))
        if isinstance(error, _NoGraph):  # nothing depends on any input with a graph: no gradient anywhere
            error = None
        self._explain(case, args, copies, error, kdlab_calls, hint)
        grad = copies[wrt].grad
        if grad is not None and bool(grad.abs().max() > 0):
            self._fail(case, [self._call_text(args), f"expected no gradient on argument {wrt + 1}",
                              f"got      gradient {show(grad)}"], hint or "detach it: x.detach()")

    def require(self, case: str, ok: bool, expected: str, got: str, hint: str | None = None) -> None:
        """A free-form condition: fail ``case`` with the two descriptions unless ``ok``."""
        __tracebackhide__ = True
        self.count += 1
        if not ok:
            self._fail(case, [f"expected {expected}", f"got      {got}"], hint)

    def done(self) -> None:
        """Print the all-clear (stdout only: the cell keeps its points)."""
        print(f"\u2714 {self.name}: all {self.count} checks passed")
