"""Compression for deployment: size, latency, int8 dynamic quantization, magnitude pruning.

How size is counted (lesson 8):

* :func:`model_size_bytes` is the number of bytes ``torch.save`` writes for
  the model's ``state_dict`` into an in-memory buffer: what a checkpoint file
  of the model weighs. A pruned model stored this way is **not** smaller: its
  zeros are stored as 4-byte floats like any other number.
* :func:`compact_size_bytes` counts a storage that exploits zeros: each weight
  tensor is stored either densely or, when that is smaller, as a bitmask of
  its non-zero positions (1 bit per entry) plus the non-zero values; int8
  weights are stored as int8 with their scale and zero point. The count is
  again ``torch.save`` of that structure into a buffer, headers included, and
  :func:`restore_compact` loads it back into a model that computes the same
  outputs: the size is that of a file one could ship, not an estimate.

Latency (:func:`latency_ms`) is the median wall-clock time of one batch-1
forward pass on the CPU, in inference mode, on one thread by default;
:func:`latencies_ms` times several models in alternating rounds, so that a
shared machine's load falls on all of them alike. The
pruned models run the same dense kernels as the unpruned ones (PyTorch has
no fast CPU kernel for unstructured sparsity at these sizes), so pruning
makes them smaller, not faster; int8 dynamic quantization changes the
kernels and its speed depends on the layer sizes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
import warnings

import torch
from torch import nn
from torch.nn.utils import prune

__all__ = ["model_size_bytes", "sparsity", "quantize_int8", "magnitude_prune", "finalize_pruning",
           "compact_state", "compact_size_bytes", "restore_compact", "latency_ms", "latencies_ms", "speed_text",
           "gap_closed",
           "headline"]


# -- size ----------------------------------------------------------------------------------

def _saved_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` written to an in-memory buffer."""
    return _saved_bytes(model.state_dict())


# -- quantization --------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_deprecations():
    """torch.ao.quantization warns that it is deprecated (in favour of torchao); keep lessons clean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def _quantized_engine() -> str:
    engines = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine not in (None, "none") and torch.backends.quantized.engine in engines:
        return torch.backends.quantized.engine
    for name in ("x86", "fbgemm", "qnnpack", "onednn"):
        if name in engines:
            torch.backends.quantized.engine = name
            return name
    raise RuntimeError(f"this PyTorch build has no quantized CPU engine (supported: {engines})")


def _dynamic_linear_types() -> tuple:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return (DynamicLinear,)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers use int8 weights (dynamic quantization).

    Weights are stored as int8 with one scale per tensor (symmetric, zero point
    0, so pruned zeros stay exactly zero); activations are quantized on the
    fly at each call. Convolutions stay in float: dynamic quantization covers
    Linear (and recurrent) layers only. CPU only.
    """
    _quantized_engine()
    model = copy.deepcopy(model).cpu().eval()
    with _quiet_deprecations():
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    quantized.arch = getattr(model, "arch", None)
    return quantized


# -- pruning -------------------------------------------------------------------------------

def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def magnitude_prune(model: nn.Module, amount: float, *, scope: str = "global") -> nn.Module:
    """Zero the ``amount`` fraction of Linear/Conv2d weights with the smallest magnitude, in place.

    ``scope="global"`` ranks all weights together (layers lose different
    fractions); ``"layer"`` prunes each layer by ``amount``. The masks stay
    attached (``torch.nn.utils.prune``'s ``weight_orig`` and ``weight_mask``),
    so fine-tuning keeps the pruned weights at zero; call
    :func:`finalize_pruning` afterwards. Biases are not pruned. The model it
    returns can be deep-copied, masks and all, to fine-tune copies of one
    pruned model (a forward pass in training leaves ``weight`` attached to
    its graph again, which ``copy.deepcopy`` refuses).
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must lie in [0, 1), got {amount}")
    targets = _prunable(model)
    if not targets:
        raise ValueError("the model has no Linear or Conv2d layer to prune")
    if scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    elif scope == "layer":
        for module, name in targets:
            prune.l1_unstructured(module, name, amount=amount)
    else:
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    # prune leaves weight = weight_orig * weight_mask as a non-leaf tensor, which copy.deepcopy refuses; the
    # forward pre-hook recomputes it (with its graph) at every call, so the stored one can be detached.
    with torch.no_grad():
        for module, name in targets:
            setattr(module, name, getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask"))
    return model


def finalize_pruning(model: nn.Module) -> nn.Module:
    """Make pruning permanent, in place: ``weight = weight_orig * weight_mask``, masks dropped."""
    for module, name in _prunable(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_orig"):
            prune.remove(module, name)
    return model


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The effective weight of every Linear/Conv2d layer (masked if pruned, dequantized if int8)."""
    out = []
    dynamic = _dynamic_linear_types()
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            out.append(module.weight.detach())
        elif isinstance(module, dynamic):
            out.append(module.weight().dequantize())
    return out


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among all Linear/Conv2d weights (biases excluded).

    Pruned layers count through their effective ``weight``; dynamically
    quantized Linear layers through their int8 weight.
    """
    weights = _weights(model)
    total = sum(w.numel() for w in weights)
    if total == 0:
        raise ValueError("the model has no Linear or Conv2d weights")
    return sum(int((w == 0).sum()) for w in weights) / total


# -- compact storage -----------------------------------------------------------------------

_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _pack_bits(mask: torch.Tensor) -> torch.Tensor:
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) * _BITS).sum(dim=1, dtype=torch.uint8) if flat.numel() else flat


def _unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    bits = (packed.reshape(-1, 1) & _BITS) != 0
    return bits.reshape(-1)[:numel]


def _pack(t: torch.Tensor):
    """A tensor as stored: dense, or ``{"shape", "mask", "values"}`` when that is smaller."""
    t = t.detach().cpu()
    nonzero = t != 0
    nnz = int(nonzero.sum())
    dense = t.numel() * t.element_size()
    sparse = (t.numel() + 7) // 8 + nnz * t.element_size()
    if sparse < dense:
        return {"shape": tuple(t.shape), "mask": _pack_bits(nonzero), "values": t[nonzero].clone()}
    return t.clone().contiguous()


def _unpack(stored) -> torch.Tensor:
    if isinstance(stored, torch.Tensor):
        return stored
    shape = stored["shape"]
    numel = 1
    for s in shape:
        numel *= s
    values = stored["values"]
    out = values.new_zeros(numel)
    out[_unpack_bits(stored["mask"], numel)] = values
    return out.view(shape)


def compact_state(model: nn.Module) -> dict:
    """The model's weights in the compact storage that :func:`compact_size_bytes` counts.

    Float tensors keep their dtype; int8-quantized Linear layers store their
    int8 weight, its scale and zero point, and a float bias. Any weight is
    stored as bitmask + non-zero values when that takes fewer bytes.
    """
    state = {}
    dynamic = _dynamic_linear_types()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, dynamic):
            w = module.weight()
            if w.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                raise ValueError(f"{name}: only per-tensor quantized weights are supported, got {w.qscheme()}")
            state[prefix + "weight_int8"] = _pack(w.int_repr())
            state[prefix + "scale"] = torch.tensor(w.q_scale(), dtype=torch.float32)
            state[prefix + "zero_point"] = torch.tensor(w.q_zero_point(), dtype=torch.int32)
            if module.bias() is not None:
                state[prefix + "bias"] = _pack(module.bias())
            continue
        local = {k: v for k, v in module.named_parameters(recurse=False)}
        local.update({k: v for k, v in module.named_buffers(recurse=False)})
        if "weight_orig" in local:  # pruned, masks still attached: store the effective weight
            local.pop("weight_orig")
            local.pop("weight_mask", None)
            local["weight"] = module.weight
        for key, value in local.items():
            if value is not None:
                state[prefix + key] = _pack(value)
    return state


def compact_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(compact_state(model))``: zeros cost 1 bit where that pays off."""
    return _saved_bytes(compact_state(model))


def restore_compact(template: nn.Module, state: dict) -> nn.Module:
    """Load a :func:`compact_state` into ``template`` (same architecture; int8 if the state is), in place."""
    dynamic = {name: m for name, m in template.named_modules() if isinstance(m, _dynamic_linear_types())}
    plain = {}
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        if owner not in dynamic:
            plain[key] = _unpack(value)
    for name, module in dynamic.items():
        prefix = f"{name}." if name else ""
        qweight = torch._make_per_tensor_quantized_tensor(
            _unpack(state[prefix + "weight_int8"]), float(state[prefix + "scale"]),
            int(state[prefix + "zero_point"]))
        bias = _unpack(state[prefix + "bias"]) if prefix + "bias" in state else None
        module.set_weight_bias(qweight, bias)
    modules = dict(template.named_modules())
    expected = {f"{n}.{k}" if n else k for n, m in modules.items() if n not in dynamic
                for k, v in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
                if v is not None}
    if set(plain) != expected:
        raise ValueError(f"the compact state does not fit the template: missing {sorted(expected - set(plain))}, "
                         f"unexpected {sorted(set(plain) - expected)}")
    with torch.no_grad():
        for key, value in plain.items():
            owner, _, leaf = key.rpartition(".")
            getattr(modules[owner], leaf).copy_(value)
    return template


# -- latency -------------------------------------------------------------------------------

def latency_ms(model: nn.Module, example: torch.Tensor, *, repeats: int = 300, warmup: int = 30,
               threads: int | None = 1) -> float:
    """Median milliseconds of one forward pass on ``example`` (a batch of 1), CPU, inference mode.

    ``threads`` (default 1) pins torch's intra-op threads while measuring, so
    the number does not depend on what else the machine runs on its other
    cores; None keeps the current setting.
    """
    return latencies_ms([model], example, repeats=repeats, rounds=1, warmup=warmup, threads=threads)[0]


def latencies_ms(models: list[nn.Module], example: torch.Tensor, *, repeats: int = 300, rounds: int = 10,
                 warmup: int = 30, threads: int | None = 1) -> list[float]:
    """:func:`latency_ms` of several models, measured in ``rounds`` that alternate them.

    Each round times ``repeats / rounds`` calls of every model in turn (after
    a few warm-up calls, since the other models evicted its weights from the
    caches); each model's number is the median of all its calls. On a shared
    machine a burst of load then slows every model alike, where timing one
    model after the other lets it land on one of them.
    """
    if rounds < 1 or repeats < rounds:
        raise ValueError(f"need 1 <= rounds <= repeats, got rounds={rounds}, repeats={repeats}")
    models = [m.cpu().eval() for m in models]
    example = example.cpu()
    per_round = [repeats // rounds + (r < repeats % rounds) for r in range(rounds)]
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for model in models:
                for _ in range(warmup):
                    model(example)
            times: list[list[float]] = [[] for _ in models]
            for n in per_round:
                for model, out in zip(models, times):
                    for _ in range(min(3, warmup) if rounds > 1 else 0):
                        model(example)
                    for _ in range(n):
                        start = time.perf_counter()
                        model(example)
                        out.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return [1000.0 * statistics.median(t) for t in times]


# -- the headline --------------------------------------------------------------------------

def speed_text(ratio: float) -> str:
    """A latency ratio (old / new) in words: ``"3.6 times faster"``, or ``"2.1 times slower"`` below 1."""
    if ratio <= 0:
        raise ValueError(f"a latency ratio is positive, got {ratio}")
    return f"{ratio:.1f} times faster" if ratio >= 1 else f"{1 / ratio:.1f} times slower"


def gap_closed(errors: int, *, alone: int, teacher: int) -> float | None:
    """The share of the gap between a student trained alone and the teacher that a model closes.

    ``(alone - errors) / (alone - teacher)`` in test errors: 1 is the teacher's
    count, 0 the student alone's, below 0 worse than it. None when there is no
    gap (the teacher makes as many errors as the student alone, or more).
    """
    return (alone - errors) / (alone - teacher) if alone > teacher else None


def headline(rows: list[dict], *, size_key: str = "size_bytes", alone_errors: int | None = None) -> dict:
    """DistilBERT-style summary of the last row against the first (the teacher).

    ``accuracy_kept`` = student accuracy / teacher accuracy, ``size_fraction``
    = student size / teacher size, ``speedup`` = teacher latency / student
    latency, the two rows' ``test_errors``, and ``text``: "keeps X% of the
    teacher's accuracy (E test errors against its F) at Y% of its size, Z
    times faster". With ``alone_errors`` (the same student trained alone, on
    the labels), ``gap_closed`` (:func:`gap_closed`) joins them and the text.
    """
    if len(rows) < 2:
        raise ValueError("need the teacher's row and at least one more")
    teacher, final = rows[0], rows[-1]
    kept = final["test_accuracy"] / teacher["test_accuracy"]
    size = final[size_key] / teacher[size_key]
    speedup = teacher["latency_ms"] / final["latency_ms"]
    errors, t_errors = final["test_errors"], teacher["test_errors"]
    text = (f"{final['name']} keeps {100 * kept:.1f}% of the teacher's accuracy ({errors} test errors against its "
            f"{t_errors}) at {100 * size:.1f}% of its size, {speed_text(speedup)}")
    out = {"accuracy_kept": kept, "size_fraction": size, "speedup": speedup, "test_errors": errors,
           "teacher_test_errors": t_errors}
    if alone_errors is not None:
        closed = gap_closed(errors, alone=alone_errors, teacher=t_errors)
        out.update(alone_test_errors=alone_errors, gap_closed=closed)
        text += (f"; it closes {100 * closed:.0f}% of the gap between the student trained alone ({alone_errors} "
                 f"test errors) and the teacher" if closed is not None else
                 f"; the student trained alone makes {alone_errors} test errors: no gap to the teacher to close")
    return {**out, "text": text}
