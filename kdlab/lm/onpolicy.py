"""What MiniLLM keeps and GKD drops, measured; and GKD's lambda (``kdlab experiment llm-on-policy``).

On the lesson's language, teacher and shared student start (:mod:`kdlab.lm.compare`):

1. **The gradient.** At the start, and at the student that GKD's gradient trained, every estimator of
   :mod:`kdlab.lm.policy` is compared with the exact gradient of the sequence-level reverse KL
   KL(q || p_teacher) (every string enumerated): its bias and its noise.
2. **The students.** One student per estimator (``seq-rkl`` in :mod:`kdlab.lm.train`), per seed, on the same
   budget from the same start, scored exactly: the objective itself, KL(q || p_teacher) over whole strings, the
   other direction, and the lesson's scores against the truth.
3. **GKD's lambda.** The ``gkd`` student (JSD(beta) on the student's own samples) with a fraction ``lambda`` of
   its steps on its own samples and the rest on the fixed training sentences, swept from 0 to 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..models import count_params
from . import compare, models, policy, scoring
from . import train as lm_train
from .language import decode

ESTIMATORS = ("single-step", "decomposed", "length-norm", "teacher-mix", "minillm", "score-function")
TRAINED = ("single-step", "decomposed", "minillm", "score-function")
METRICS = ("kl_student_to_teacher", "kl_teacher_to_student", "kl_truth_to_student", "kl_student_to_truth",
           "valid_mass", "sample_validity", "diversity", "valid_diversity", "entropy", "train_seconds")


@dataclass
class Settings:
    """What this experiment adds to :class:`kdlab.lm.compare.Config` (full values; ``FAST`` the fast ones)."""

    estimators: tuple = ESTIMATORS      # measured against the exact gradient
    trained: tuple = TRAINED            # each trains a student
    seeds: int = 2                      # training seeds per student (the start is shared)
    n_batches: int = 100                # batch estimates per estimator in the gradient check
    lambdas: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    lambda_seeds: int = 2
    n_show: int = 8                     # samples shown per student

    def __post_init__(self):
        for name in (*self.estimators, *self.trained):
            policy.estimator(name)
        if not set(self.trained) >= {"single-step"}:
            raise ValueError("trained must include 'single-step' (the gradient is checked again at its student)")
        for name in ("seeds", "n_batches", "lambda_seeds"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if any(not 0.0 <= lam <= 1.0 for lam in self.lambdas):
            raise ValueError(f"every lambda (the on-policy fraction) must lie in [0, 1], got {self.lambdas!r}")


FAST = {"estimators": ("single-step", "decomposed", "minillm", "score-function"), "trained": ("single-step", "minillm"),
        "seeds": 1, "n_batches": 8, "lambdas": (0.0, 0.5, 1.0), "lambda_seeds": 1, "n_show": 4}


def _mean(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], float)}


def show(model, max_len: int, n: int, seed: int) -> list[str]:
    """``n`` samples of ``model`` as text (the empty string as "(empty)")."""
    tokens, lengths = models.sample(model, n, max_len, generator=torch.Generator().manual_seed(seed))
    return [decode(t, k) or "(empty)" for t, k in zip(tokens, lengths)]


def run(setup: compare.Setup, settings: Settings, start: torch.nn.Module | None = None, progress: bool = False,
        timer=None) -> tuple[dict, dict]:
    """The three parts on ``setup``: (JSON-ready fields, the trained students by name)."""
    c, s = setup.config, settings
    timed = timer or (lambda phase: _NullTimer())
    start = start if start is not None else compare.student_start(setup)
    log_t = models.string_log_probs(setup.teacher, c.max_len)

    def score(model, seed):
        return scoring.score_model(model, setup.lang, c.n_samples, seed=seed, teacher_log_probs=log_t)

    students: dict = {}
    out: dict = {"student_start": {**score(start, setup.seed), "params": count_params(start), "arch": start.name,
                                   "warm_steps": c.warm_steps},
                 "estimator_descriptions": {k: policy.DESCRIPTIONS[k] for k in (*s.estimators, *s.trained)}}
    with timed("gradient"):
        out["gradient"] = {"start": policy.gradient_quality(start, setup.teacher, log_t, c.max_len, s.estimators,
                                                            c.batch_size, s.n_batches, seed=setup.seed,
                                                            progress=progress)}
    runs: dict = {}
    with timed("estimators"):
        for name in s.trained:
            rows = []
            for k in range(s.seeds):
                student = lm_train.fresh_copy(start)
                log = lm_train.train(student, "seq-rkl", setup.data, teacher=setup.teacher, budget=c.budget(),
                                     seed=setup.seed + k, estimator=name, progress=progress,
                                     desc=f"{name}, seed {setup.seed + k}")
                rows.append({**score(student, setup.seed), "train_seconds": log.seconds})
                if k == 0:
                    students[name] = student
            runs[name] = {"mean": _mean(rows), "per_seed": rows,
                          "samples": show(students[name], c.max_len, s.n_show, setup.seed)}
    out["students"] = runs
    with timed("gradient"):
        out["gradient"]["trained"] = policy.gradient_quality(students["single-step"], setup.teacher, log_t, c.max_len,
                                                             s.estimators, c.batch_size, s.n_batches,
                                                             seed=setup.seed, progress=progress)
        out["gradient"]["trained_by"] = "single-step"
    sweep = []
    with timed("lambda"):
        for lam in s.lambdas:
            rows = []
            for k in range(s.lambda_seeds):
                student = lm_train.fresh_copy(start)
                log = lm_train.train(student, "gkd", setup.data, teacher=setup.teacher, budget=c.budget(),
                                     beta=c.beta, lmbda=lam, seed=setup.seed + k, progress=progress,
                                     desc=f"gkd, lambda {lam:g}, seed {setup.seed + k}")
                rows.append({**score(student, setup.seed), "train_seconds": log.seconds})
                if k == 0:
                    students[f"gkd-lambda-{lam:g}"] = student
            sweep.append({"lambda": float(lam), "mean": _mean(rows), "per_seed": rows})
    out["lambda"] = {"beta": c.beta, "seeds": s.lambda_seeds, "sweep": sweep}
    return out, students


class _NullTimer:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def settings_from(values: dict) -> tuple[compare.Config, Settings]:
    """Split one dict of settings into the comparison's Config and this experiment's Settings."""
    config_keys = set(asdict(compare.Config()))
    config = compare.Config(**{k: v for k, v in values.items() if k in config_keys})
    settings = Settings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()
                           if k not in config_keys})
    return config, settings


def claims(r: dict) -> list[tuple[str, bool, str]]:
    """The lesson's claims about this run, each checked: (claim, holds, the numbers)."""
    g0 = r["gradient"]["start"]["estimators"]
    st = r["students"]
    out = []
    if {"decomposed", "single-step"} <= set(g0):
        d, s = g0["decomposed"], g0["single-step"]
        out.append((("GKD's gradient (single-step) is biased: the mean of its batch estimates points elsewhere than "
                    "the exact gradient, the decomposed estimator's does not"),
                    s["cosine_of_mean"] < d["cosine_of_mean"] and s["bias"] > d["bias"],
                    (f"cosine of the mean {s['cosine_of_mean']:.2f} against {d['cosine_of_mean']:.2f}; "
                    f"bias {s['bias']:.2f} against {d['bias']:.2f}")))
    if {"decomposed", "score-function"} <= set(g0):
        d, f = g0["decomposed"], g0["score-function"]
        out.append(("the single-step decomposition lowers the variance of the unbiased estimator",
                    d["error"] < f["error"], f"error of one batch {d['error']:.2f} against {f['error']:.2f}"))
    if {"single-step", "decomposed"} <= set(st):
        a, b = st["single-step"]["mean"], st["decomposed"]["mean"]
        out.append((("yet on the same budget GKD's biased, quieter gradient reaches a lower KL(q || teacher) than "
                    "the unbiased policy gradient"),
                    a["kl_student_to_teacher"] < b["kl_student_to_teacher"],
                    f"{a['kl_student_to_teacher']:.4f} against {b['kl_student_to_teacher']:.4f}"))
    if {"minillm", "decomposed"} <= set(st):
        a, b = st["minillm"]["mean"], st["decomposed"]["mean"]
        out.append(("MiniLLM's tricks (length normalization, teacher-mixed sampling) close part of that gap",
                    a["kl_student_to_teacher"] < b["kl_student_to_teacher"],
                    f"{a['kl_student_to_teacher']:.4f} against {b['kl_student_to_teacher']:.4f}"))
    if {"single-step", "decomposed"} <= set(st):
        a, b = st["single-step"]["mean"], st["decomposed"]["mean"]
        out.append((("the unbiased gradient's students seek modes: fewer different strings than GKD's (lower entropy), "
                    "closer to the truth in reverse KL, much further from the teacher in forward KL"),
                    b["entropy"] < a["entropy"] and b["kl_student_to_truth"] < a["kl_student_to_truth"]
                    and b["kl_teacher_to_student"] > a["kl_teacher_to_student"],
                    (f"entropy {b['entropy']:.3f} against {a['entropy']:.3f}; KL(q || truth) "
                     f"{b['kl_student_to_truth']:.4f} against {a['kl_student_to_truth']:.4f}; KL(teacher || q) "
                     f"{b['kl_teacher_to_student']:.4f} against {a['kl_teacher_to_student']:.4f}")))
    gt = r["gradient"].get("trained", {}).get("estimators", {})
    if "single-step" in g0 and "single-step" in gt:
        s0, s1 = g0["single-step"]["cosine_of_mean"], gt["single-step"]["cosine_of_mean"]
        out.append(("at the student it trained, GKD's gradient has all but stopped pointing along the exact one",
                    s1 < s0 / 2, f"cosine of the mean {s1:.3f}, against {s0:.3f} at the start"))
    sweep = r["lambda"]["sweep"]
    if len(sweep) >= 2:
        lo = min(sweep, key=lambda e: e["lambda"])
        others = [e for e in sweep if e is not lo]
        best = all(lo["mean"][k] < e["mean"][k] for e in others for k in ("kl_truth_to_student", "kl_student_to_truth"))
        out.append(((f"here on-policy steps do not pay: lambda {lo['lambda']:g} (every step on the training sentences) "
                     "ends with the lowest KL(truth || q) and KL(q || truth) of the sweep"),
                    best, ", ".join(f"lambda {e['lambda']:g}: {e['mean']['kl_truth_to_student']:.4f} and "
                                    f"{e['mean']['kl_student_to_truth']:.4f}" for e in sweep)))
    return out


def fields(setup: compare.Setup, settings: Settings) -> dict:
    """The settings and the language, for the JSON."""
    c = setup.config
    return {"language": {"description": setup.lang.describe(), "max_len": c.max_len, "noise": c.noise,
                         "entropy": setup.lang.entropy()},
            "config": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(c).items()},
                       **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}}}


def teacher_fields(setup: compare.Setup) -> dict:
    return {**setup.teacher_scores, "train_seconds": setup.teacher_seconds, "params": count_params(setup.teacher),
            "arch": setup.teacher.name}
