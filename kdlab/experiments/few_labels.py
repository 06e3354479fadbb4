"""Few labels: what a student learns from 1% of the labels, with and without a teacher's soft targets.

Three students of the same architecture, from the same initial weights:

* **hard labels only**: trained on the labeled fraction alone (cross-entropy);
* **soft targets, all images**: the same labels, plus the teacher's soft
  targets on every training image (the other 99% unlabeled);
* **soft targets, same images**: the teacher's soft targets on the labeled
  fraction only (no extra images): Hinton et al.'s speech result (section 5,
  3% of the data), where soft targets alone stop the over-fitting.

The teacher is the course's CNN, trained on all labels: the experiment
measures how much of its knowledge its soft targets carry to a student that
holds few labels of its own.

    kdlab experiment few-labels --fraction 0.01 --seed 0 --json runs/few-labels.json
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from . import Option, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, seeded_student, teacher_for_run
from ..data import Dataset
from ..train import train

DEFAULTS = dict(fraction=0.01, arch="mlp-800x2", temperature=4.0, alpha=0.9, epochs_all=5, steps_small=800, lr=0.05)
FAST = dict(epochs_all=2, steps_small=150)


def labeled_mask(y: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """A boolean mask choosing ``round(fraction * N)`` rows, stratified so every class keeps its share.

    Each class gets its proportional share (largest remainders break the ties) and
    at least one row, so 1% of MNIST is 600 labels, about 60 per digit.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    g = torch.Generator().manual_seed(seed)
    y_cpu = y.cpu()
    classes, counts = torch.unique(y_cpu, return_counts=True)
    total = max(len(classes), round(fraction * len(y_cpu)))
    share = counts.double() * total / len(y_cpu)
    k = share.floor().long().clamp(min=1)
    order = torch.argsort(share - share.floor(), descending=True)
    for i in order[: max(0, total - int(k.sum()))]:
        k[i] += 1
    mask = torch.zeros(len(y_cpu), dtype=torch.bool)
    for c, kc in zip(classes, k):
        rows = torch.nonzero(y_cpu == c).flatten()
        mask[rows[torch.randperm(len(rows), generator=g)[: int(kc)]]] = True
    return mask.to(y.device)


def _epochs_for_steps(n: int, steps: int, batch_size: int = 128) -> int:
    return max(1, math.ceil(steps / math.ceil(n / batch_size)))


def summarize(r: dict) -> str:
    n, s, t = r["labels_used"], r["students"], r["train_size"]
    rows = [("hard labels only", f"{n:,}", f"{n:,}", r["hard_labels_test_errors"]),
            ("+ soft targets, all images", f"{n:,}", f"{t:,}", r["soft_targets_test_errors"]),
            ("soft targets, same images", f"{n:,}", f"{n:,}", r["soft_targets_same_images_test_errors"]),
            ("teacher (all labels)", f"{t:,}", f"{t:,}", r["teacher"]["test_errors"])]
    head = (f"few-labels: {100 * r['fraction']:g}% of the labels, {s['arch']} students, "
            f"T={s['temperature']:g}, alpha={s['alpha']:g}, {r['test_size']:,} test images" + fast_note(r))
    table = format_table(("student", "labels", "images", "test errors"), rows)
    return "\n".join([head, "", table, "", f"whole run {r['seconds']['total']:.0f} s"])


@register("few-labels", "a student with 1% of the labels, alone vs taught by the teacher's soft targets",
          options=[Option("fraction", float, help="fraction of the training labels the student may use"),
                   Option("temperature", float, help="distillation temperature"),
                   Option("alpha", float, help="weight of the soft term")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, fraction: float | None = None, temperature: float | None = None,
               alpha: float | None = None, arch: str | None = None, epochs_all: int | None = None,
               steps_small: int | None = None, teacher: CachedTeacher | None = None) -> Outcome:
    """Train the three students (same initial weights); ``models`` holds them and the labeled mask.

    ``epochs_all``: passes of the student that sees every image; the two on
    the labeled images alone take ``steps_small`` SGD steps whatever their size.
    """
    run = Run("few-labels", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, fraction=fraction, temperature=temperature, alpha=alpha, arch=arch,
                     epochs_all=epochs_all, steps_small=steps_small)
    td = teacher_for_run(teacher, data, run, progress)
    data = td.data
    mask = labeled_mask(data.y_train, cfg["fraction"], seed)
    n_labeled = int(mask.sum())
    labeled_only = replace(data, x_train=data.x_train[mask], y_train=data.y_train[mask])
    # The runs on the labeled images alone take a fixed number of SGD steps (hundreds of passes
    # over their few images); the run on all images takes a few passes over them.
    epochs_small = _epochs_for_steps(n_labeled, cfg["steps_small"])
    common = dict(T=cfg["temperature"], lr=cfg["lr"], seed=seed, device=run.device, evaluate_every_epoch=False,
                  progress=progress)

    models, students = {}, {}

    def student(name: str, subset: Dataset, epochs: int, desc: str, **soft) -> None:
        models[name] = seeded_student(cfg["arch"], seed)
        history = train(models[name], subset, epochs=epochs, desc=desc, **common, **soft)
        students[name] = {"images": len(subset.y_train), "epochs": epochs,
                          "train_seconds": round(history.train_seconds, 2), "test_errors": history.final_test_errors}

    student("hard_labels", labeled_only, epochs_small, f"hard labels ({n_labeled})")
    student("soft_targets", data, cfg["epochs_all"], "soft targets, all images", labeled=mask,
            teacher_logits=td.train_logits, alpha=cfg["alpha"])
    student("soft_targets_same_images", labeled_only, epochs_small, f"soft targets, {n_labeled} images",
            teacher_logits=td.train_logits[mask], alpha=cfg["alpha"])
    return run.finish({
        "fraction": cfg["fraction"], "labels_used": n_labeled,
        "hard_labels_test_errors": students["hard_labels"]["test_errors"],
        "soft_targets_test_errors": students["soft_targets"]["test_errors"],
        "soft_targets_same_images_test_errors": students["soft_targets_same_images"]["test_errors"],
        "train_size": len(data.y_train), "test_size": len(data.y_test),
        "students": {"arch": cfg["arch"], "temperature": cfg["temperature"], "alpha": cfg["alpha"], **students},
    }, teacher={**td.describe(), "labels": "all training labels"}, models={**models, "labeled": mask})
