"""Record the calls a test cell makes, perform them in the sandbox, replay the answers to the scorer.

The hidden tests stay as the course author wrote them (``Checker`` cases in
the solution notebooks), and run only in the trusted scorer. They never call
a learner's function directly. Instead, three stand-ins take its place:

* :class:`PlanProxy` (trusted, once per course build): the test cell runs
  against the *solution*; every call of the exercise's function is recorded
  with a snapshot of its arguments (the hidden inputs), the RNG state and
  the grad mode. Where a check substitutes a trusted helper (``distillation_loss``
  graded with the reference ``kd_kl``), the helper's values and Jacobians on
  the arguments the solution passes it are recorded too.
* :func:`perform` (inside the sandbox): each recorded call is made on the
  learner's function; what comes out is data (:mod:`.transport`): the result,
  the arguments' state afterwards (values, gradients, modules' parameters,
  training flags and plain attributes), the Jacobian of a differentiable
  result with respect to the inputs that require grad, or the exception.
* :class:`JudgeProxy` (trusted, per hand-in): the same test cell runs again;
  each call returns the learner's recorded result, applies the recorded
  state to the arguments, and back-propagates through the recorded
  Jacobian. The call must have the same arguments as in the plan
  (a fingerprint), so the scorer is never out of step with the sandbox.

Expected outputs are computed by the scorer alone and never enter the sandbox.
"""

from __future__ import annotations

import builtins
import hashlib
import io

import torch
from torch import nn

from . import transport as tr

MAX_JACOBIAN_ROWS = 4096           # outputs with more elements replay without gradient
MAX_JACOBIAN_ENTRIES = 8 * 2**20   # rows x inputs


class GradingError(BaseException):
    """The scorer cannot replay a call (the plan and the test cell disagree): a bug of the course, not the learner's.

    A BaseException, so that no ``except Exception`` in a test cell turns it into a failed case."""


class ReplayedError(Exception):
    """Stands for an exception the learner's function raised that is no built-in exception."""


# ----------------------------------------------------------------------------- walking arguments

def _walk(x, depth: int = 0):
    """The objects inside ``x`` (lists, tuples and dicts opened), in a fixed order."""
    if depth > 8:
        return
    if type(x) in (list, tuple):
        for v in x:
            yield from _walk(v, depth + 1)
    elif type(x) is dict:
        for k in sorted(x, key=str):
            yield from _walk(x[k], depth + 1)
    else:
        yield x


def grad_leaves(args) -> list:
    """Tensors that require grad, and the modules' trainable parameters, in the arguments: what gradients reach."""
    out, seen = [], set()
    for x in _walk(args):
        found = [x] if isinstance(x, torch.Tensor) and x.requires_grad else \
            [p for p in x.parameters() if p.requires_grad] if isinstance(x, nn.Module) else []
        for t in found:
            if id(t) not in seen:
                seen.add(id(t))
                out.append(t)
    return out


def _feed_tensor(h, t: torch.Tensor) -> None:
    base = t.detach().cpu().contiguous()
    h.update(f"T{base.dtype}{tuple(base.shape)}{bool(t.requires_grad)}".encode())
    if base.numel():
        h.update(base.reshape(-1).view(torch.uint8).numpy().tobytes())


def fingerprint(args, *, values_only: bool = False) -> str:
    """A digest of the arguments as the function sees them, gradients aside (``values_only``: dtype, shape, values)."""
    h = hashlib.sha256()
    for x in _walk(args):
        if isinstance(x, torch.Tensor):
            if values_only:
                base = x.detach().cpu().contiguous()
                h.update(f"V{base.dtype}{tuple(base.shape)}".encode())
                if base.numel():
                    h.update(base.reshape(-1).view(torch.uint8).numpy().tobytes())
            else:
                _feed_tensor(h, x)
        elif isinstance(x, nn.Module):
            # Gradients are left out: they depend on how earlier answers back-propagated, which the
            # scorer replays from the learner's Jacobians, not the solution's.
            h.update(f"M{type(x).__qualname__}".encode())
            for name, m in x.named_modules():
                h.update(f"{name}:{type(m).__qualname__}:{m.training}".encode())
            for name, t in list(x.named_parameters()) + list(x.named_buffers()):
                h.update(name.encode())
                _feed_tensor(h, t)
        elif isinstance(x, torch.optim.Optimizer):
            h.update(f"O{type(x).__qualname__}".encode())
            for group in x.param_groups:
                h.update(repr(sorted((k, v) for k, v in group.items() if k != "params")).encode())
        elif isinstance(x, bool) or x is None or isinstance(x, str):
            h.update(f"S{x!r}".encode())
        elif isinstance(x, (int, float)):
            h.update(f"N{float(x)!r}".encode() if values_only else f"N{type(x).__name__}{x!r}".encode())
        else:
            h.update(f"?{type(x).__qualname__}".encode())
    return h.hexdigest()


def _grad_holders(args) -> list:
    out = []
    for x in _walk(args):
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, nn.Module):
            out.extend(x.parameters())
    return out


def snapshot(args, kwargs) -> bytes:
    """The arguments as bytes, to rebuild in the sandbox (trusted data going in: torch.save).

    Gradients already in ``.grad`` (a test may leave stale ones on purpose) travel too: pickling drops them."""
    buf = io.BytesIO()
    grads = [None if t.grad is None else t.grad.detach().clone() for t in _grad_holders((args, kwargs))]
    torch.save({"args": args, "kwargs": kwargs, "grads": grads}, buf)
    return buf.getvalue()


def restore(blob: bytes):
    data = torch.load(io.BytesIO(blob), weights_only=False)
    args, kwargs = data["args"], data["kwargs"]
    for t, g in zip(_grad_holders((args, kwargs)), data.get("grads") or []):
        if g is not None:
            t.grad = g
    return args, kwargs


# ----------------------------------------------------------------------------- state after a call

_PLAIN_ATTR = (bool, int, float, str, list, tuple)


def _module_state(module: nn.Module) -> list:
    out = []
    for name, m in module.named_modules(remove_duplicate=False):
        params = [[k, tr.encode_tensor(p), tr.encode(p.grad) if p.grad is not None else None, bool(p.requires_grad)]
                  for k, p in m._parameters.items() if p is not None]
        buffers = [[k, tr.encode_tensor(b)] for k, b in m._buffers.items() if b is not None]
        attrs = [[k, tr.encode(v)] for k, v in vars(m).items()
                 if not k.startswith("_") and k != "training"
                 and (type(v) in _PLAIN_ATTR or type(v) is torch.Tensor)]
        out.append([name, bool(m.training), params, buffers, attrs])
    return out


def capture_state(args) -> list:
    """What the call left in its arguments (inside the sandbox)."""
    out = []
    for x in _walk(args):
        try:
            if isinstance(x, torch.Tensor):
                out.append({"k": "tensor", "value": tr.encode_tensor(x),
                            "grad": tr.encode(x.grad) if x.grad is not None else None})
            elif isinstance(x, nn.Module):
                out.append({"k": "module", "modules": _module_state(x)})
            else:
                out.append({"k": "other"})
        except Exception as e:  # noqa: BLE001 - a state that cannot be read is recorded as such
            out.append({"k": "unreadable", "why": type(e).__name__})
    return out


def _set_tensor(t: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        t.data = value.to(t.device)


def _set_grad(t: torch.Tensor, node) -> None:
    if node is None:
        t.grad = None
        return
    g = tr.decode(node)
    if not isinstance(g, torch.Tensor) or g.shape != t.shape or g.dtype != t.dtype:
        raise tr.DecodeError("a gradient of the wrong shape or dtype")
    t.grad = g.detach()


def _apply_module(module: nn.Module, modules) -> None:
    tr._need(type(modules) is list, "bad module state")
    by_name = dict(module.named_modules(remove_duplicate=False))
    for item in modules:
        tr._need(type(item) is list and len(item) == 5 and type(item[0]) is str and type(item[1]) is bool,
                 "bad module entry")
        name, training, params, buffers, attrs = item
        m = by_name.get(name)
        if m is None:
            continue
        m.training = training
        tr._need(type(params) is list and type(buffers) is list and type(attrs) is list, "bad module entry")
        names = set()
        for p in params:
            tr._need(type(p) is list and len(p) == 4 and type(p[0]) is str and type(p[3]) is bool, "bad parameter")
            names.add(p[0])
            value = tr.decode_tensor(p[1])
            current = m._parameters.get(p[0])
            if current is None:
                m._parameters[p[0]] = current = nn.Parameter(value, requires_grad=p[3])
            else:
                _set_tensor(current, value)
                current.requires_grad_(p[3] and (value.is_floating_point() or value.is_complex()))
            _set_grad(current, p[2])
        for gone in [k for k in m._parameters if k not in names]:
            del m._parameters[gone]
        names = set()
        for b in buffers:
            tr._need(type(b) is list and len(b) == 2 and type(b[0]) is str, "bad buffer")
            names.add(b[0])
            value = tr.decode_tensor(b[1])
            if m._buffers.get(b[0]) is None:
                m._buffers[b[0]] = value
            else:
                _set_tensor(m._buffers[b[0]], value)
        for gone in [k for k in m._buffers if k not in names]:
            del m._buffers[gone]
        for a in attrs:
            tr._need(type(a) is list and len(a) == 2 and type(a[0]) is str, "bad attribute")
            if a[0].startswith("_") or a[0] == "training" or a[0] in m._parameters or a[0] in m._buffers:
                continue
            old = vars(m).get(a[0], None)
            if old is None or type(old) in _PLAIN_ATTR or type(old) is torch.Tensor:
                object.__setattr__(m, a[0], tr.decode(a[1]))


def apply_state(args, state) -> None:
    """Put what the call left in the sandbox's arguments into the scorer's own (trusted) arguments."""
    tr._need(type(state) is list, "bad state")
    objects = list(_walk(args))
    tr._need(len(objects) == len(state), "the state does not match the arguments")
    for x, s in zip(objects, state):
        tr._need(type(s) is dict and type(s.get("k")) is str, "bad state entry")
        if isinstance(x, torch.Tensor) and s["k"] == "tensor":
            value = tr.decode_tensor(s["value"])
            if value.shape != x.shape:
                _set_tensor(x, value)
            else:
                with torch.no_grad():
                    x.data = value.to(x.dtype) if value.dtype != x.dtype else value
            _set_grad(x, s.get("grad"))
        elif isinstance(x, nn.Module) and s["k"] == "module":
            _apply_module(x, s["modules"])


# ----------------------------------------------------------------------------- gradients

class _Replay(torch.autograd.Function):
    """A recorded value whose backward pass is the recorded Jacobian."""

    @staticmethod
    def forward(ctx, value, jacobians, *leaves):
        ctx.jacobians = jacobians
        ctx.leaves = [(leaf.shape, leaf.dtype) for leaf in leaves]
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out):
        g = grad_out.reshape(-1)
        grads = []
        for jac, (shape, dtype) in zip(ctx.jacobians, ctx.leaves):
            if jac is None:
                grads.append(None)
            else:
                grads.append((g.to(jac.dtype) @ jac).reshape(shape).to(dtype))
        return (None, None, *grads)


def replayed(value: torch.Tensor, jacobians: list, leaves: list) -> torch.Tensor:
    """``value`` as if computed from ``leaves``: gradients reach them through ``jacobians``."""
    if not leaves or not (value.is_floating_point() or value.is_complex()):
        return value
    return _Replay.apply(value.detach(), list(jacobians), *leaves)


def jacobians(result, leaves: list) -> list | None:
    """d result / d leaf for each leaf (None where no gradient flows), or None when the result is no graph."""
    if not isinstance(result, torch.Tensor) or not result.requires_grad or not leaves:
        return None
    flat = result.reshape(-1)
    n = flat.numel()
    if n == 0 or n > MAX_JACOBIAN_ROWS or n * sum(leaf.numel() for leaf in leaves) > MAX_JACOBIAN_ENTRIES:
        return None
    rows = [[] for _ in leaves]
    for k in range(n):
        grads = torch.autograd.grad(flat[k], leaves, retain_graph=True, allow_unused=True)
        for i, g in enumerate(grads):
            rows[i].append(None if g is None else g.detach().reshape(-1))
    out = []
    for leaf, r in zip(leaves, rows):
        if all(g is None for g in r):
            out.append(None)
        else:
            out.append(torch.stack([torch.zeros(leaf.numel(), dtype=leaf.dtype) if g is None else g for g in r]))
    return out


# ----------------------------------------------------------------------------- exceptions

def describe_error(exc: BaseException) -> dict:
    names = []
    try:
        names = [c.__name__ for c in type(exc).__mro__][:20]
    except Exception:  # noqa: BLE001
        pass
    try:
        message = str(exc)[:2000]
    except Exception:  # noqa: BLE001
        message = ""
    return {"types": [str(n)[:100] for n in names], "message": message}


def rebuild_error(node) -> Exception:
    """An exception of a built-in class standing for what the learner's function raised (never its own class)."""
    tr._need(type(node) is dict and type(node.get("types")) is list and type(node.get("message")) is str,
             "bad error")
    message = node["message"]
    for name in node["types"]:
        cls = getattr(builtins, name, None) if type(name) is str else None
        if isinstance(cls, type) and issubclass(cls, Exception) and cls is not Exception:
            try:
                return cls(message)
            except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs more arguments
                continue
    shown = node["types"][0] if node["types"] and type(node["types"][0]) is str else "an exception"
    return ReplayedError(f"{shown}: {message}")


# ----------------------------------------------------------------------------- trusted helpers

class HelperRecorder:
    """Plan side: the trusted reference of a helper (``kd_kl``), recording its values and Jacobians on each call."""

    def __init__(self, name: str, reference, entries: list):
        self.name, self.reference, self.entries = name, reference, entries
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        fp = fingerprint((args, kwargs), values_only=True)
        if not any(e["fp"] == fp for e in self.entries):
            copies = [a.detach().clone().requires_grad_(a.is_floating_point()) if isinstance(a, torch.Tensor) else a
                      for a in args]
            tensors = [a for a in copies if isinstance(a, torch.Tensor) and a.requires_grad]
            with torch.enable_grad():
                value = self.reference(*copies, **kwargs)
                jac = jacobians(value, tensors) if isinstance(value, torch.Tensor) else None
            if isinstance(value, torch.Tensor) and value.requires_grad and jac is None:
                jac = [None] * len(tensors)
            self.entries.append({"fp": fp, "value": value.detach() if isinstance(value, torch.Tensor) else value,
                                 "jacobians": jac})
        return self.reference(*args, **kwargs)


class HelperStandIn:
    """Sandbox side: a helper call the solution also made gets the recorded reference value; others, the learner's."""

    def __init__(self, entries: list, own):
        self.entries = {e["fp"]: e for e in entries}
        self.own = own

    def __call__(self, *args, **kwargs):
        entry = self.entries.get(fingerprint((args, kwargs), values_only=True))
        if entry is None:
            if self.own is None:
                raise NameError("this helper is not defined")
            return self.own(*args, **kwargs)
        value = entry["value"]
        if not isinstance(value, torch.Tensor) or entry["jacobians"] is None:
            return value
        tensors = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        if len(tensors) != len(entry["jacobians"]):
            return self.own(*args, **kwargs) if self.own is not None else value
        return _Replay.apply(value, list(entry["jacobians"]), *tensors)


# ----------------------------------------------------------------------------- the three stand-ins

class PlanProxy:
    """Stands for an exercise while a test cell runs on the solution: records each call (see the module doc)."""

    def __init__(self, name: str, solution, namespace: dict, calls: list):
        self.__name__ = self.__qualname__ = name
        self.__module__ = "__main__"
        self._solution, self._ns, self._calls = solution, namespace, calls
        self._trusted: dict = {}
        self._depth = 0

    @property
    def __globals__(self):   # where Checker swaps in trusted helpers: the solution's namespace
        return self._ns

    def _kdlab_trusted(self, trusted: dict) -> None:
        self._trusted = dict(trusted)

    def __call__(self, *args, **kwargs):
        if self._depth:   # the solution calling itself, or another exercise calling it: not a graded call
            return self._solution(*args, **kwargs)
        call = {"fn": self.__name__, "args": snapshot(args, kwargs), "fp": fingerprint((args, kwargs)),
                "rng": torch.get_rng_state(), "grad_enabled": torch.is_grad_enabled(), "helpers": {}}
        self._calls.append(call)
        saved = {}
        for name in self._trusted:
            if name in self._ns:
                saved[name] = self._ns[name]
                entries = call["helpers"].setdefault(name, [])
                self._ns[name] = HelperRecorder(name, saved[name], entries)
        self._depth += 1
        rng = torch.get_rng_state()
        try:
            return self._solution(*args, **kwargs)
        finally:
            # The test's own random draws must not depend on what the function drew: in the scorer the
            # learner's function draws nothing (its answers are replayed), so the solution's draws are undone.
            torch.set_rng_state(rng)
            self._depth -= 1
            self._ns.update(saved)


class JudgeProxy:
    """Stands for an exercise while a test cell runs in the scorer: returns what the learner's function did."""

    def __init__(self, name: str, pairs: list):
        self.__name__ = self.__qualname__ = name
        self.__module__ = "__main__"
        self._pairs = pairs          # [(planned call, what the sandbox recorded or None)]
        self._index = 0

    def _kdlab_trusted(self, trusted: dict) -> None:
        pass

    def __call__(self, *args, **kwargs):
        i = self._index
        self._index += 1
        if i >= len(self._pairs):
            raise GradingError(f"{self.__name__} was called more often than when the course was built")
        plan, obs = self._pairs[i]
        if fingerprint((args, kwargs)) != plan["fp"]:
            raise GradingError(f"call {i + 1} of {self.__name__} has other arguments than when the course was built")
        if obs is None:
            raise tr.DecodeError(f"no record of call {i + 1} of {self.__name__}: the notebook stopped before it")
        tr._need(type(obs) is dict, "bad observation")
        leaves = grad_leaves((args, kwargs))
        apply_state((args, kwargs), obs.get("state"))
        if obs.get("error") is not None:
            raise rebuild_error(obs["error"])
        result = tr.decode(obs.get("result"))
        if isinstance(result, torch.Tensor) and result.requires_grad:
            jac = obs.get("jacobians")
            if jac is None or not leaves:
                return result.detach()
            tr._need(type(jac) is list and len(jac) == len(leaves), "bad Jacobians")
            decoded = []
            for j, leaf in zip(jac, leaves):
                if j is None:
                    decoded.append(None)
                    continue
                m = tr.decode_tensor(j)
                tr._need(m.dim() == 2 and m.shape[0] == result.numel() and m.shape[1] == leaf.numel(),
                         "a Jacobian of the wrong shape")
                decoded.append(m.detach())
            return replayed(result.detach(), decoded, leaves)
        return result


def perform(fn, call: dict, namespace: dict | None) -> dict:
    """Inside the sandbox: make one recorded call on the learner's ``fn`` and describe what happened."""
    try:
        args, kwargs = restore(call["args"])
    except Exception as e:  # noqa: BLE001
        return {"error": describe_error(e), "result": tr.encode(None), "state": [], "jacobians": None}
    leaves = grad_leaves((args, kwargs))
    saved = {}
    ns = getattr(fn, "__globals__", None) if namespace is None else namespace
    for name, entries in (call.get("helpers") or {}).items():
        if isinstance(ns, dict):
            saved[name] = ns.get(name)
            ns[name] = HelperStandIn(entries, saved[name])
    result, error = None, None
    try:
        torch.set_rng_state(call["rng"])
        with torch.set_grad_enabled(bool(call["grad_enabled"])):
            result = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the learner's exception is what we record
        error = describe_error(e)
    finally:
        if isinstance(ns, dict):
            for name, old in saved.items():
                if old is None:
                    ns.pop(name, None)
                else:
                    ns[name] = old
    state = capture_state((args, kwargs))
    jac = None
    if error is None:
        try:
            with torch.enable_grad():
                found = jacobians(result, leaves)
            jac = None if found is None else [None if j is None else tr.encode_tensor(j) for j in found]
        except Exception:  # noqa: BLE001 - no gradient to replay: the scorer sees a result without one
            jac = None
    return {"error": error, "result": tr.encode(result), "state": state, "jacobians": jac}

