"""Compress for deployment: distill a small student, then quantize it to int8 and prune it.

Five models, one table (lesson 8):

1. the **teacher**: the course's CNN (``kdlab.zoo`` recipe ``cnn-teacher``), fp32;
2. a **distilled student**: a small MLP distilled from the teacher, fp32;
3. the student with **int8** dynamic quantization of its Linear layers;
4. the student **pruned** by global weight magnitude, then fine-tuned with
   the distillation loss while the pruned weights stay zero;
5. **both**: the pruned student, quantized to int8 (the deployed model).

Beside the table: the same student **trained alone** (cross-entropy on the
labels, same initial weights and budget), so the headline can say how much of
the gap between it and the teacher each model closes; the int8 student's
latency against the float32 one's; and **how to fine-tune after pruning**
(``finetune``): the pruned student fine-tuned with plain cross-entropy, with
the distillation loss on the CNN teacher's cached logits, and with the
distillation loss on the unpruned student's own logits (the original model as
the teacher), from the same pruned weights, with the same steps, seed and
batch order, for ``finetune_seeds`` seeds; the masks stay attached, and the
result records that every pruned weight is still zero afterwards.

For each: ``size_bytes`` (the compact storage of :mod:`kdlab.compress`:
zeros cost one bit where that pays off; ``state_dict_bytes`` is the plain
checkpoint for comparison), ``latency_ms`` (median batch-1 forward pass on
one CPU thread, the five models timed in alternating rounds so that a shared
machine's load falls on all of them alike), ``test_accuracy``. The first row
is the teacher, the last the deployed student, and ``headline`` compares them,
DistilBERT-style.

    kdlab experiment compress --seed 0 --json runs/compress.json
"""

from __future__ import annotations

import copy
import math
import platform

import torch

from ..compress import (compact_size_bytes, finalize_pruning, gap_closed, headline, latencies_ms, magnitude_prune,
                        model_size_bytes, quantize_int8, sparsity, speed_text)
from ..data import Dataset
from ..models import build, count_params
from ..train import predict_logits, train
from . import Option, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, teacher_for_run

DEFAULTS = dict(dataset="mnist", student="mlp-100x2", temperature=4.0, alpha=0.9, epochs=10, lr=0.1, prune_amount=0.8,
                batch_size=128, finetune_epochs=3, finetune_lr=0.02, finetune_seeds=3, latency_repeats=300,
                latency_rounds=10)
FAST = dict(epochs=2, finetune_epochs=1, finetune_seeds=1, latency_repeats=30, latency_rounds=3)

# How the pruned student is fine-tuned: key -> what the table calls it. The pipeline's pruned row is the
# second one, at the first fine-tuning seed.
FINETUNE = {"cross_entropy": "cross-entropy on the labels",
            "kd_teacher": "KD, the CNN teacher's logits",
            "kd_unpruned": "KD, the unpruned student's logits"}


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Test errors and accuracy, on the CPU (int8 dynamic quantization runs only there)."""
    model = model.cpu().eval()
    logits = predict_logits(model, x.cpu(), batch_size=1000)
    errors = int((logits.argmax(-1) != y.cpu()).sum())
    return {"test_errors": errors, "test_accuracy": 1.0 - errors / len(y)}


def measure(name: str, model: torch.nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, *,
            arch: str, precision: str, params: int, latency: float) -> dict:
    """One row of the table: size, latency (measured beforehand) and accuracy of ``model``."""
    model = model.cpu().eval()
    return {
        "name": name, "arch": arch, "precision": precision, "params": params,
        "sparsity": round(sparsity(model), 4),
        "size_bytes": compact_size_bytes(model),
        "state_dict_bytes": model_size_bytes(model),
        "latency_ms": round(latency, 4),
        **accuracy(model, x_test, y_test),
    }


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def table(result: dict) -> str:
    """The rows as an aligned text table."""
    rows = [(r["name"], _kb(r["size_bytes"]), _kb(r["state_dict_bytes"]), f"{100 * r['sparsity']:.0f}%",
             f"{1000 * r['latency_ms']:.0f} us", f"{100 * r['test_accuracy']:.2f}%") for r in result["rows"]]
    return format_table(("model", "size", "checkpoint", "sparsity", "latency", "test acc"), rows)


def finetune_table(result: dict) -> str:
    """The fine-tuning comparison: test errors per loss and seed, and the sparsity afterwards."""
    ft = result["finetune"]
    seeds = ft["seeds"]
    rows = [("pruned, not fine-tuned", *[ft["no_finetune_test_errors"]] * len(seeds),
             f"{ft['no_finetune_test_errors']:.1f}", f"{100 * ft['sparsity_before']:.1f}%")]
    for key, label in FINETUNE.items():
        r = ft["losses"][key]
        rows.append((label, *r["test_errors"], f"{r['mean_test_errors']:.1f}", f"{100 * min(r['sparsity']):.1f}%"))
    return format_table(("fine-tuned with", *(f"seed {s}" for s in seeds), "mean", "sparsity"), rows)


def summarize(result: dict) -> str:
    ft = result["finetune"]
    return "\n".join([
        f"compress: {result['dataset']} ({result['test_size']:,} test images"
        + fast_note(result, ", KDLAB_FAST slice") + f"), seed {result['seed']}",
        "", table(result), "",
        "size: compact storage (pruned zeros as a bitmask); checkpoint: plain torch.save(state_dict)",
        f"latency: {result['latency']}",
        "", result["headline"]["text"],
        result["int8"]["text"],
        "", (f"fine-tuning the pruned student: {ft['epochs']} epoch{'s' if ft['epochs'] != 1 else ''} "
             f"({ft['steps']:,} steps) from the same pruned weights, same batches, masks kept (test errors)"),
        finetune_table(result),
        f"pruned weights still zero after every fine-tuning: {ft['mask_kept']}",
        *ft["verdicts"],
        "", f"whole run {result['seconds']['total']:.0f} s",
    ])


@register("compress", "teacher vs distilled student, int8-quantized, pruned, both: size, latency, accuracy",
          options=[Option("student", str, help="student architecture (e.g. mlp-100x2)"),
                   Option("prune-amount", float, help="fraction of weights to prune"),
                   Option("finetune-seeds", int, help="seeds of the fine-tuning comparison (CE against KD)"),
                   Option("dataset", str, help="mnist or fashion-mnist")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, student: str | None = None, epochs: int | None = None,
               prune_amount: float | None = None, finetune_epochs: int | None = None,
               finetune_seeds: int | None = None, temperature: float | None = None, alpha: float | None = None,
               dataset: str | None = None, teacher: CachedTeacher | None = None) -> Outcome:
    """Run the whole pipeline; the result holds the rows, the headline, the fine-tuning comparison, the settings.

    ``models``: the five models by short name (teacher, student, int8, pruned,
    deployed), the student trained alone (``alone``) and the data, for a
    lesson to look into.
    """
    run = Run("compress", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, dataset=dataset, student=student, epochs=epochs, prune_amount=prune_amount,
                     finetune_epochs=finetune_epochs, finetune_seeds=finetune_seeds, temperature=temperature,
                     alpha=alpha)
    if cfg["finetune_seeds"] < 1:
        raise ValueError(f"finetune_seeds must be at least 1, got {cfg['finetune_seeds']}")
    td = teacher_for_run(teacher, data, run, progress, dataset=cfg["dataset"])
    data, arch = td.data, cfg["student"]
    common = dict(batch_size=cfg["batch_size"], device=run.device, evaluate_every_epoch=False, progress=progress)
    soft = dict(T=cfg["temperature"], alpha=cfg["alpha"])

    with run.timed("distill"):
        torch.manual_seed(seed)
        student = build(arch)
        train(student, data, teacher_logits=td.train_logits, epochs=cfg["epochs"], lr=cfg["lr"], seed=seed,
              desc=f"distilling {arch}", **soft, **common)
        student = student.cpu().eval()

    with run.timed("student alone"):   # same initial weights, batches and budget; the labels only
        torch.manual_seed(seed)
        alone = build(arch)
        train(alone, data, epochs=cfg["epochs"], lr=cfg["lr"], seed=seed, desc=f"{arch} alone", **common)
        alone = alone.cpu().eval()

    with run.timed("fine-tune"):
        base = magnitude_prune(copy.deepcopy(student), cfg["prune_amount"])
        masks = [m.weight_mask.clone() for m in base.modules() if hasattr(m, "weight_mask")]
        targets = {"cross_entropy": {},
                   "kd_teacher": dict(teacher_logits=td.train_logits, **soft),
                   "kd_unpruned": dict(teacher_logits=predict_logits(student.to(run.device), data.x_train), **soft)}
        student.cpu()
        seeds = [seed + 1 + k for k in range(cfg["finetune_seeds"])]
        tuned: dict = {key: [] for key in FINETUNE}
        for s in seeds:
            for key, label in FINETUNE.items():
                m = copy.deepcopy(base)
                train(m, data, epochs=cfg["finetune_epochs"], lr=cfg["finetune_lr"], seed=s,
                      desc=f"fine-tuning, {label}, seed {s}", **targets[key], **common)
                tuned[key].append(m.cpu().eval())

    with run.timed("compress"):
        int8 = quantize_int8(student)
        pruned = finalize_pruning(copy.deepcopy(tuned["kd_teacher"][0]))
        both = quantize_int8(pruned)

    with run.timed("measure"):
        x_test, y_test = data.x_test.cpu(), data.y_test.cpu()
        n_teacher, n_student = count_params(td.model), count_params(student)
        t_arch, pct, repeats = td.describe()["arch"], f"{100 * cfg['prune_amount']:.0f}%", cfg["latency_repeats"]
        ms = latencies_ms([td.model, student, int8, pruned, both], x_test[:1], repeats=repeats,
                          rounds=cfg["latency_rounds"])
        same = dict(params=n_student)
        rows = [
            measure(f"teacher ({t_arch})", td.model, x_test, y_test, arch=t_arch, precision="fp32",
                    params=n_teacher, latency=ms[0]),
            measure(f"distilled student ({arch})", student, x_test, y_test, arch=arch, precision="fp32",
                    latency=ms[1], **same),
            measure("student, int8", int8, x_test, y_test, arch=arch, precision="int8", latency=ms[2], **same),
            measure(f"student, pruned {pct} + fine-tuned", pruned, x_test, y_test, arch=arch, precision="fp32",
                    latency=ms[3], **same),
            measure(f"student, pruned {pct} + int8 (deployed)", both, x_test, y_test, arch=arch, precision="int8",
                    latency=ms[4], **same),
        ]
        td.model.to(run.device)
        alone_errors = accuracy(alone, x_test, y_test)["test_errors"]
        for r in rows:
            r["gap_closed"] = gap_closed(r["test_errors"], alone=alone_errors, teacher=rows[0]["test_errors"])
        finetune = compare_finetuning(base, masks, tuned, seeds, x_test, y_test, amount=cfg["prune_amount"],
                                      epochs=cfg["finetune_epochs"], lr=cfg["finetune_lr"],
                                      train_size=len(data.y_train), batch_size=cfg["batch_size"])
    ratio = rows[2]["latency_ms"] / rows[1]["latency_ms"]   # int8 / float32, the same student
    return run.finish({
        "rows": rows,
        "headline": headline(rows, alone_errors=alone_errors),
        "student_alone": {"arch": arch, **accuracy(alone, x_test, y_test)},
        "int8": {"latency_ratio": ratio,
                 "text": (f"int8 alone makes the float32 student {speed_text(1 / ratio)} at batch 1 "
                          f"({1000 * rows[2]['latency_ms']:.0f} us against {1000 * rows[1]['latency_ms']:.0f} us)")},
        "finetune": finetune,
        "dataset": data.name, "train_size": len(data.y_train), "test_size": len(data.y_test),
        "student_arch": arch, "temperature": cfg["temperature"], "alpha": cfg["alpha"], "epochs": cfg["epochs"],
        "prune_amount": cfg["prune_amount"], "finetune_epochs": cfg["finetune_epochs"],
        "quantized_engine": torch.backends.quantized.engine,
        "latency": (f"median of {repeats} batch-1 forward passes per model, in {cfg['latency_rounds']} rounds that "
                    f"alternate the five models, 1 CPU thread, {platform.processor() or 'cpu'}"),
        "size": ("size_bytes: torch.save of the compact storage (weights with many zeros as a 1-bit mask "
                 "plus the non-zero values, int8 weights as int8); state_dict_bytes: torch.save of the "
                 "plain state_dict, where pruned zeros still cost 4 bytes each"),
    }, teacher=td.describe(), models={"teacher": td.model, "student": student, "int8": int8, "pruned": pruned,
                                      "deployed": both, "alone": alone, "finetuned": tuned, "data": data})


def compare_finetuning(base, masks, tuned: dict, seeds: list, x_test, y_test, *, amount: float, epochs: int,
                       lr: float, train_size: int, batch_size: int) -> dict:
    """``finetune``: each fine-tuning's test errors and sparsity, whether the masks held, and the verdicts."""
    def zeros_kept(model) -> bool:
        layers = [m for m in model.modules() if hasattr(m, "weight_mask")]
        return len(layers) == len(masks) and all(
            torch.equal(m.weight_mask, mask) and not bool(m.weight.detach()[mask == 0].any())
            for m, mask in zip(layers, masks))

    losses = {}
    for key, label in FINETUNE.items():
        errors = [accuracy(m, x_test, y_test)["test_errors"] for m in tuned[key]]
        losses[key] = {"label": label, "test_errors": errors, "mean_test_errors": sum(errors) / len(errors),
                       "sparsity": [round(sparsity(m), 4) for m in tuned[key]]}
    ce = losses["cross_entropy"]

    def verdict(key: str) -> str:
        kd = losses[key]
        fewer = sum(k < c for k, c in zip(kd["test_errors"], ce["test_errors"]))
        more = sum(k > c for k, c in zip(kd["test_errors"], ce["test_errors"]))
        return (f"{kd['label']} against cross-entropy: fewer test errors on {fewer}, more on {more} of "
                f"{len(seeds)} seeds (mean {kd['mean_test_errors']:.1f} against {ce['mean_test_errors']:.1f})")

    return {
        "amount": amount, "epochs": epochs, "lr": lr, "steps": epochs * math.ceil(train_size / batch_size),
        "seeds": seeds,
        "sparsity_before": round(sparsity(base), 4),
        "no_finetune_test_errors": accuracy(base, x_test, y_test)["test_errors"],
        "losses": losses,
        "mask_kept": all(zeros_kept(m) for models in tuned.values() for m in models),
        "verdicts": [verdict("kd_teacher"), verdict("kd_unpruned")],
    }
