"""Lesson 10's lab: what exactly does a student learn from? Labels, the teacher's labels, its soft targets, itself.

One student architecture, the same initial weights and the same batches; only
the targets differ:

* **true labels**: cross-entropy on the data's labels (the baseline), also
  with two more seeds to measure the seed spread;
* **teacher's hard labels**: cross-entropy on the teacher's argmax ("training
  on teacher-labelled data", pseudo-labels): the teacher's answers, without
  its dark knowledge;
* **teacher's soft targets**: the soft term alone (alpha = 1), no label at all;
* **KD**: the course's recipe, alpha * soft + (1 - alpha) * CE on the labels;
* **born-again**: self-distillation (Furlanello et al., 2018): the teacher is
  the true-labels student itself, same architecture, and a fresh student (from
  the same initial weights) is distilled from it with the KD recipe.

Besides the test errors, each student's **agreement** with the CNN teacher
(the share of test images on which their answers agree) measures how much of
the teacher's behaviour it took on, right or wrong.

    kdlab experiment soft-targets --seed 0 --json runs/soft-targets.json
"""

from __future__ import annotations

import time

import torch

from . import Option, register
from ._mnist_common import fit, pick_epochs, seeded_student, teacher_and_data
from ..settings import fast_mode
from ..train import predict_logits

DEFAULTS = dict(arch="mlp-300x2", temperature=4.0, alpha=0.9, epochs=5, lr=0.05)
STUDENTS = ("true_labels", "teacher_hard_labels", "teacher_soft_targets", "kd", "born_again")
LABELS = {
    "true_labels": "true labels (CE)",
    "teacher_hard_labels": "teacher's hard labels (CE on its argmax)",
    "teacher_soft_targets": "teacher's soft targets only (alpha = 1)",
    "kd": "KD: soft targets + true labels",
    "born_again": "born-again: distilled from the true-labels student",
}


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).float().mean())


def experiment(seed: int = 0, *, arch: str = DEFAULTS["arch"], temperature: float = DEFAULTS["temperature"],
               alpha: float = DEFAULTS["alpha"], epochs: int | None = None, spread_seeds: int = 2,
               progress: bool = True) -> dict:
    """Train the five students (and ``spread_seeds`` more true-labels students); JSON-ready results."""
    start = time.perf_counter()
    td = teacher_and_data(seed, progress)
    data = td.data
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    epochs = epochs if epochs is not None else pick_epochs(DEFAULTS["epochs"], 1)
    common = dict(T=temperature, lr=DEFAULTS["lr"], epochs=epochs, seed=seed, x_test=x_test, y_test=y_test,
                  progress=progress)
    teacher_hard = td.train_logits.argmax(-1)

    students, results = {}, {}

    def run(key, **kwargs):
        model = seeded_student(arch, seed)
        out = fit(model, x, desc=LABELS[key], **common, **kwargs)
        logits = predict_logits(model, x_test)
        out["agreement_with_teacher"] = round(_agreement(logits, td.test_logits), 5)
        students[key], results[key] = model, out
        return out

    run("true_labels", y=y)
    run("teacher_hard_labels", y=teacher_hard)
    run("teacher_soft_targets", y=y, teacher_logits=td.train_logits, alpha=1.0)
    run("kd", y=y, teacher_logits=td.train_logits, alpha=alpha)
    own_teacher_logits = predict_logits(students["true_labels"], x)
    run("born_again", y=y, teacher_logits=own_teacher_logits, alpha=alpha)
    results["born_again"]["agreement_with_its_teacher"] = round(
        _agreement(predict_logits(students["born_again"], x_test), predict_logits(students["true_labels"], x_test)), 5)

    spread = [results["true_labels"]["test_errors"]]
    for extra in range(1, spread_seeds + 1):
        model = seeded_student(arch, seed + extra)
        spread.append(fit(model, x, y=y, desc=f"true labels, seed {seed + extra}",
                          **{**common, "seed": seed + extra})["test_errors"])

    teacher_hard_agrees = float((teacher_hard == y).float().mean())
    return {
        "seed": seed, "arch": arch, "temperature": temperature, "alpha": alpha, "epochs": epochs,
        "students": results,
        "test_errors": {k: results[k]["test_errors"] for k in STUDENTS},
        "true_labels_seed_spread": {"seeds": list(range(seed, seed + spread_seeds + 1)), "test_errors": spread,
                                    "range": max(spread) - min(spread)},
        "teacher": {"arch": "cnn-small (kdlab.zoo cnn-teacher)", "test_errors": td.teacher_test_errors,
                    "train_label_agreement": round(teacher_hard_agrees, 5)},
        "train_size": len(y), "test_size": len(y_test),
        "fast_mode": fast_mode(), "seconds": round(time.perf_counter() - start, 1),
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(x.device)},
    }


def summarize(r: dict) -> str:
    rows = [("student (targets)", "test errors", "agrees with teacher", "train s")]
    for key in STUDENTS:
        s = r["students"][key]
        rows.append((LABELS[key], str(s["test_errors"]), f"{100 * s['agreement_with_teacher']:.2f}%",
                     f"{s['train_seconds']:.1f}"))
    rows.append(("teacher (cnn-small)", str(r["teacher"]["test_errors"]), "100.00%", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    spread = r["true_labels_seed_spread"]
    head = (f"soft-targets: {r['arch']} students, {r['epochs']} epochs, T={r['temperature']:g}, "
            f"alpha={r['alpha']:g}, {r['test_size']:,} test images" + (" (KDLAB_FAST slice)" if r["fast_mode"] else ""))
    foot = [f"true-labels student over seeds {spread['seeds']}: {spread['test_errors']} test errors "
            f"(range {spread['range']}): differences smaller than that are noise",
            f"the teacher's argmax agrees with {100 * r['teacher']['train_label_agreement']:.2f}% of the training labels; "
            f"the born-again student agrees with its own teacher on "
            f"{100 * r['students']['born_again']['agreement_with_its_teacher']:.2f}% of the test images",
            f"whole run {r['seconds']:.0f} s"]
    return "\n".join([head, "", *lines, "", *foot])


@register("soft-targets", "lesson 10's lab: one student on true labels, the teacher's hard labels, its soft "
          "targets, KD, and born-again self-distillation",
          options=[Option("arch", str, DEFAULTS["arch"], "student architecture (e.g. mlp-300x2)"),
                   Option("temperature", float, DEFAULTS["temperature"], "distillation temperature"),
                   Option("alpha", float, DEFAULTS["alpha"], "weight of the soft term (KD and born-again)"),
                   Option("epochs", int, 0, "epochs per student (default 5, 1 under KDLAB_FAST)")],
          summarize=summarize)
def run(seed: int = 0, progress: bool = True, arch: str = DEFAULTS["arch"],
        temperature: float = DEFAULTS["temperature"], alpha: float = DEFAULTS["alpha"], epochs: int = 0) -> dict:
    return experiment(seed, arch=arch, temperature=temperature, alpha=alpha, epochs=epochs or None,
                      progress=progress)
