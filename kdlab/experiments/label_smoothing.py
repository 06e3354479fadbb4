r"""Label smoothing and distillation: a smoothed teacher, and smoothing as the student's own regularizer.

Label smoothing (Szegedy et al. 2016) trains on the target
:math:`(1 - \varepsilon)\,\text{one-hot} + \varepsilon / K`. Mueller, Kornblith
and Hinton (2019, arXiv:1906.02629) found that it improves a teacher but makes
it a worse teacher to distil from: it pulls every training example's wrong
classes to the same value, erasing which wrong classes are nearly right,
the information that distillation passes on. Yuan et al. (2020,
arXiv:1909.11723) turned the question round: smoothed labels are
distillation from a teacher that holds no knowledge (a uniform one), so how
much of KD's gain does smoothing alone give?

Two CNN teachers from the same recipe, the same initial weights and batches
(:mod:`kdlab.zoo`'s ``cnn-teacher``, and ``cnn-teacher-ls`` with
:math:`\varepsilon = 0.1`): each one's test errors, its class-similarity
matrix (lesson 2's :func:`kdlab.analysis.class_similarity`) and how evenly its
soft targets spread over the wrong classes. Then one student architecture, the
same initial weights and batches at every seed:

* trained alone with cross-entropy;
* trained alone with smoothed labels (``epsilon``);
* distilled from each teacher at each temperature (the same alpha, epochs).

    kdlab experiment label-smoothing --seed 0 --json runs/label-smoothing.json
"""

from __future__ import annotations

import math

import torch

from . import Option, comma_list, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, seeded_student, timed_teacher
from .. import zoo
from ..analysis import class_similarity, entropy, most_similar_pairs
from ..data import Dataset, load
from ..losses import softmax_t
from ..train import train

PLAIN, SMOOTHED = "cnn-teacher", "cnn-teacher-ls"
# 12 small students (two seeds, 3 epochs each) keep the run near two minutes on two idle cores, plus the smoothed
# teacher's one-off training (cnn-teacher's 3 epochs, about a minute; cached after).
DEFAULTS = dict(student="mlp-100x2", epsilon=0.1, temperatures=(1.0, 4.0), alpha=0.9, epochs=3, lr=0.05, seeds=2)
# A smoke run: one epoch per student, two seeds (so the spread is computed).
FAST = dict(epochs=1, seeds=2)


def _mean(values) -> float:
    return round(sum(values) / len(values), 2)


def wrong_class_evenness(logits: torch.Tensor, labels: torch.Tensor, T: float) -> float:
    """Mean entropy of the soft target over the wrong classes alone, over log(K - 1): 1 when they are all equal.

    The distribution over the K - 1 wrong classes of each image (its true class removed, the rest
    renormalized) is what tells a student which wrong answers are nearly right; at 1 it tells nothing.
    """
    p = softmax_t(logits.double(), T)
    keep = torch.ones_like(p, dtype=torch.bool)
    keep[torch.arange(len(labels)), labels] = False
    wrong = p[keep].view(len(labels), -1)
    wrong = wrong / wrong.sum(-1, keepdim=True)
    return round(float(entropy(wrong).mean() / math.log(wrong.shape[1])), 4)


def profile(td: CachedTeacher, temperatures) -> dict:
    """A teacher as a student sees it: test errors, true-class probability, evenness, class similarity."""
    y, z = td.data.y_test, td.test_logits
    sims = {f"{T:g}": class_similarity(softmax_t(z, T), y) for T in temperatures}
    return {
        "test_errors": td.test_errors,
        "true_class_probability": round(float(softmax_t(z, 1.0)[torch.arange(len(y)), y].mean()), 4),
        "wrong_class_evenness": {f"{T:g}": wrong_class_evenness(z, y, T) for T in (1.0, *temperatures)},
        "most_similar_pairs": {t: [list(p) for p in most_similar_pairs(s, 3)] for t, s in sims.items()},
        "class_similarity": {t: [[round(float(v), 4) for v in row] for row in s] for t, s in sims.items()},
    }


def _compare(a: list, b: list) -> dict:
    """Mean test errors of two groups of students; ``beyond_seed_spread``: the gap is wider than both ranges."""
    spread = max(max(a) - min(a), max(b) - min(b))
    return {"first": _mean(a), "second": _mean(b), "difference": round(_mean(b) - _mean(a), 2),
            "beyond_seed_spread": abs(_mean(b) - _mean(a)) > spread}


def plot(result: dict, temperature: float | None = None):
    """The two teachers' class-similarity matrices at ``temperature`` (diagonal masked) and the students' errors."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    t = f"{temperature if temperature is not None else max(result['temperatures']):g}"
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True,
                             gridspec_kw={"width_ratios": [1, 1, 1.5]})
    mats = {k: np.array(result["teachers"][k]["class_similarity"][t]) for k in ("plain", "smoothed")}
    off = np.concatenate([m[~np.eye(len(m), dtype=bool)] for m in mats.values()])
    norm = LogNorm(vmin=max(off.min(), 1e-6), vmax=off.max())
    for ax, (k, m) in zip(axes, mats.items()):
        shown = np.ma.masked_where(np.eye(len(m), dtype=bool), m)
        image = ax.imshow(shown, cmap="viridis", norm=norm)
        te = result["teachers"][k]
        ax.set_title(f"{te['recipe']} (eps = {te['label_smoothing']:g}): {te['test_errors']} errors\n"
                     f"mean soft label per true digit, T = {t}", fontsize=9)
        ax.set_xlabel("soft label's class")
        ax.set_ylabel("true digit")
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
    fig.colorbar(image, ax=axes[:2], shrink=0.8, label="probability (log scale; diagonal masked)")
    names, groups = _student_groups(result)
    means = [_mean(g) for g in groups]
    bars = axes[2].bar(range(len(names)), means, color=["gray", "C1"] + ["C0", "C3"] * len(result["temperatures"]),
                       yerr=[[m - min(g) for m, g in zip(means, groups)], [max(g) - m for m, g in zip(means, groups)]],
                       capsize=3)
    axes[2].bar_label(bars, [f"{m:g}" for m in means], fontsize=8)
    axes[2].set_xticks(range(len(names)))
    axes[2].set_xticklabels(names, fontsize=7.5, rotation=30, ha="right")
    axes[2].set_ylabel("test errors (mean, seed range)")
    axes[2].set_title(f"{result['student']} students, {result['epochs']} epochs, {len(result['seeds'])} seeds",
                      fontsize=9)
    return fig


def _student_groups(r: dict):
    s = r["students"]
    names = ["cross-entropy", f"label smoothing {r['epsilon']:g}"]
    groups = [s["cross_entropy"], s["label_smoothing"]]
    for t in (f"{v:g}" for v in r["temperatures"]):
        names += [f"KD, plain teacher, T={t}", f"KD, smoothed teacher, T={t}"]
        groups += [s["kd_plain"][t], s["kd_smoothed"][t]]
    return names, groups


def summarize(r: dict) -> str:
    seeds = ", ".join(map(str, r["seeds"]))
    head = (f"label-smoothing: {r['student']} students, alpha={r['alpha']:g}, {r['epochs']} epochs, seeds {seeds}, "
            f"{r['test_size']:,} test images" + fast_note(r))
    temps = [f"{t:g}" for t in r["temperatures"]]
    trows = [(te["recipe"], f"{te['label_smoothing']:g}", te["test_errors"], f"{te['true_class_probability']:.3f}",
              *[f"{te['wrong_class_evenness'][t]:.3f}" for t in ["1", *[t for t in temps if t != "1"]]],
              " ".join(f"{a}-{b}" for a, b in te["most_similar_pairs"][temps[-1]]))
             for te in (r["teachers"]["plain"], r["teachers"]["smoothed"])]
    evenness = [f"evenness T={t}" for t in ["1", *[t for t in temps if t != "1"]]]
    teachers = format_table(("teacher", "eps", "test errors", "p(true)", *evenness,
                             f"closest digits (T={temps[-1]})"), trows)
    names, groups = _student_groups(r)
    students = format_table(("student", "test errors (seeds)", "mean"),
                            [(n, ", ".join(map(str, g)), f"{_mean(g):g}") for n, g in zip(names, groups)])
    lines = [head, "", teachers,
             "evenness: entropy of the soft target over the wrong classes / log 9 (1: all wrong classes equal)",
             "", students, ""]
    for t in temps:
        c = r["smoothed_teacher_against_plain"][t]
        lines.append(f"T={t}: the smoothed teacher's students {c['second']:g} against the plain teacher's "
                     f"{c['first']:g} ({c['difference']:+g}, "
                     f"{'beyond' if c['beyond_seed_spread'] else 'within'} the seed spread)")
    for t in temps:
        c = r["kd_against_label_smoothing"][t]
        lines.append(f"T={t}: KD from the plain teacher {c['first']:g} against label smoothing alone {c['second']:g} "
                     f"({'beyond' if c['beyond_seed_spread'] else 'within'} the seed spread)")
    c = r["label_smoothing_against_cross_entropy"]
    lines.append(f"label smoothing alone {c['second']:g} against cross-entropy {c['first']:g} "
                 f"({'beyond' if c['beyond_seed_spread'] else 'within'} the seed spread)")
    trained = sum(te["seconds"] for te in r["teachers"].values() if not te["was_cached"])
    lines.append(f"whole run {r['seconds']['total']:.0f} s: teachers {r['seconds']['teachers']:.0f} s (of which "
                 f"training the ones not yet cached {trained:.0f} s), students {r['seconds']['students']:.0f} s")
    return "\n".join(lines)


@register("label-smoothing", "a teacher trained with label smoothing against one without, and smoothing vs KD "
                             "as the student's regularizer",
          options=[Option("epsilon", float, help="the student's label smoothing"),
                   Option("temperatures", comma_list(float), help="comma-separated distillation temperatures"),
                   Option("student", str, help="the student's architecture"),
                   Option("seeds", int, help="students per setting, at seeds SEED, SEED+1, ..."),
                   Option("epochs", int, help="epochs per student")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, student: str | None = None, epsilon: float | None = None, temperatures=None,
               alpha: float | None = None, epochs: int | None = None, lr: float | None = None,
               seeds: int | None = None, teacher: CachedTeacher | None = None) -> Outcome:
    """Both teachers (cached), their profiles, and every student at every seed.

    ``teacher``: the plain ``cnn-teacher`` already built (the lesson's), whose data every model uses.
    ``models``: ``teachers`` (``plain``, ``smoothed``: :class:`CachedTeacher`), ``students`` by
    ``(name, seed)`` (name ``cross_entropy``, ``label_smoothing``, ``("kd_plain", T)``, ``("kd_smoothed", T)``).
    """
    run = Run("label-smoothing", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, student=student, epsilon=epsilon, temperatures=temperatures, alpha=alpha,
                     epochs=epochs, lr=lr, seeds=seeds)
    temps = tuple(map(float, cfg["temperatures"]))
    if not temps or min(temps) <= 0 or not 0 < cfg["epsilon"] < 1 or cfg["seeds"] < 1:
        raise ValueError("temperatures must be positive, epsilon in (0, 1) and seeds at least 1")
    if teacher is not None and teacher.recipe != PLAIN:
        raise ValueError(f"the teacher passed must be the {PLAIN!r} recipe's, got {teacher.recipe!r}")
    if teacher is not None and data is not None and data is not teacher.data:
        raise ValueError("pass data or a cached teacher (which carries its data), not both")
    tds, info = {}, {}
    with run.timed("teachers"):
        # The teacher's data is already on its device: every model shares that one object.
        data = teacher.data if teacher is not None else \
            (data if data is not None else load("mnist", fast=run.fast)).to(run.device)
        for key, recipe in (("plain", PLAIN), ("smoothed", SMOOTHED)):
            if key == "plain" and teacher is not None:
                tds[key], info[key] = teacher, {"was_cached": True, "seconds": 0.0}
                continue
            tds[key], info[key] = timed_teacher(recipe, data, run, progress)
    seeds = [seed + i for i in range(cfg["seeds"])]
    common = dict(epochs=cfg["epochs"], lr=cfg["lr"], device=run.device, evaluate_every_epoch=False, progress=False)

    from tqdm.auto import tqdm

    students, errors = {}, {"cross_entropy": [], "label_smoothing": [],
                            "kd_plain": {f"{t:g}": [] for t in temps}, "kd_smoothed": {f"{t:g}": [] for t in temps}}
    runs = [(s, name, T) for s in seeds for name, T in [("cross_entropy", None), ("label_smoothing", None),
                                                          *[(k, t) for t in temps for k in ("kd_plain", "kd_smoothed")]]]
    with run.timed("students"):
        for s, name, T in tqdm(runs, desc="students (seed, kind)", disable=not progress):
            model = seeded_student(cfg["student"], s)
            if T is None:
                smoothing = cfg["epsilon"] if name == "label_smoothing" else 0.0
                history = train(model, data, label_smoothing=smoothing, seed=s, **common)
                errors[name].append(history.final_test_errors)
                students[name, s] = model
            else:
                td = tds["plain" if name == "kd_plain" else "smoothed"]
                history = train(model, data, teacher_logits=td.train_logits, T=T, alpha=cfg["alpha"], seed=s,
                                **common)
                errors[name][f"{T:g}"].append(history.final_test_errors)
                students[(name, T), s] = model

    teachers = {}
    for key, recipe in (("plain", PLAIN), ("smoothed", SMOOTHED)):
        settings = zoo.settings_of(recipe, fast=run.fast)
        teachers[key] = {"recipe": recipe, "arch": settings["arch"], "epochs": settings["epochs"],
                         "label_smoothing": settings["label_smoothing"], **info[key], **profile(tds[key], temps)}
    result = {
        "student": cfg["student"], "epsilon": cfg["epsilon"], "temperatures": list(temps), "alpha": cfg["alpha"],
        "epochs": cfg["epochs"], "lr": cfg["lr"], "seeds": seeds, "teachers": teachers, "students": errors,
        # "first" and "second": the mean test errors of the two groups of students compared, in the key's order
        "smoothed_teacher_against_plain": {t: _compare(errors["kd_plain"][t], errors["kd_smoothed"][t])
                                           for t in errors["kd_plain"]},
        "kd_against_label_smoothing": {t: _compare(errors["kd_plain"][t], errors["label_smoothing"])
                                       for t in errors["kd_plain"]},
        "label_smoothing_against_cross_entropy": _compare(errors["cross_entropy"], errors["label_smoothing"]),
        "train_size": len(data.y_train), "test_size": len(data.y_test),
    }
    return run.finish(result, teacher=tds["plain"].describe(),
                      models={"teachers": tds, "students": students, "data": data})
