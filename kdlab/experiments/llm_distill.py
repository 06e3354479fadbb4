"""``kdlab experiment llm-distill``: lesson 9's comparison of five ways to train a tiny language model.

A teacher GRU is trained on sentences of a synthetic language whose true
probabilities are known (balanced brackets, kdlab/lm/language.py); a student
about 30 times smaller is then trained on the same budget five ways (data alone,
token-level forward KL, token-level reverse KL, sequence-level KD, on-policy
GKD), and each is scored exactly: KL from the truth, KL to the truth, the
validity and diversity of what it says, and its training seconds.
"""

from __future__ import annotations

from dataclasses import asdict

from ..lm import compare
from . import Option, register
from .contract import Outcome, Run

DEFAULTS = asdict(compare.Config())
FAST = compare.FAST


def summarize(res: dict) -> str:
    lines = [res["language"]["description"],
             f"teacher {res['teacher']['arch']} ({res['teacher']['params']:,} parameters); students "
             f"{res['student_start']['arch']} ({res['student_start']['params']:,} parameters), each "
             f"{res['config']['steps']} steps of {res['config']['batch_size']} sentences from one start "
             f"({res['config']['warm_steps']} steps on the data)", "",
             compare.table(res), "",
             f"KL in nats per sentence, exact (every string enumerated); validity: the fraction of "
             f"{res['config']['n_samples']} samples that are grammatical; diversity: exp(entropy), the effective "
             "number of different strings the model says (valid div.: of its grammatical ones only)", ""]
    lines += [f"{'holds' if ok else 'FAILS'}: {text} ({numbers})" for text, ok, numbers in compare.claims(res)]
    return "\n".join(lines)


@register("llm-distill", "lesson 9: distill a tiny language model five ways, each scored exactly against the truth",
          options=[Option("steps", int, help="optimizer steps per student"),
                   Option("beta", float, help="GKD's JSD(beta), strictly between 0 and 1"),
                   Option("n-train", int, help="training sentences")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data=None, device=None, progress: bool = True,
               steps: int | None = None, beta: float | None = None, n_train: int | None = None) -> Outcome:
    """The comparison of :mod:`kdlab.lm.compare`, with the common header; ``models`` holds the teacher and students.

    The language's sentences are drawn here (``data`` must stay None) and the
    GRUs train on the CPU.
    """
    if data is not None:
        raise ValueError("llm-distill draws its own sentences from the synthetic language: data must be None")
    run = Run("llm-distill", seed=seed, fast=fast, device=device or "cpu")
    if run.device.type != "cpu":
        raise ValueError(f"llm-distill trains on the CPU only, not {run.device}")
    cfg = run.config(DEFAULTS, FAST, steps=steps, beta=beta, n_train=n_train)
    setup = compare.make_setup(compare.Config(**cfg), seed=seed, progress=progress)
    students = compare.train_students(setup, progress=progress)
    res = compare.result(setup, students)
    for key in ("experiment", "seed", "fast"):   # the header states them
        del res[key]
    teacher = res.pop("teacher")
    return run.finish(res, teacher=teacher,
                      models={"teacher": setup.teacher, "start": students.start, **students.models})
