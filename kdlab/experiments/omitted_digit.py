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

import time
from dataclasses import dataclass

import torch
from torch import nn

from . import Option, register
from ._mnist_common import TeacherAndData, fit, pick_epochs, seeded_student, teacher_and_data
from ..data import Dataset
from ..train import predict_logits

# Hinton et al. (2015), section 3 (800-800 student, 1010 test 3s).
HINTON = {"test_errors_before_shift": 206, "digit_errors_before_shift": 133,
          "bias_shift": 3.5, "test_errors_after_shift": 109, "digit_errors_after_shift": 14,
          "digit_test_count": 1010, "digit_accuracy_after_shift": 1 - 14 / 1010,
          "digit_accuracy_before_shift": 1 - 133 / 1010}

DEFAULTS = dict(arch="mlp-800x2", temperature=8.0, alpha=0.9, epochs=8, lr=0.05)


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


@dataclass
class OmittedDigitResult:
    summary: dict                      # what ``run`` returns and the CLI writes
    student: nn.Module
    teacher: nn.Module
    data: Dataset
    student_train_logits: torch.Tensor  # on every training image, the omitted digit's included (unlabeled)
    teacher_train_logits: torch.Tensor
    student_test_logits: torch.Tensor   # before the shift
    shift: float = 0.0                  # the bias shift, unrounded (the summary rounds it)


def experiment(seed: int = 0, digit: int = 3, *, temperature: float = DEFAULTS["temperature"],
               alpha: float = DEFAULTS["alpha"], epochs: int | None = None, arch: str = DEFAULTS["arch"],
               lr: float = DEFAULTS["lr"], progress: bool = True,
               shared: TeacherAndData | None = None) -> OmittedDigitResult:
    """Distill a student on a transfer set without ``digit``, then raise that class's bias."""
    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be 0..9, got {digit}")
    start = time.perf_counter()
    td = shared or teacher_and_data(seed, progress)
    data = td.data
    keep = data.y_train != digit
    epochs = epochs if epochs is not None else pick_epochs(DEFAULTS["epochs"], 2)
    student = seeded_student(arch, seed)
    trained = fit(student, data.x_train[keep], y=data.y_train[keep], teacher_logits=td.train_logits[keep],
                  T=temperature, alpha=alpha, epochs=epochs, lr=lr, seed=seed, progress=progress,
                  desc=f"student without {digit}s")
    s_train = predict_logits(student, data.x_train)
    s_test = predict_logits(student, data.x_test)
    shift = bias_shift_for_class(s_train, td.train_logits, digit)
    after = shifted(s_test, digit, shift)
    y = data.y_test
    summary = {
        "digit": digit, "seed": seed,
        "digit_accuracy_before_shift": round(digit_accuracy(s_test, y, digit), 4),
        "digit_accuracy_after_shift": round(digit_accuracy(after, y, digit), 4),
        "bias_shift": round(shift, 3),
        "test_errors_before_shift": test_errors(s_test, y),
        "test_errors_after_shift": test_errors(after, y),
        "digit_test_count": int((y == digit).sum()),
        "teacher_test_errors": td.teacher_test_errors,
        "teacher_digit_accuracy": round(digit_accuracy(td.test_logits, y, digit), 4),
        "transfer_set_size": int(keep.sum()), "train_size": len(data.y_train), "test_size": len(y),
        "shift_chosen_on": "training images (labels unused): student predicts the digit as often as the teacher",
        "student": {"arch": arch, "epochs": epochs, "lr": lr, "train_seconds": trained["train_seconds"]},
        "temperature": temperature, "alpha": alpha, "fast_mode": _fast(),
        "hinton_2015": HINTON,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return OmittedDigitResult(summary, student, td.teacher, data, s_train, td.train_logits, s_test, shift)


def _fast() -> bool:
    from ..settings import fast_mode

    return fast_mode()


def summarize(r: dict) -> str:
    d, h = r["digit"], r["hinton_2015"]
    rows = [("", "test errors", f"{d}s right", "bias shift"),
            ("before the shift", str(r["test_errors_before_shift"]),
             f"{100 * r['digit_accuracy_before_shift']:.1f}%", "0"),
            ("after the shift", str(r["test_errors_after_shift"]),
             f"{100 * r['digit_accuracy_after_shift']:.1f}%", f"{r['bias_shift']:+.2f}")]
    if d == 3:
        rows += [("Hinton 2015, before", str(h["test_errors_before_shift"]),
                  f"{100 * h['digit_accuracy_before_shift']:.1f}%", "0"),
                 ("Hinton 2015, after", str(h["test_errors_after_shift"]),
                  f"{100 * h['digit_accuracy_after_shift']:.1f}%", f"{h['bias_shift']:+.2f} (tuned on test)")]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    head = (f"omitted-digit: a {r['student']['arch']} student distilled (T={r['temperature']:g}, "
            f"alpha={r['alpha']:g}) on {r['transfer_set_size']:,} training images with no {d}; "
            f"{r['digit_test_count']} test {d}s; teacher makes {r['teacher_test_errors']} test errors"
            + (" (KDLAB_FAST slice)" if r.get("fast_mode") else ""))
    return "\n".join([head, "", *lines, "", f"whole run {r['seconds']:.0f} s"])


@register("omitted-digit", "Hinton's experiment: a student distilled without any 3s, then a bias shift",
          options=[Option("digit", int, 3, "the digit left out of the transfer set"),
                   Option("temperature", float, DEFAULTS["temperature"], "distillation temperature"),
                   Option("alpha", float, DEFAULTS["alpha"], "weight of the soft term"),
                   Option("epochs", int, None, "student epochs (default 8, 2 under KDLAB_FAST)")],
          summarize=summarize)
def run(seed: int = 0, progress: bool = True, digit: int = 3, temperature: float = DEFAULTS["temperature"],
        alpha: float = DEFAULTS["alpha"], epochs: int | None = None) -> dict:
    return experiment(seed, digit, temperature=temperature, alpha=alpha, epochs=epochs, progress=progress).summary
