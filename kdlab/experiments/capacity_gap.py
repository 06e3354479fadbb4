"""Does a better teacher always give a better student? The capacity gap, measured.

Cho and Hariharan (2019, arXiv:1910.01348) and Mirzadeh et al. (2020,
arXiv:1902.03393) report that a small student can learn *less* from a much
stronger teacher than from a weaker one; Mirzadeh et al. bridge the gap with a
*teacher assistant* (TA): the teacher distils a network of intermediate size,
which then distils the student.

One small student (``mlp-30x2``) is distilled, from the same initial weights
on the same batches with the same epochs, T and alpha, from teachers of
several sizes and training lengths (:mod:`kdlab.zoo` recipes, trained once and
cached; their logits computed once each):

* ``mlp-teacher-small``: a 300-300 MLP trained for 1 epoch (the weak one);
* ``mlp-teacher``: lessons 2-3's 1200-1200 MLP, 4 epochs;
* ``cnn-teacher``: lessons 4-10's CNN, 3 epochs;

and through a TA (``mlp-100x2``) distilled from the teacher with the fewest
test errors, then distilling the student. Each student and TA is trained at
``seeds`` seeds (``seed``, ``seed + 1``, ...); the teachers are fixed (trained
at ``seed``). The student alone is the reference. The result says whether a
teacher with fewer test errors always gave a student with fewer mean test
errors here, and whether each exception is larger than the seed spread.

    kdlab experiment capacity-gap --seed 0 --json runs/capacity-gap.json
"""

from __future__ import annotations

from itertools import combinations

import torch

from . import Option, comma_list, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, seeded_student, timed_teacher
from .. import zoo
from ..costs import macs
from ..data import Dataset, load
from ..models import count_params
from ..train import predict_logits, train

# Two seeds and 3 epochs per student: the full run took 136 s on two shared cores (load average 3-5) with the three
# teachers cached (docs/benchmarks.md); a first run trains them (minutes). --teachers can add cnn-teacher-long.
DEFAULTS = dict(student="mlp-30x2", teachers=("mlp-teacher-small", "mlp-teacher", "cnn-teacher"),
                assistant="mlp-100x2", temperature=4.0, alpha=0.9, epochs=3, lr=0.05, seeds=2)
# A smoke run: one epoch per model (the teachers too), two seeds (so the spread is computed).
FAST = dict(epochs=1)


def _mean(values) -> float:
    return round(sum(values) / len(values), 2)


def _percent(shares) -> str:
    """The mean of fractions as a percentage with one decimal (not from the 2-decimal rounded mean)."""
    return f"{100 * sum(shares) / len(shares):.1f}%"


def _agreement(student: torch.nn.Module, teacher_test_logits: torch.Tensor, x_test: torch.Tensor) -> float:
    """The fraction of test images on which the student's top class is its teacher's."""
    same = predict_logits(student, x_test).argmax(-1) == teacher_test_logits.argmax(-1)
    return round(float(same.float().mean()), 4)


def _teachers(recipes, teacher: CachedTeacher | None, data: Dataset | None, run, progress: bool):
    """Each recipe's cached teacher on one data set, with whether it was already trained and its seconds."""
    if teacher is not None:
        if data is not None and data is not teacher.data:
            raise ValueError("pass data or a cached teacher (which carries its data), not both")
        data = teacher.data     # already on its device: every model shares this one object
    else:
        data = (data if data is not None else load("mnist", fast=run.fast)).to(run.device)
    out, info = {}, {}
    for recipe in recipes:
        if teacher is not None and recipe == teacher.recipe:
            out[recipe], info[recipe] = teacher, {"was_cached": True, "seconds": 0.0}
            continue
        out[recipe], info[recipe] = timed_teacher(recipe, data, run, progress)
    return data, out, info


def pairs_against_the_rule(teachers: list[dict]) -> list[dict]:
    """Every pair of teachers where the one with fewer test errors gave the student no fewer mean errors.

    ``beyond_seed_spread``: the students' mean difference is larger than the wider of the two seed ranges.
    """
    out = []
    for a, b in combinations(teachers, 2):
        better, worse = (a, b) if a["test_errors"] < b["test_errors"] else (b, a)
        if better["test_errors"] == worse["test_errors"]:
            continue
        gain = worse["student_mean"] - better["student_mean"]
        if gain <= 0:
            spread = max(max(t["student_test_errors"]) - min(t["student_test_errors"]) for t in (a, b))
            out.append({"better_teacher": better["recipe"], "worse_teacher": worse["recipe"],
                        "student_mean_with_better": better["student_mean"],
                        "student_mean_with_worse": worse["student_mean"], "beyond_seed_spread": -gain > spread})
    return out


def verdict(r: dict) -> str:
    """The answer to 'does a better teacher always give a better student here?', from the result."""
    exceptions = r["pairs_against_the_rule"]
    if not exceptions:
        return ("yes, here: every teacher with fewer test errors gave the student fewer mean test errors "
                f"(seeds {', '.join(map(str, r['seeds']))})")
    said = "; ".join(f"{e['better_teacher']} (the better teacher) {e['student_mean_with_better']:g} against "
                     f"{e['worse_teacher']} {e['student_mean_with_worse']:g}"
                     + ("" if e["beyond_seed_spread"] else ", within the seed spread") for e in exceptions)
    return f"no, not always here: the student's mean test errors, {said}"


def plot(result: dict, ax=None):
    """The student's test errors against its teacher's: one point per teacher (seed range as a bar), the TA apart."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.2), constrained_layout=True)
    alone = result["student_alone_test_errors"]
    ax.axhspan(min(alone), max(alone), color="gray", alpha=0.2)
    ax.axhline(_mean(alone), color="gray", linestyle=":", label=f"student alone ({_mean(alone):g}, seed range shaded)")
    for i, t in enumerate(result["teachers"]):
        errs = t["student_test_errors"]
        ax.errorbar([t["test_errors"]], [t["student_mean"]], yerr=[[t["student_mean"] - min(errs)],
                                                                   [max(errs) - t["student_mean"]]],
                    marker="o", markersize=8, capsize=4, color=f"C{i}",
                    label=f"{t['recipe']} ({t['arch']}, {t['epochs']} ep., {t['params']:,} params)")
    a = result["assistant"]
    ta_mean, st = _mean(a["test_errors"]), a["student_test_errors"]
    ax.errorbar([ta_mean], [_mean(st)], yerr=[[_mean(st) - min(st)], [max(st) - _mean(st)]], marker="*",
                markersize=14, capsize=4, color="black", linestyle="none",
                label=f"through a TA ({a['arch']}, taught by {a['teacher']})")
    ax.set_xscale("log")
    import matplotlib.ticker

    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("test errors of the student's teacher (log scale)")
    ax.set_ylabel(f"test errors of the {result['student']['arch']} student")
    ax.set_title(f"Capacity gap: one {result['student']['arch']} student, {result['epochs']} epochs, "
                 f"T = {result['temperature']:g}, alpha = {result['alpha']:g} (mean and range over "
                 f"{len(result['seeds'])} seeds)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5)
    return ax.figure


def summarize(r: dict) -> str:
    s = r["student"]
    seeds = ", ".join(map(str, r["seeds"]))
    head = (f"capacity-gap: one {s['arch']} student ({s['params']:,} params), T={r['temperature']:g}, "
            f"alpha={r['alpha']:g}, {r['epochs']} epochs, seeds {seeds}, {r['test_size']:,} test images"
            + fast_note(r))
    rows = [(t["recipe"], t["arch"], t["epochs"], f"{t['params']:,}", f"{t['macs']:,}", t["test_errors"],
             ", ".join(map(str, t["student_test_errors"])), f"{t['student_mean']:g}",
             _percent(t["agreement"])) for t in r["teachers"]]
    a = r["assistant"]
    rows.append((f"TA, taught by {a['teacher']}", a["arch"], r["epochs"], f"{a['params']:,}", f"{a['macs']:,}",
                 ", ".join(map(str, a["test_errors"])), ", ".join(map(str, a["student_test_errors"])),
                 f"{_mean(a['student_test_errors']):g}", _percent(a["agreement"])))
    alone = r["student_alone_test_errors"]
    table = format_table(("the student's teacher", "arch", "epochs", "params", "MACs", "its test errors",
                          "student's test errors", "mean", "agrees"), rows,
                         footer=("none: the student alone", "", "", "", "", "", ", ".join(map(str, alone)),
                                 f"{_mean(alone):g}", ""))
    trained = sum(t["seconds"] for t in r["teachers"] if not t["was_cached"])
    return "\n".join([head, "", table, "",
                      "agrees: the share of test images where the student's top class is its teacher's (mean)",
                      f"Does a better teacher always give a better student? {verdict(r)}",
                      f"whole run {r['seconds']['total']:.0f} s: teachers {r['seconds']['teachers']:.0f} s "
                      f"(of which training the ones not yet cached {trained:.0f} s), students "
                      f"{r['seconds']['students']:.0f} s"])


@register("capacity-gap", "one small student distilled from weak to strong teachers, and through a teacher assistant",
          options=[Option("teachers", comma_list(str), help="comma-separated kdlab.zoo recipes"),
                   Option("student", str, help="the student's architecture"),
                   Option("assistant", str, help="the teacher assistant's architecture"),
                   Option("seeds", int, help="students per teacher, at seeds SEED, SEED+1, ..."),
                   Option("epochs", int, help="epochs per student and assistant")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, student: str | None = None, teachers=None, assistant: str | None = None,
               temperature: float | None = None, alpha: float | None = None, epochs: int | None = None,
               lr: float | None = None, seeds: int | None = None, teacher: CachedTeacher | None = None) -> Outcome:
    """Distill the student from every teacher and through the TA, at each seed; train it alone too.

    ``teacher``: a cached teacher already built (the lesson's ``cnn-teacher``): used for its recipe, and its
    data for every model. ``models``: ``teachers`` (by recipe), ``students`` and ``assistants`` (by
    ``(name, seed)``, name a recipe, ``"alone"`` or ``"assistant"``), ``data``.
    """
    run = Run("capacity-gap", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, student=student, teachers=teachers, assistant=assistant,
                     temperature=temperature, alpha=alpha, epochs=epochs, lr=lr, seeds=seeds)
    recipes = tuple(cfg["teachers"])
    unknown = [r for r in recipes if r not in zoo.RECIPES]
    if len(recipes) < 2 or unknown or len(set(recipes)) != len(recipes):
        raise ValueError(f"teachers must be two or more distinct kdlab.zoo recipes ({', '.join(zoo.RECIPES)}); "
                         f"got {', '.join(recipes) or 'none'}")
    if cfg["seeds"] < 1:
        raise ValueError(f"seeds must be at least 1, got {cfg['seeds']}")
    with run.timed("teachers"):
        data, tds, info = _teachers(recipes, teacher, data, run, progress)
    seeds = [seed + i for i in range(cfg["seeds"])]
    common = dict(epochs=cfg["epochs"], lr=cfg["lr"], device=run.device, evaluate_every_epoch=False, progress=False)
    soft = dict(T=cfg["temperature"], alpha=cfg["alpha"])
    # The strongest teacher (fewest test errors; the later one on a tie) teaches the assistant.
    ta_teacher = min(reversed(recipes), key=lambda r: tds[r].test_errors)

    from tqdm.auto import tqdm

    students, assistants = {}, {}
    errors = {name: [] for name in ("alone", *recipes, "assistant", "via_assistant")}
    agreement = {name: [] for name in (*recipes, "via_assistant")}
    runs = [(s, name) for s in seeds for name in ("alone", *recipes, "assistant")]
    with run.timed("students"):
        for s, name in tqdm(runs, desc="students (seed, teacher)", disable=not progress):
            model = seeded_student(cfg["student"], s)
            if name == "alone":
                history = train(model, data, seed=s, **common)
            elif name != "assistant":
                history = train(model, data, teacher_logits=tds[name].train_logits, seed=s, **common, **soft)
                agreement[name].append(_agreement(model, tds[name].test_logits, data.x_test))
            else:   # teacher -> assistant -> student, the same settings at every step
                ta = assistants[s] = seeded_student(cfg["assistant"], s)
                errors["assistant"].append(train(ta, data, teacher_logits=tds[ta_teacher].train_logits, seed=s,
                                                 **common, **soft).final_test_errors)
                history = train(model, data, teacher_logits=predict_logits(ta, data.x_train), seed=s, **common, **soft)
                agreement["via_assistant"].append(_agreement(model, predict_logits(ta, data.x_test), data.x_test))
                name = "via_assistant"
            errors[name].append(history.final_test_errors)
            students[name, s] = model

    described = []
    for r in recipes:
        cfg_r = zoo.settings_of(r, fast=run.fast)
        model = tds[r].model
        described.append({
            "recipe": r, "arch": cfg_r["arch"], "epochs": cfg_r["epochs"], "params": count_params(model),
            "macs": macs(model), "test_errors": tds[r].test_errors, "was_cached": info[r]["was_cached"],
            "seconds": info[r]["seconds"], "student_test_errors": errors[r], "student_mean": _mean(errors[r]),
            "agreement": agreement[r]})
    probe = seeded_student(cfg["student"], seed)
    ta_probe = seeded_student(cfg["assistant"], seed)
    result = {
        "student": {"arch": cfg["student"], "params": count_params(probe), "macs": macs(probe)},
        "seeds": seeds, "temperature": cfg["temperature"], "alpha": cfg["alpha"], "epochs": cfg["epochs"],
        "lr": cfg["lr"], "teachers": described, "student_alone_test_errors": errors["alone"],
        "assistant": {"arch": cfg["assistant"], "params": count_params(ta_probe), "macs": macs(ta_probe),
                      "teacher": ta_teacher, "test_errors": errors["assistant"],
                      "student_test_errors": errors["via_assistant"], "agreement": agreement["via_assistant"]},
        "train_size": len(data.y_train), "test_size": len(data.y_test),
    }
    result["pairs_against_the_rule"] = pairs_against_the_rule(described)
    result["better_teacher_always_better_student"] = not result["pairs_against_the_rule"]
    return run.finish(result, teacher={**tds[ta_teacher].describe(), "role": "teaches the assistant"},
                      models={"teachers": {r: tds[r].model for r in recipes},
                              "students": students, "assistants": assistants, "data": data})
