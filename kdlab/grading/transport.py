"""Values across the sandbox boundary: plain JSON out of the sandbox, read back with exact type checks.

Whatever a learner's function returns is written by :func:`encode` (inside
the sandbox, in the learner's own process: it may be subverted, so it only
has to be robust) and read by :func:`decode` (in the trusted scorer, which
never imports or runs learner code). The format is JSON of tagged nodes;
tensors carry their dtype, shape and raw little-endian bytes in base64. No
pickle, no class is ever looked up by name: :func:`decode` builds only
``None``, ``bool``, ``int``, ``float``, ``str``, ``list``, ``tuple``,
``dict`` (string keys), plain ``torch.Tensor`` of a listed dtype, and
:class:`Opaque` for anything else (an object that equals nothing but itself).

    >>> decode(json.loads(json.dumps(encode([1, "C", torch.ones(2)]))))
    [1, 'C', tensor([1., 1.])]
"""

from __future__ import annotations

import base64
import math

import torch

DTYPES = {name: getattr(torch, name) for name in (
    "float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
    "complex64", "complex128")}
MAX_DEPTH = 12
MAX_ITEMS = 10_000
MAX_TENSOR_BYTES = 64 * 2**20


class DecodeError(ValueError):
    """The sandbox's data does not have the expected form."""


class Opaque:
    """A value the learner's function returned that is none of the plain types: equal to nothing else."""

    def __init__(self, type_name: str, text: str):
        self.type_name = type_name
        self.text = text

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def __bool__(self):
        return False

    __hash__ = object.__hash__


# ----------------------------------------------------------------------------- inside the sandbox

def _type_name(x) -> str:
    try:
        t = type(x)
        return f"{t.__module__}.{t.__qualname__}"[:200]
    except Exception:  # noqa: BLE001
        return "?"


def _safe_repr(x) -> str:
    try:
        return repr(x)[:300]
    except Exception as e:  # noqa: BLE001
        return f"<unprintable: {type(e).__name__}>"


def encode_tensor(t: torch.Tensor) -> dict:
    """A tensor as a JSON node (on the CPU, contiguous, detached; its own values, not a subclass's)."""
    base = torch.Tensor._make_subclass(torch.Tensor, t.detach()) if type(t) is not torch.Tensor else t.detach()
    base = base.cpu().contiguous()
    name = str(base.dtype).removeprefix("torch.")
    if name not in DTYPES:
        return {"t": "opaque", "type": f"tensor of dtype {name}", "repr": ""}
    raw = base.reshape(-1).view(torch.uint8).numpy().tobytes() if base.numel() else b""
    return {"t": "tensor", "dtype": name, "shape": list(base.shape), "data": base64.b64encode(raw).decode(),
            "requires_grad": bool(t.requires_grad)}


def encode(x, depth: int = 0):
    """``x`` as a JSON-ready tagged node (never raises)."""
    try:
        if depth > MAX_DEPTH:
            return {"t": "opaque", "type": "nested too deeply", "repr": ""}
        if x is None:
            return {"t": "none"}
        t = type(x)
        if t is bool:
            return {"t": "bool", "v": bool(x)}
        if t is int:
            return {"t": "int", "v": str(int(x))}
        if t is float:
            v = float(x)
            return {"t": "float", "v": repr(v)}
        if t is str:
            return {"t": "str", "v": str.__str__(x)[:100_000]}
        if t in (list, tuple):
            items = list(x)[:MAX_ITEMS]
            return {"t": t.__name__, "v": [encode(v, depth + 1) for v in items]}
        if t is dict:
            return {"t": "dict", "v": [[str(k), encode(v, depth + 1)] for k, v in list(x.items())[:MAX_ITEMS]]}
        if isinstance(x, torch.Tensor):
            node = encode_tensor(x)
            if t is not torch.Tensor and t is not torch.nn.Parameter and node["t"] == "tensor":
                node["subclass"] = _type_name(x)
            return node
        # A subclass of a plain type is recorded as the value it holds (its base type's own method reads it),
        # so whatever it overrides stays in the sandbox; numpy scalars as their Python value.
        if isinstance(x, bool):
            return {"t": "bool", "v": bool(int.__int__(x))}
        if isinstance(x, int):
            return {"t": "int", "v": int.__repr__(x)}
        if isinstance(x, float):
            return {"t": "float", "v": float.__repr__(x)}
        if isinstance(x, str):
            return {"t": "str", "v": str.__str__(x)[:100_000]}
        if t.__module__ == "numpy" and hasattr(x, "item") and depth < MAX_DEPTH:
            return encode(x.item(), depth + 1)
        return {"t": "opaque", "type": _type_name(x), "repr": _safe_repr(x)}
    except Exception as e:  # noqa: BLE001 - a value that breaks encoding is recorded as such
        return {"t": "opaque", "type": "unencodable", "repr": f"{type(e).__name__}"}


# ----------------------------------------------------------------------------- in the trusted scorer

def _need(cond: bool, what: str) -> None:
    if not cond:
        raise DecodeError(what)


def decode_tensor(node: dict) -> torch.Tensor:
    _need(type(node) is dict and node.get("t") == "tensor", "not a tensor node")
    dtype_name, shape, data = node.get("dtype"), node.get("shape"), node.get("data")
    _need(type(dtype_name) is str and dtype_name in DTYPES, f"unknown dtype {dtype_name!r}")
    _need(type(shape) is list and len(shape) <= 16 and all(type(s) is int and 0 <= s < 2**31 for s in shape),
          "bad shape")
    _need(type(data) is str, "bad tensor data")
    dtype = DTYPES[dtype_name]
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    _need(numel * itemsize <= MAX_TENSOR_BYTES, "tensor too large")
    raw = base64.b64decode(data.encode(), validate=True)
    _need(len(raw) == numel * itemsize, "tensor data of the wrong length")
    if numel == 0:
        out = torch.empty(shape, dtype=dtype)
    else:
        out = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape).clone()
    if node.get("requires_grad") is True and (out.is_floating_point() or out.is_complex()):
        out.requires_grad_(True)
    return out


def decode(node, depth: int = 0):
    """The plain value of a node written by :func:`encode`; :class:`DecodeError` if it is malformed."""
    _need(depth <= MAX_DEPTH + 1, "nested too deeply")
    _need(type(node) is dict and type(node.get("t")) is str, "not a node")
    kind = node["t"]
    v = node.get("v")
    if kind == "none":
        return None
    if kind == "bool":
        _need(type(v) is bool, "bad bool")
        return v
    if kind == "int":
        _need(type(v) is str and len(v) < 4000, "bad int")
        return int(v)
    if kind == "float":
        _need(type(v) is str and len(v) < 64, "bad float")
        return float(v)
    if kind == "str":
        _need(type(v) is str, "bad str")
        return v
    if kind in ("list", "tuple"):
        _need(type(v) is list and len(v) <= MAX_ITEMS, "bad sequence")
        items = [decode(u, depth + 1) for u in v]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        _need(type(v) is list and len(v) <= MAX_ITEMS, "bad dict")
        out = {}
        for pair in v:
            _need(type(pair) is list and len(pair) == 2 and type(pair[0]) is str, "bad dict item")
            out[pair[0]] = decode(pair[1], depth + 1)
        return out
    if kind == "tensor":
        return decode_tensor(node)   # a subclass's values, as a plain tensor: its methods stay behind
    if kind == "opaque":
        return Opaque(str(node.get("type", "?"))[:200], str(node.get("repr", ""))[:300])
    raise DecodeError(f"unknown node kind {kind!r}")
