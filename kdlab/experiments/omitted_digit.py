"""Hinton et al. (2015), section 3: a student that never sees a 3 still learns to recognise 3s.

The teacher is trained on every digit. The student's transfer set is the
training set with every image of one digit removed (its soft targets *and* its
hard labels). What the student knows about that digit comes only from the
teacher's soft targets on the other digits ("this 8 looks a little like a 3").
Afterwards the student's output bias for the digit is too low; raising it by a
shift recovers most of the digit's test images.

The shift is chosen without the test set: on the training images (their labels
unused), it makes the student predict the digit exactly as often as the teacher
does (:func:`bias_shift_for_class`). Hinton chose his +3.5 on the test set.

    kdlab experiment omitted-digit --digit 3 --seed 0 --json runs/omitted-digit.json
"""

from __future__ import annotations

from dataclasses import replace

import torch

from . import Option, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, seeded_student, teacher_for_run
from ..data import Dataset
from ..train import predict_logits, train

# Hinton et al. (2015), section 3 (800-800 student, 1010 test 3s).
HINTON = {"test_errors_before_shift": 206, "digit_errors_before_shift": 133,
          "bias_shift": 3.5, "test_errors_after_shift": 109, "digit_errors_after_shift": 14,
          "digit_test_count": 1010, "digit_accuracy_after_shift": 1 - 14 / 1010,
          "digit_accuracy_before_shift": 1 - 133 / 1010}

DEFAULTS = dict(digit=3, arch="mlp-800x2", temperature=8.0, alpha=0.9, epochs=8, lr=0.05)
FAST = dict(epochs=2)


def _margin(logits: torch.Tensor, cls: int) -> torch.Tensor:
    """z_cls - max_{j != cls} z_j for every row: positive where ``cls`` wins the argmax."""
    others = logits.clone()
    others[..., cls] = float("-inf")
    return logits[..., cls] - others.max(dim=-1).values


def bias_shift_for_class(student_logits: torch.Tensor, teacher_logits: torch.Tensor, cls: int) -> float:
    """The shift b to add to the student's logit ``cls`` so it predicts ``cls`` as often as the teacher.

    With k = the number of rows the teacher predicts as ``cls`` (0 < k < N) and
    m_1 >= m_2 >= ... the student's margins z_cls - max_{j != cls} z_j sorted
    in decreasing order, b = -(m_k + m_{k+1}) / 2: exactly k rows get a
    positive margin, and b sits halfway between the two nearest choices.
    """
    k = int((teacher_logits.argmax(dim=-1) == cls).sum())
    n = teacher_logits.shape[0]
    if not 0 < k < n:
        raise ValueError(f"the teacher predicts class {cls} for {k} of {n} rows; need 0 < k < N")
    m = torch.sort(_margin(student_logits.detach().double(), cls), descending=True).values
    return float(-(m[k - 1] + m[k]) / 2)


def shifted(logits: torch.Tensor, cls: int, shift: float) -> torch.Tensor:
    """``logits`` with ``shift`` added to column ``cls`` (the output bias raised by ``shift``)."""
    out = logits.clone()
    out[..., cls] += shift
    return out


def digit_accuracy(logits: torch.Tensor, y: torch.Tensor, cls: int) -> float:
    """Fraction of the images of class ``cls`` that ``logits`` classify correctly."""
    mask = y == cls
    return float((logits[mask].argmax(-1) == cls).float().mean()) if bool(mask.any()) else float("nan")


def test_errors(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(-1) != y).sum())


def summarize(r: dict) -> str:
    d, h = r["digit"], r["hinton_2015"]
    rows = [("before the shift", r["test_errors_before_shift"], f"{100 * r['digit_accuracy_before_shift']:.1f}%", "0"),
            ("after the shift", r["test_errors_after_shift"], f"{100 * r['digit_accuracy_after_shift']:.1f}%",
             f"{r['bias_shift']:+.2f}")]
    if d == 3:
        rows += [("Hinton 2015, before", h["test_errors_before_shift"],
                  f"{100 * h['digit_accuracy_before_shift']:.1f}%", "0"),
                 ("Hinton 2015, after", h["test_errors_after_shift"],
                  f"{100 * h['digit_accuracy_after_shift']:.1f}%", f"{h['bias_shift']:+.2f} (tuned on test)")]
    head = (f"omitted-digit: a {r['student']['arch']} student distilled (T={r['temperature']:g}, "
            f"alpha={r['alpha']:g}) on {r['transfer_set_size']:,} training images with no {d}; "
            f"{r['digit_test_count']} test {d}s; teacher makes {r['teacher']['test_errors']} test errors"
            + fast_note(r))
    table = format_table(("", "test errors", f"{d}s right", "bias shift"), rows)
    return "\n".join([head, "", table, "", f"whole run {r['seconds']['total']:.0f} s"])


@register("omitted-digit", "Hinton's experiment: a student distilled without any 3s, then a bias shift",
          options=[Option("digit", int, help="the digit left out of the transfer set"),
                   Option("temperature", float, help="distillation temperature"),
                   Option("alpha", float, help="weight of the soft term"),
                   Option("epochs", int, help="student epochs")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, digit: int | None = None, temperature: float | None = None,
               alpha: float | None = None, epochs: int | None = None, arch: str | None = None,
               lr: float | None = None, teacher: CachedTeacher | None = None) -> Outcome:
    """Distill a student on a transfer set without ``digit``, then raise that class's bias.

    ``teacher``: a :func:`~kdlab.experiments.mnist.cached_teacher` to reuse (it
    carries its data). ``models``: the student, its logits on every training
    image (the digit's included, unlabeled) and on the test images before the
    shift, the teacher's training logits, and the unrounded shift.
    """
    run = Run("omitted-digit", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, digit=digit, temperature=temperature, alpha=alpha, epochs=epochs,
                     arch=arch, lr=lr)
    digit = cfg["digit"]
    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be 0..9, got {digit}")
    td = teacher_for_run(teacher, data, run, progress)
    data = td.data
    keep = data.y_train != digit
    transfer = replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    student = seeded_student(cfg["arch"], seed)
    history = train(student, transfer, teacher_logits=td.train_logits[keep], T=cfg["temperature"],
                    alpha=cfg["alpha"], epochs=cfg["epochs"], lr=cfg["lr"], seed=seed, device=run.device,
                    evaluate_every_epoch=False, progress=progress, desc=f"student without {digit}s")
    s_train = predict_logits(student, data.x_train)
    s_test = predict_logits(student, data.x_test)
    shift = bias_shift_for_class(s_train, td.train_logits, digit)
    after = shifted(s_test, digit, shift)
    y = data.y_test
    return run.finish({
        "digit": digit,
        "digit_accuracy_before_shift": round(digit_accuracy(s_test, y, digit), 4),
        "digit_accuracy_after_shift": round(digit_accuracy(after, y, digit), 4),
        "bias_shift": round(shift, 3),
        "test_errors_before_shift": test_errors(s_test, y),
        "test_errors_after_shift": test_errors(after, y),
        "digit_test_count": int((y == digit).sum()),
        "transfer_set_size": int(keep.sum()), "train_size": len(data.y_train), "test_size": len(y),
        "shift_chosen_on": "training images (labels unused): student predicts the digit as often as the teacher",
        "student": {"arch": cfg["arch"], "epochs": cfg["epochs"], "lr": cfg["lr"],
                    "train_seconds": round(history.train_seconds, 2)},
        "temperature": cfg["temperature"], "alpha": cfg["alpha"],
        "hinton_2015": HINTON,
    }, teacher={**td.describe(), "digit_accuracy": round(digit_accuracy(td.test_logits, y, digit), 4)},
        models={"student": student, "student_train_logits": s_train, "student_test_logits": s_test,
                "teacher_train_logits": td.train_logits, "shift": shift})
