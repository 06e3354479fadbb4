"""Compress for deployment: distill a small student, then quantize it to int8 and prune it.

Five models, one table (lesson 8):

1. the **teacher**: the course's CNN (``kdlab.zoo`` recipe ``cnn-teacher``), fp32;
2. a **distilled student**: a small MLP distilled from the teacher, fp32;
3. the student with **int8** dynamic quantization of its Linear layers;
4. the student **pruned** by global weight magnitude, then fine-tuned with
   the distillation loss while the pruned weights stay zero;
5. **both**: the pruned student, quantized to int8 (the deployed model).

For each: ``size_bytes`` (the compact storage of :mod:`kdlab.compress`:
zeros cost one bit where that pays off; ``state_dict_bytes`` is the plain
checkpoint for comparison), ``latency_ms`` (median batch-1 forward pass on
one CPU thread), ``test_accuracy``. The first row is the teacher, the last
the deployed student, and ``headline`` compares them, DistilBERT-style.

    kdlab experiment compress --seed 0 --json runs/compress.json
"""

from __future__ import annotations

import copy
import platform
import time

import torch

from .. import settings
from ..compress import (compact_size_bytes, finalize_pruning, headline, latency_ms, magnitude_prune,
                        model_size_bytes, quantize_int8, sparsity)
from ..data import load
from ..models import build, count_params
from ..train import predict_logits, train
from ..zoo import pretrained
from . import Option, register

DEFAULTS = dict(teacher="cnn-teacher", student="mlp-100x2", temperature=4.0, alpha=0.9, epochs=10, lr=0.1,
                prune_amount=0.8, finetune_epochs=3, finetune_lr=0.02)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Test errors and accuracy, on the CPU (int8 dynamic quantization runs only there)."""
    model = model.cpu().eval()
    logits = predict_logits(model, x.cpu(), batch_size=1000)
    errors = int((logits.argmax(-1) != y.cpu()).sum())
    return {"test_errors": errors, "test_accuracy": 1.0 - errors / len(y)}


def measure(name: str, model: torch.nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, *,
            arch: str, precision: str, params: int, repeats: int) -> dict:
    """One row of the table: size, latency and accuracy of ``model``."""
    model = model.cpu().eval()
    return {
        "name": name, "arch": arch, "precision": precision, "params": params,
        "sparsity": round(sparsity(model), 4),
        "size_bytes": compact_size_bytes(model),
        "state_dict_bytes": model_size_bytes(model),
        "latency_ms": round(latency_ms(model, x_test[:1].cpu(), repeats=repeats), 4),
        **accuracy(model, x_test, y_test),
    }


def experiment(seed: int = 0, *, student_arch: str = DEFAULTS["student"], epochs: int | None = None,
               prune_amount: float = DEFAULTS["prune_amount"], finetune_epochs: int | None = None,
               temperature: float = DEFAULTS["temperature"], alpha: float = DEFAULTS["alpha"],
               dataset: str = "mnist", progress: bool = True, data=None, teacher=None,
               keep_models: bool = False) -> dict:
    """Run the whole pipeline; returns the rows, the headline and the settings (JSON-ready).

    ``keep_models=True`` adds ``"models"``: the five models by short name
    (teacher, student, int8, pruned, deployed) and ``"data"``, for a lesson
    to look into (not JSON).
    """
    start = time.perf_counter()
    device = settings.default_device()
    data = data if data is not None else load(dataset)
    epochs = epochs if epochs is not None else int(settings.pick(DEFAULTS["epochs"], 2))
    finetune_epochs = (finetune_epochs if finetune_epochs is not None
                       else int(settings.pick(DEFAULTS["finetune_epochs"], 1)))
    repeats = int(settings.pick(300, 30))
    timings = {}

    t0 = time.perf_counter()
    if teacher is None:
        teacher = pretrained(DEFAULTS["teacher"], data, seed=seed, progress=progress)
    teacher = teacher.to(device).eval()
    timings["teacher"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    student = build(student_arch)
    train(student, data, teacher=teacher, T=temperature, alpha=alpha, epochs=epochs, lr=DEFAULTS["lr"],
          seed=seed, device=device, progress=progress, desc=f"distilling {student_arch}",
          evaluate_every_epoch=False)
    student = student.cpu().eval()
    timings["distill"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    int8 = quantize_int8(student)
    pruned = magnitude_prune(copy.deepcopy(student), prune_amount)
    train(pruned, data, teacher=teacher, T=temperature, alpha=alpha, epochs=finetune_epochs,
          lr=DEFAULTS["finetune_lr"], seed=seed + 1, device=device, progress=progress,
          desc=f"fine-tuning at {100 * prune_amount:.0f}% sparsity", evaluate_every_epoch=False)
    pruned = finalize_pruning(pruned.cpu().eval())
    both = quantize_int8(pruned)
    timings["compress"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    x_test, y_test = data.x_test.cpu(), data.y_test.cpu()
    n_teacher, n_student = count_params(teacher), count_params(student)
    t_arch = getattr(teacher, "arch", "teacher")
    pct = f"{100 * prune_amount:.0f}%"
    rows = [
        measure(f"teacher ({t_arch})", teacher, x_test, y_test, arch=t_arch, precision="fp32",
                params=n_teacher, repeats=repeats),
        measure(f"distilled student ({student_arch})", student, x_test, y_test, arch=student_arch,
                precision="fp32", params=n_student, repeats=repeats),
        measure("student, int8", int8, x_test, y_test, arch=student_arch, precision="int8",
                params=n_student, repeats=repeats),
        measure(f"student, pruned {pct} + fine-tuned", pruned, x_test, y_test, arch=student_arch,
                precision="fp32", params=n_student, repeats=repeats),
        measure(f"student, pruned {pct} + int8 (deployed)", both, x_test, y_test, arch=student_arch,
                precision="int8", params=n_student, repeats=repeats),
    ]
    teacher.to(device)
    timings["measure"] = round(time.perf_counter() - t0, 1)
    result = {
        "rows": rows,
        "headline": headline(rows),
        "dataset": data.name, "train_size": len(data.y_train), "test_size": len(data.y_test),
        "seed": seed, "teacher_recipe": DEFAULTS["teacher"], "student_arch": student_arch,
        "temperature": temperature, "alpha": alpha, "epochs": epochs, "prune_amount": prune_amount,
        "finetune_epochs": finetune_epochs, "quantized_engine": torch.backends.quantized.engine,
        "latency": f"median of {repeats} batch-1 forward passes, 1 CPU thread, {platform.processor() or 'cpu'}",
        "size": ("size_bytes: torch.save of the compact storage (weights with many zeros as a 1-bit mask "
                 "plus the non-zero values, int8 weights as int8); state_dict_bytes: torch.save of the "
                 "plain state_dict, where pruned zeros still cost 4 bytes each"),
        "fast_mode": settings.fast_mode(), "device": str(device), "seconds": timings,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    if keep_models:
        result["models"] = {"teacher": teacher, "student": student, "int8": int8, "pruned": pruned,
                            "deployed": both}
        result["data"] = data
    return result


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def table(result: dict) -> str:
    """The rows as an aligned text table."""
    head = ("model", "size", "checkpoint", "sparsity", "latency", "test acc")
    rows = [head] + [(r["name"], _kb(r["size_bytes"]), _kb(r["state_dict_bytes"]), f"{100 * r['sparsity']:.0f}%",
                      f"{1000 * r['latency_ms']:.0f} us", f"{100 * r['test_accuracy']:.2f}%")
                     for r in result["rows"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def summarize(result: dict) -> str:
    return "\n".join([
        f"compress: {result['dataset']} ({result['test_size']:,} test images"
        + (", KDLAB_FAST slice" if result.get("fast_mode") else "") + f"), seed {result['seed']}",
        "", table(result), "",
        "size: compact storage (pruned zeros as a bitmask); checkpoint: plain torch.save(state_dict)",
        f"latency: {result['latency']}",
        "", result["headline"]["text"],
        f"whole run {result['total_seconds']:.0f} s",
    ])


@register("compress", "teacher vs distilled student, int8-quantized, pruned, both: size, latency, accuracy",
          options=[Option("student", str, DEFAULTS["student"], "student architecture (e.g. mlp-100x2)"),
                   Option("prune-amount", float, DEFAULTS["prune_amount"], "fraction of weights to prune"),
                   Option("dataset", str, "mnist", "mnist or fashion-mnist")],
          summarize=summarize)
def run(seed: int = 0, progress: bool = True, student: str = DEFAULTS["student"],
        prune_amount: float = DEFAULTS["prune_amount"], dataset: str = "mnist") -> dict:
    return experiment(seed, student_arch=student, prune_amount=prune_amount, dataset=dataset, progress=progress)
