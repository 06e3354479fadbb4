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

from dataclasses import replace

import torch

from . import Option, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, seeded_student, teacher_for_run
from ..data import Dataset
from ..train import predict_logits, train

DEFAULTS = dict(arch="mlp-300x2", temperature=4.0, alpha=0.9, epochs=5, lr=0.05, spread_seeds=2)
FAST = dict(epochs=1)
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


def summarize(r: dict) -> str:
    rows = [(LABELS[key], s["test_errors"], f"{100 * s['agreement_with_teacher']:.2f}%", f"{s['train_seconds']:.1f}")
            for key, s in ((k, r["students"][k]) for k in STUDENTS)]
    rows.append((f"teacher ({r['teacher']['arch']})", r["teacher"]["test_errors"], "100.00%", ""))
    spread = r["true_labels_seed_spread"]
    head = (f"soft-targets: {r['arch']} students, {r['epochs']} epochs, T={r['temperature']:g}, "
            f"alpha={r['alpha']:g}, {r['test_size']:,} test images" + fast_note(r))
    foot = [f"true-labels student over seeds {spread['seeds']}: {spread['test_errors']} test errors "
            f"(range {spread['range']}): differences smaller than that are noise",
            f"the teacher's argmax agrees with {100 * r['teacher']['train_label_agreement']:.2f}% of the training "
            f"labels; the born-again student agrees with its own teacher on "
            f"{100 * r['students']['born_again']['agreement_with_its_teacher']:.2f}% of the test images",
            f"whole run {r['seconds']['total']:.0f} s"]
    table = format_table(("student (targets)", "test errors", "agrees with teacher", "train s"), rows)
    return "\n".join([head, "", table, "", *foot])


@register("soft-targets", "lesson 10's lab: one student on true labels, the teacher's hard labels, its soft "
          "targets, KD, and born-again self-distillation",
          options=[Option("arch", str, help="student architecture (e.g. mlp-300x2)"),
                   Option("temperature", float, help="distillation temperature"),
                   Option("alpha", float, help="weight of the soft term (KD and born-again)"),
                   Option("epochs", int, help="epochs per student")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, arch: str | None = None, temperature: float | None = None,
               alpha: float | None = None, epochs: int | None = None, spread_seeds: int | None = None,
               teacher: CachedTeacher | None = None) -> Outcome:
    """Train the five students (and ``spread_seeds`` more true-labels students); ``models`` holds the five."""
    run = Run("soft-targets", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, arch=arch, temperature=temperature, alpha=alpha, epochs=epochs,
                     spread_seeds=spread_seeds)
    td = teacher_for_run(teacher, data, run, progress)
    data = td.data
    x, y, x_test = data.x_train, data.y_train, data.x_test
    common = dict(T=cfg["temperature"], lr=cfg["lr"], epochs=cfg["epochs"], device=run.device,
                  evaluate_every_epoch=False, progress=progress)
    teacher_hard = td.train_logits.argmax(-1)
    students, results = {}, {}

    def student(key, on=data, student_seed=seed, **soft) -> dict:
        model = seeded_student(cfg["arch"], student_seed)
        history = train(model, on, seed=student_seed, desc=LABELS.get(key, key), **common, **soft)
        out = {"train_seconds": round(history.train_seconds, 2), "test_errors": history.final_test_errors,
               "agreement_with_teacher": round(_agreement(predict_logits(model, x_test), td.test_logits), 5)}
        students[key] = model
        return out

    results["true_labels"] = student("true_labels")
    results["teacher_hard_labels"] = student("teacher_hard_labels", on=replace(data, y_train=teacher_hard))
    results["teacher_soft_targets"] = student("teacher_soft_targets", teacher_logits=td.train_logits, alpha=1.0)
    results["kd"] = student("kd", teacher_logits=td.train_logits, alpha=cfg["alpha"])
    own_teacher_logits = predict_logits(students["true_labels"], x)
    results["born_again"] = student("born_again", teacher_logits=own_teacher_logits, alpha=cfg["alpha"])
    results["born_again"]["agreement_with_its_teacher"] = round(
        _agreement(predict_logits(students["born_again"], x_test), predict_logits(students["true_labels"], x_test)), 5)

    spread = [results["true_labels"]["test_errors"]]
    for extra in range(1, cfg["spread_seeds"] + 1):
        spread.append(student(f"true labels, seed {seed + extra}", student_seed=seed + extra)["test_errors"])
    return run.finish({
        "arch": cfg["arch"], "temperature": cfg["temperature"], "alpha": cfg["alpha"], "epochs": cfg["epochs"],
        "students": results,
        "test_errors": {k: results[k]["test_errors"] for k in STUDENTS},
        "true_labels_seed_spread": {"seeds": list(range(seed, seed + cfg["spread_seeds"] + 1)), "test_errors": spread,
                                    "range": max(spread) - min(spread)},
        "train_size": len(y), "test_size": len(data.y_test),
    }, teacher={**td.describe(), "train_label_agreement": round(float((teacher_hard == y).float().mean()), 5)},
        models={k: students[k] for k in STUDENTS})
