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

import torch

from ..compress import (compact_size_bytes, finalize_pruning, headline, latency_ms, magnitude_prune,
                        model_size_bytes, quantize_int8, sparsity)
from ..data import Dataset
from ..models import build, count_params
from ..train import predict_logits, train
from . import Option, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, teacher_for_run

DEFAULTS = dict(dataset="mnist", student="mlp-100x2", temperature=4.0, alpha=0.9, epochs=10, lr=0.1, prune_amount=0.8,
                finetune_epochs=3, finetune_lr=0.02, latency_repeats=300)
FAST = dict(epochs=2, finetune_epochs=1, latency_repeats=30)


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


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def table(result: dict) -> str:
    """The rows as an aligned text table."""
    rows = [(r["name"], _kb(r["size_bytes"]), _kb(r["state_dict_bytes"]), f"{100 * r['sparsity']:.0f}%",
             f"{1000 * r['latency_ms']:.0f} us", f"{100 * r['test_accuracy']:.2f}%") for r in result["rows"]]
    return format_table(("model", "size", "checkpoint", "sparsity", "latency", "test acc"), rows)


def summarize(result: dict) -> str:
    return "\n".join([
        f"compress: {result['dataset']} ({result['test_size']:,} test images"
        + fast_note(result, ", KDLAB_FAST slice") + f"), seed {result['seed']}",
        "", table(result), "",
        "size: compact storage (pruned zeros as a bitmask); checkpoint: plain torch.save(state_dict)",
        f"latency: {result['latency']}",
        "", result["headline"]["text"],
        f"whole run {result['seconds']['total']:.0f} s",
    ])


@register("compress", "teacher vs distilled student, int8-quantized, pruned, both: size, latency, accuracy",
          options=[Option("student", str, help="student architecture (e.g. mlp-100x2)"),
                   Option("prune-amount", float, help="fraction of weights to prune"),
                   Option("dataset", str, help="mnist or fashion-mnist")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, student: str | None = None, epochs: int | None = None,
               prune_amount: float | None = None, finetune_epochs: int | None = None,
               temperature: float | None = None, alpha: float | None = None, dataset: str | None = None,
               teacher: CachedTeacher | None = None) -> Outcome:
    """Run the whole pipeline; the result holds the rows, the headline and the settings.

    ``models``: the five models by short name (teacher, student, int8, pruned,
    deployed) and the data, for a lesson to look into.
    """
    run = Run("compress", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, dataset=dataset, student=student, epochs=epochs, prune_amount=prune_amount,
                     finetune_epochs=finetune_epochs, temperature=temperature, alpha=alpha)
    td = teacher_for_run(teacher, data, run, progress, dataset=cfg["dataset"])
    data, arch = td.data, cfg["student"]
    distill = dict(teacher_logits=td.train_logits, T=cfg["temperature"], alpha=cfg["alpha"], device=run.device,
                   evaluate_every_epoch=False, progress=progress)

    with run.timed("distill"):
        torch.manual_seed(seed)
        student = build(arch)
        train(student, data, epochs=cfg["epochs"], lr=cfg["lr"], seed=seed, desc=f"distilling {arch}", **distill)
        student = student.cpu().eval()

    with run.timed("compress"):
        int8 = quantize_int8(student)
        pruned = magnitude_prune(copy.deepcopy(student), cfg["prune_amount"])
        train(pruned, data, epochs=cfg["finetune_epochs"], lr=cfg["finetune_lr"], seed=seed + 1,
              desc=f"fine-tuning at {100 * cfg['prune_amount']:.0f}% sparsity", **distill)
        pruned = finalize_pruning(pruned.cpu().eval())
        both = quantize_int8(pruned)

    with run.timed("measure"):
        x_test, y_test = data.x_test.cpu(), data.y_test.cpu()
        n_teacher, n_student = count_params(td.model), count_params(student)
        t_arch, pct, repeats = td.describe()["arch"], f"{100 * cfg['prune_amount']:.0f}%", cfg["latency_repeats"]
        common = dict(params=n_student, repeats=repeats)
        rows = [
            measure(f"teacher ({t_arch})", td.model, x_test, y_test, arch=t_arch, precision="fp32",
                    params=n_teacher, repeats=repeats),
            measure(f"distilled student ({arch})", student, x_test, y_test, arch=arch, precision="fp32", **common),
            measure("student, int8", int8, x_test, y_test, arch=arch, precision="int8", **common),
            measure(f"student, pruned {pct} + fine-tuned", pruned, x_test, y_test, arch=arch, precision="fp32",
                    **common),
            measure(f"student, pruned {pct} + int8 (deployed)", both, x_test, y_test, arch=arch, precision="int8",
                    **common),
        ]
        td.model.to(run.device)
    return run.finish({
        "rows": rows,
        "headline": headline(rows),
        "dataset": data.name, "train_size": len(data.y_train), "test_size": len(data.y_test),
        "student_arch": arch, "temperature": cfg["temperature"], "alpha": cfg["alpha"], "epochs": cfg["epochs"],
        "prune_amount": cfg["prune_amount"], "finetune_epochs": cfg["finetune_epochs"],
        "quantized_engine": torch.backends.quantized.engine,
        "latency": f"median of {repeats} batch-1 forward passes, 1 CPU thread, {platform.processor() or 'cpu'}",
        "size": ("size_bytes: torch.save of the compact storage (weights with many zeros as a 1-bit mask "
                 "plus the non-zero values, int8 weights as int8); state_dict_bytes: torch.save of the "
                 "plain state_dict, where pruned zeros still cost 4 bytes each"),
    }, teacher=td.describe(), models={"teacher": td.model, "student": student, "int8": int8, "pruned": pruned,
                                      "deployed": both, "data": data})
