"""Sequence-level KD as Kim and Rush (2016) did it: the student trained on the teacher's beam-search output.

Kim and Rush distill translation models: for every source sentence of the training set the teacher writes its
beam-search translation once (width 5), and the student is trained by maximum likelihood on those translations
instead of the human ones. Here the "source" is a *prompt*, the first symbols of a training sentence (a length
drawn uniformly from 1 to the sentence's length), and the teacher writes the rest. Five students per width, one
budget, one start (:func:`train_students`):

``data``
    maximum likelihood on the training sentences themselves (the human references);
``word-kd``
    word-level KD: the teacher's next-token distribution at every position of the training sentences
    (token-level forward KL, ``kdlab.lm.train``'s ``forward-kl``);
``seq-kd-sample``
    maximum likelihood on the prompts continued by one *sample* of the teacher each (written once, like the beam);
``seq-kd-beam``
    maximum likelihood on the prompts continued by the teacher's beam search: its mode, given the prompt;
``seq-kd-beam+word-kd``
    word-level KD on the teacher's beam texts (Kim and Rush's combination of the two).

The prompt's symbols stay in the text (a language model models them too); only the continuation differs.
:func:`evaluate` continues held-out prompts with each student's greedy decoding, as Kim and Rush decode their
students, and compares it with the teacher's beam and greedy outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..models import count_params
from . import compare, decode, scoring
from . import train as lm_train
from .language import decode as as_text

STUDENTS = ("data", "word-kd", "seq-kd-sample", "seq-kd-beam", "seq-kd-beam+word-kd")
DESCRIPTIONS = {
    "data": "maximum likelihood on the training sentences (the references)",
    "word-kd": "word-level KD: the teacher's next-token distribution at every position of the training sentences",
    "seq-kd-sample": "maximum likelihood on the prompts continued by one teacher sample each",
    "seq-kd-beam": "maximum likelihood on the prompts continued by the teacher's beam search (Kim and Rush)",
    "seq-kd-beam+word-kd": "word-level KD on the teacher's beam texts (Kim and Rush's combination)",
}
METRICS = ("match_teacher_beam", "match_teacher_greedy", "valid", "greedy_is_beam", "greedy_prob",
           "kl_truth_to_student", "kl_student_to_truth", "entropy")


@dataclass
class Settings:
    """What this experiment adds to :class:`kdlab.lm.compare.Config` (full values)."""

    widths: tuple = (8, 2)        # student GRU widths: the lesson's, and one too narrow to decode easily
    width: int = 5                # the beam's width (Kim and Rush's)
    seeds: int = 2                # training seeds per student
    n_eval: int = 2000            # held-out prompts

    def __post_init__(self):
        if not (isinstance(self.width, int) and self.width >= 1):
            raise ValueError(f"width (the beam's) must be a positive integer, got {self.width!r}")
        for name in ("seeds", "n_eval"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.widths or any(not (isinstance(w, int) and w > 0) for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {self.widths!r}")


FAST = {"widths": (8, 2), "seeds": 1, "n_eval": 300}


def prompt_lengths(lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each sentence, a prompt length drawn uniformly from 1 to its length (0 for an empty sentence)."""
    u = torch.rand(len(lengths), generator=generator, dtype=torch.float64)
    return torch.where(lengths > 0, 1 + (u * lengths).long().clamp(max=(lengths - 1).clamp(min=0)),
                       torch.zeros_like(lengths))


def held_out_prompts(lang, n: int, seed: int):
    """``n`` prompts from fresh sentences of the truth (not the training ones): ``(tokens, prompt lengths)``."""
    tokens, lengths = lang.sample(n, seed=seed)
    return tokens, prompt_lengths(lengths, torch.Generator().manual_seed(seed))


def teacher_texts(teacher, tokens: torch.Tensor, prompts: torch.Tensor, width: int, seed: int) -> dict:
    """The training prompts continued by the teacher, written once: ``{"beam": (tokens, lengths), "sample": ...}``."""
    max_len = tokens.shape[1]
    beam = decode.beam_search(teacher, tokens, prompts, max_len, width=width)[:2]
    sample = decode.continue_prompts(teacher, tokens, prompts, max_len, how="sample",
                                     generator=torch.Generator().manual_seed(seed))[:2]
    return {"beam": beam, "sample": sample}


def _same(a, a_len, b, b_len) -> np.ndarray:
    return ((a == b).all(1) & (a_len == b_len)).numpy()


def teacher_reference(teacher, tokens, prompts, width: int = 5) -> dict:
    """The teacher's beam and greedy outputs on the prompts."""
    max_len = tokens.shape[1]
    return {"beam": decode.beam_search(teacher, tokens, prompts, max_len, width=width)[:2],
            "greedy": decode.continue_prompts(teacher, tokens, prompts, max_len, how="greedy")[:2]}


def evaluate(model, lang, tokens, prompts, reference: dict, width: int = 5) -> dict:
    """Greedy decoding of held-out prompts by ``model``, against the teacher's beam and greedy outputs.

    ``match_teacher_beam`` / ``match_teacher_greedy``: the fraction of prompts whose greedy continuation is exactly
    the teacher's; ``valid``: the fraction of completed strings that are grammatical; ``greedy_is_beam``: how often
    the model's own greedy output is its beam output; ``greedy_prob``: the mean probability the model gives its
    greedy continuation (how peaked it is where it decodes).
    """
    max_len = tokens.shape[1]
    g, g_len, g_score = decode.continue_prompts(model, tokens, prompts, max_len, how="greedy")
    b, b_len, _ = decode.beam_search(model, tokens, prompts, max_len, width=width)
    return {
        "match_teacher_beam": float(_same(g, g_len, *reference["beam"]).mean()),
        "match_teacher_greedy": float(_same(g, g_len, *reference["greedy"]).mean()),
        "valid": float(lang.is_valid_batch(g, g_len).float().mean()),
        "greedy_is_beam": float(_same(g, g_len, b, b_len).mean()),
        "greedy_prob": float(g_score.exp().mean()),
    }


def train_students(setup: compare.Setup, start, texts: dict, budget: lm_train.Budget, seed: int,
                   students=STUDENTS, progress: bool = False) -> dict:
    """Every student of ``students`` from ``start`` on ``budget``: ``{name: (model, TrainLog)}``."""
    data = {"data": setup.data, "word-kd": setup.data, "seq-kd-sample": texts["sample"],
            "seq-kd-beam": texts["beam"], "seq-kd-beam+word-kd": texts["beam"]}
    out = {}
    for name in students:
        student = lm_train.fresh_copy(start)
        method = "forward-kl" if name.endswith("word-kd") else "data"
        log = lm_train.train(student, method, data[name], teacher=setup.teacher, budget=budget, seed=seed,
                             progress=progress, desc=f"{student.name}: {name}, seed {seed}")
        out[name] = (student, log)
    return out


def _mean(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], float)}


def run(setup: compare.Setup, settings: Settings, progress: bool = False, timer=None) -> tuple[dict, dict]:
    """Kim and Rush's comparison on ``setup``: (JSON-ready fields, the students by name)."""
    import contextlib

    c, s = setup.config, settings
    timed = timer or (lambda phase: contextlib.nullcontext())
    tokens, lengths = setup.data
    g = torch.Generator().manual_seed(setup.seed + 7)
    train_prompts = prompt_lengths(lengths, g)
    with timed("teacher_texts"):
        texts = teacher_texts(setup.teacher, tokens, train_prompts, s.width, setup.seed + 7)
    eval_tokens, eval_prompts = held_out_prompts(setup.lang, s.n_eval, seed=setup.seed + 1000)
    ref = teacher_reference(setup.teacher, eval_tokens, eval_prompts, s.width)
    beam_texts = [as_text(t, n) for t, n in zip(*texts["beam"])]
    same = _same(*texts["beam"], *decode.continue_prompts(setup.teacher, tokens, train_prompts, c.max_len,
                                                              how="greedy")[:2])
    out: dict = {
        "teacher_outputs": {
            "beam_is_greedy_train": float(same.mean()),
            "beam_is_greedy_eval": float(_same(*ref["beam"], *ref["greedy"]).mean()),
            "beam_valid": float(setup.lang.is_valid_batch(*texts["beam"]).float().mean()),
            "sample_valid": float(setup.lang.is_valid_batch(*texts["sample"]).float().mean()),
            "beam_distinct": len(set(beam_texts)),
            "sample_distinct": len({as_text(t, n) for t, n in zip(*texts["sample"])}),
            "data_distinct": len({as_text(t, n) for t, n in zip(tokens, lengths)}),
            "beam_examples": [[as_text(t, p), b] for t, p, b in zip(tokens[:8], train_prompts[:8], beam_texts[:8])],
        },
        "students": {},
        "descriptions": DESCRIPTIONS,
    }
    models = {}
    with timed("students"):
        for w in s.widths:
            sub = replace(setup, config=replace(c, student_hidden=w))
            start = compare.student_start(sub)
            entry = {"params": count_params(start), "arch": start.name,
                     "start": {**evaluate(start, setup.lang, eval_tokens, eval_prompts, ref, s.width),
                               **_scores(start, setup)}}
            rows: dict = {name: [] for name in STUDENTS}
            for k in range(s.seeds):
                trained = train_students(sub, start, texts, c.budget(), seed=setup.seed + k, progress=progress)
                for name, (model, log) in trained.items():
                    rows[name].append({**evaluate(model, setup.lang, eval_tokens, eval_prompts, ref, s.width),
                                       **_scores(model, setup), "train_seconds": log.seconds})
                    if k == 0:
                        models[f"{start.name}/{name}"] = model
            entry["methods"] = {name: {"mean": _mean(r), "per_seed": r} for name, r in rows.items()}
            out["students"][str(w)] = entry
    return out, models


def _scores(model, setup) -> dict:
    s = scoring.score_model(model, setup.lang, setup.config.n_samples, seed=setup.seed)
    return {k: s[k] for k in ("kl_truth_to_student", "kl_student_to_truth", "entropy", "sample_validity")}


def claims(r: dict) -> list[tuple[str, bool, str]]:
    """The lesson's claims about this run, each checked: (claim, holds, the numbers)."""
    t = r["teacher_outputs"]
    out = [("the teacher's beam output is its greedy output on almost every prompt (this language's mode is easy to find)",
            t["beam_is_greedy_eval"] > 0.95, f"{t['beam_is_greedy_eval']:.1%} of held-out prompts")]
    for w, entry in r["students"].items():
        m = {name: x["mean"] for name, x in entry["methods"].items()}
        beam, data = m["seq-kd-beam"], m["data"]
        out.append(((f"gru-{w}: training on the teacher's beam output makes the student more peaked than the data does "
                    "(a higher probability on its greedy continuation)"),
                    beam["greedy_prob"] > data["greedy_prob"],
                    f"{beam['greedy_prob']:.3f} against {data['greedy_prob']:.3f}"))
        out.append(((f"gru-{w}: and its distribution further from the truth (a higher KL(truth || q), as Kim and Rush's "
                    "higher perplexity)"),
                    beam["kl_truth_to_student"] > data["kl_truth_to_student"],
                    f"{beam['kl_truth_to_student']:.4f} against {data['kl_truth_to_student']:.4f}"))
    return out
