"""Lesson 9's experiment: one teacher, five students on one budget, every one scored exactly.

:func:`make_setup` draws the training sentences and trains the teacher;
:func:`train_students` trains the five students (:data:`kdlab.lm.train.METHODS`)
from one shared starting point; :func:`run` does both and returns the JSON
that ``kdlab experiment llm-distill`` writes. The lesson calls the same
functions, so its table and the terminal's come from one implementation.

Every student starts from the same weights: a tiny model pretrained for
``warm_steps`` on the data (as LLM students start from a pretrained model;
on-policy and reverse-KL training from random weights can stall, a pitfall the
lesson measures). From there each method gets the same number of steps on
batches of the same size with the same optimizer and learning-rate schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from .. import settings
from ..models import count_params
from . import losses, models, scoring
from . import train as lm_train
from .language import BracketLanguage


@dataclass
class Config:
    """Every setting of the comparison (the full values; :func:`default_config` picks the fast ones)."""

    max_len: int = 10
    p_round: float = 0.30
    p_square: float = 0.15
    noise: float = 1e-4
    n_train: int = 10_000
    teacher_hidden: int = 64
    teacher_steps: int = 2000
    teacher_lr: float = 1e-2
    student_hidden: int = 8
    student_embed: int = 8
    warm_steps: int = 300
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-2
    beta: float = 0.5
    lmbda: float = 1.0
    n_samples: int = 2000
    methods: tuple = lm_train.METHODS

    def __post_init__(self):
        losses.check_beta(self.beta)
        for name in ("n_train", "teacher_steps", "steps", "batch_size", "n_samples"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.lmbda <= 1.0:
            raise ValueError(f"lmbda (the on-policy fraction) must lie in [0, 1], got {self.lmbda!r}")
        unknown = set(self.methods) - set(lm_train.METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose among {', '.join(lm_train.METHODS)}")

    def language(self) -> BracketLanguage:
        return BracketLanguage(max_len=self.max_len, p_round=self.p_round, p_square=self.p_square, noise=self.noise)

    def budget(self) -> lm_train.Budget:
        return lm_train.Budget(steps=self.steps, batch_size=self.batch_size, lr=self.lr)


FAST = dict(max_len=8, n_train=2000, teacher_hidden=32, teacher_steps=250, warm_steps=40, steps=80, n_samples=500)


def default_config(**overrides) -> Config:
    """The full configuration, or under KDLAB_FAST=1 a small one that runs in seconds; then ``overrides``."""
    values = dict(FAST) if settings.fast_mode() else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)


@dataclass
class Setup:
    """The language, its training sentences and the trained teacher."""

    config: Config
    lang: BracketLanguage
    data: tuple
    teacher: torch.nn.Module
    teacher_seconds: float
    teacher_scores: dict
    seed: int


@dataclass
class Students:
    """The students of every method, their training logs and exact scores."""

    start: torch.nn.Module
    start_scores: dict
    models: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)


def make_setup(config: Config | None = None, seed: int = 0, progress: bool = True) -> Setup:
    """Draw ``n_train`` sentences from the truth and train the teacher on them (maximum likelihood)."""
    config = config or default_config()
    lang = config.language()
    data = lang.sample(config.n_train, seed=seed)
    torch.manual_seed(seed)
    teacher = models.GRULM(config.teacher_hidden)
    log = lm_train.train(teacher, "data", data, seed=seed, progress=progress, desc="teacher",
                         budget=lm_train.Budget(steps=config.teacher_steps, batch_size=config.batch_size,
                                                lr=config.teacher_lr))
    return Setup(config, lang, data, teacher, log.seconds,
                 scoring.score_model(teacher, lang, config.n_samples, seed=seed), seed)


def student_start(setup: Setup) -> torch.nn.Module:
    """The shared starting point of every student: a tiny model pretrained for ``warm_steps`` on the data."""
    c = setup.config
    torch.manual_seed(setup.seed + 1)
    start = models.GRULM(c.student_hidden, embed=c.student_embed)
    if c.warm_steps:
        lm_train.train(start, "data", setup.data, seed=setup.seed + 1, progress=False,
                       budget=lm_train.Budget(steps=c.warm_steps, batch_size=c.batch_size, lr=c.lr))
    return start


def train_students(setup: Setup, methods=None, progress: bool = True, start: torch.nn.Module | None = None,
                   **overrides) -> Students:
    """Train one student per method from the same start on the same budget; score each exactly.

    ``overrides`` (``beta``, ``lmbda``, ``steps``, ``lr``) change the configuration for these students only.
    """
    c = replace(setup.config, **overrides)
    methods = tuple(methods or c.methods)
    start = start if start is not None else student_start(setup)
    out = Students(start, scoring.score_model(start, setup.lang, c.n_samples, seed=setup.seed))
    teacher_logits = lm_train.teacher_logits_for(setup.teacher, *setup.data) if set(methods) - {"data", "seq-kd"} else None
    for method in methods:
        student = lm_train.fresh_copy(start)
        t0 = time.perf_counter()
        log = lm_train.train(student, method, setup.data, teacher=setup.teacher, teacher_logits=teacher_logits,
                             budget=c.budget(), beta=c.beta, lmbda=c.lmbda, seed=setup.seed, progress=progress,
                             desc=f"student: {method}")
        log.seconds = time.perf_counter() - t0
        out.models[method], out.logs[method] = student, log
        out.scores[method] = scoring.score_model(student, setup.lang, c.n_samples, seed=setup.seed)
    return out


FIELDS = ("kl_truth_to_student", "kl_student_to_truth", "sample_validity", "diversity", "train_seconds")


def result(setup: Setup, students: Students) -> dict:
    """The JSON of the comparison: one entry per method (plus the teacher, the start and the truth)."""
    c = setup.config
    res = {
        "experiment": "llm-distill",
        "seed": setup.seed,
        "fast": settings.fast_mode(),
        "methods": list(students.scores),
        "language": {"description": setup.lang.describe(), "max_len": c.max_len, "noise": c.noise,
                     "grammatical_strings": len(setup.lang.sentences), "all_strings": setup.lang.size,
                     "entropy": setup.lang.entropy()},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(c).items()},
        "truth": scoring.score_truth(setup.lang, c.n_samples, seed=setup.seed),
        "teacher": {**setup.teacher_scores, "train_seconds": setup.teacher_seconds,
                    "params": count_params(setup.teacher), "arch": setup.teacher.name},
        "student_start": {**students.start_scores, "params": count_params(students.start),
                          "arch": students.start.name, "warm_steps": c.warm_steps},
    }
    for method, scores in students.scores.items():
        res[method] = {**scores, "train_seconds": students.logs[method].seconds,
                       "description": lm_train.DESCRIPTIONS[method],
                       "params": count_params(students.models[method])}
    return res


def claims(res: dict) -> list[tuple[str, bool, str]]:
    """The lesson's claims about the table, each checked on ``res``: (claim, holds, the numbers)."""
    d, f, r, t = res["data"], res["forward-kl"], res["reverse-kl"], res["truth"]
    out = [
        ("token-level KD (forward KL) ends closer to the truth than the data alone: lower KL(truth || q)",
         f["kl_truth_to_student"] < d["kl_truth_to_student"],
         f"{f['kl_truth_to_student']:.4f} against {d['kl_truth_to_student']:.4f}"),
        ("reverse KL gives more valid samples than forward KL (sampled, and exactly)",
         r["sample_validity"] > f["sample_validity"] and r["valid_mass"] > f["valid_mass"],
         f"sampled {r['sample_validity']:.3f} against {f['sample_validity']:.3f}; "
         f"exact {r['valid_mass']:.4f} against {f['valid_mass']:.4f}"),
        ("reverse KL is closer to the truth in reverse KL: lower KL(q || truth)",
         r["kl_student_to_truth"] < f["kl_student_to_truth"],
         f"{r['kl_student_to_truth']:.4f} against {f['kl_student_to_truth']:.4f}"),
        ("but reverse KL is less diverse than forward KL: it says fewer different strings",
         r["diversity"] < f["diversity"],
         f"diversity {r['diversity']:.2f} against {f['diversity']:.2f}"),
        ("and reverse KL covers the truth less well: higher KL(truth || q)",
         r["kl_truth_to_student"] > f["kl_truth_to_student"],
         f"{r['kl_truth_to_student']:.4f} against {f['kl_truth_to_student']:.4f}"),
        ("forward KL over-disperses and reverse KL under-disperses: entropy above and below the truth's",
         f["entropy"] > t["entropy"] > r["entropy"],
         f"forward {f['entropy']:.3f}, truth {t['entropy']:.3f}, reverse {r['entropy']:.3f} nats"),
        ("most of forward KL's extra diversity is invalid strings: the gap in valid diversity is smaller",
         abs(math.log(f["valid_diversity"] / r["valid_diversity"])) < math.log(f["diversity"] / r["diversity"]),
         f"valid diversity {r['valid_diversity']:.2f} against {f['valid_diversity']:.2f}"),
    ]
    return out


def run(seed: int = 0, progress: bool = True, **overrides) -> dict:
    """The whole comparison, as JSON-ready numbers."""
    config = default_config(**overrides)
    setup = make_setup(config, seed=seed, progress=progress)
    return result(setup, train_students(setup, progress=progress))


def table(res: dict) -> str:
    """The results as a text table: truth, teacher, start, then every method."""
    head = (f"{'model':<12} {'KL(truth||q)':>12} {'KL(q||truth)':>12} {'validity':>9} {'diversity':>9} "
            f"{'valid div.':>10} {'entropy':>8} {'seconds':>8}")
    lines = [head, "-" * len(head)]

    def row(name, r):
        seconds = f"{r['train_seconds']:8.1f}" if "train_seconds" in r else f"{'':>8}"
        lines.append(f"{name:<12} {r['kl_truth_to_student']:12.4f} {r['kl_student_to_truth']:12.4f} "
                     f"{r['sample_validity']:9.3f} {r['diversity']:9.2f} {r['valid_diversity']:10.2f} "
                     f"{r['entropy']:8.3f} {seconds}")

    row("truth", res["truth"])
    row("teacher", res["teacher"])
    row("start", res["student_start"])
    for method in res["methods"]:
        row(method, res[method])
    return "\n".join(lines)
