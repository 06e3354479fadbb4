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
import time

import torch

from . import Option, register
from ._mnist_common import TeacherAndData, fit, pick_epochs, seeded_student, teacher_and_data

DEFAULTS = dict(arch="mlp-800x2", temperature=4.0, alpha=0.9, epochs_all=5, steps_small=800, lr=0.05)


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


def experiment(seed: int = 0, fraction: float = 0.01, *, temperature: float = DEFAULTS["temperature"],
               alpha: float = DEFAULTS["alpha"], arch: str = DEFAULTS["arch"], epochs: int | None = None,
               progress: bool = True, shared: TeacherAndData | None = None) -> dict:
    start = time.perf_counter()
    td = shared or teacher_and_data(seed, progress)
    data = td.data
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    mask = labeled_mask(y, fraction, seed)
    n_labeled = int(mask.sum())
    # The runs on the labeled images alone take a fixed number of SGD steps (hundreds of passes
    # over their few images); the run on all images takes a few passes over them.
    epochs_all = epochs if epochs is not None else pick_epochs(DEFAULTS["epochs_all"], 2)
    steps_small = int(pick_epochs(DEFAULTS["steps_small"], 150))
    epochs_small = _epochs_for_steps(n_labeled, steps_small)
    common = dict(T=temperature, lr=DEFAULTS["lr"], seed=seed, x_test=x_test, y_test=y_test, progress=progress)

    hard = fit(seeded_student(arch, seed), x[mask], y=y[mask], epochs=epochs_small,
               desc=f"hard labels ({n_labeled})", **common)
    soft_all = fit(seeded_student(arch, seed), x, y=y, labeled=mask, teacher_logits=td.train_logits,
                   alpha=alpha, epochs=epochs_all, desc="soft targets, all images", **common)
    soft_same = fit(seeded_student(arch, seed), x[mask], y=y[mask], teacher_logits=td.train_logits[mask],
                    alpha=alpha, epochs=epochs_small, desc=f"soft targets, {n_labeled} images", **common)
    return {
        "fraction": fraction, "seed": seed, "labels_used": n_labeled,
        "hard_labels_test_errors": hard["test_errors"],
        "soft_targets_test_errors": soft_all["test_errors"],
        "soft_targets_same_images_test_errors": soft_same["test_errors"],
        "teacher_test_errors": td.teacher_test_errors,
        "train_size": len(y), "test_size": len(y_test),
        "students": {
            "arch": arch, "temperature": temperature, "alpha": alpha,
            "hard_labels": {"images": n_labeled, "epochs": epochs_small, **hard},
            "soft_targets": {"images": len(y), "epochs": epochs_all, **soft_all},
            "soft_targets_same_images": {"images": n_labeled, "epochs": epochs_small, **soft_same},
        },
        "teacher": "cnn-teacher (kdlab.zoo), trained on all training labels",
        "fast_mode": _fast(), "seconds": round(time.perf_counter() - start, 1),
    }


def _fast() -> bool:
    from ..settings import fast_mode

    return fast_mode()


def summarize(r: dict) -> str:
    n, s = r["labels_used"], r["students"]
    rows = [("student", "labels", "images", "test errors"),
            ("hard labels only", f"{n:,}", f"{n:,}", str(r["hard_labels_test_errors"])),
            ("+ soft targets, all images", f"{n:,}", f"{r['train_size']:,}", str(r["soft_targets_test_errors"])),
            ("soft targets, same images", f"{n:,}", f"{n:,}", str(r["soft_targets_same_images_test_errors"])),
            ("teacher (all labels)", f"{r['train_size']:,}", f"{r['train_size']:,}", str(r["teacher_test_errors"]))]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    head = (f"few-labels: {100 * r['fraction']:g}% of the labels, {s['arch']} students, "
            f"T={s['temperature']:g}, alpha={s['alpha']:g}, {r['test_size']:,} test images"
            + (" (KDLAB_FAST slice)" if r.get("fast_mode") else ""))
    return "\n".join([head, "", *lines, "", f"whole run {r['seconds']:.0f} s"])


@register("few-labels", "a student with 1% of the labels, alone vs taught by the teacher's soft targets",
          options=[Option("fraction", float, 0.01, "fraction of the training labels the student may use"),
                   Option("temperature", float, DEFAULTS["temperature"], "distillation temperature"),
                   Option("alpha", float, DEFAULTS["alpha"], "weight of the soft term")],
          summarize=summarize)
def run(seed: int = 0, progress: bool = True, fraction: float = 0.01,
        temperature: float = DEFAULTS["temperature"], alpha: float = DEFAULTS["alpha"]) -> dict:
    return experiment(seed, fraction, temperature=temperature, alpha=alpha, progress=progress)
