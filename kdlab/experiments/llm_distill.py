"""``kdlab experiment llm-distill``: lesson 9's comparison of five ways to train a tiny language model.

A teacher GRU is trained on sentences of a synthetic language whose true
probabilities are known (balanced brackets, kdlab/lm/language.py); a student
about 30 times smaller is then trained on the same budget five ways (data alone,
token-level forward KL, token-level reverse KL, sequence-level KD, on-policy
GKD), and each is scored exactly: KL from the truth, KL to the truth, the
validity and diversity of what it says, and its training seconds.
"""

from __future__ import annotations

from ..lm import compare
from . import Option, register


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
          options=[Option("steps", int, None, "optimizer steps per student (default: 1000, or 80 under KDLAB_FAST)"),
                   Option("beta", float, None, "GKD's JSD(beta), strictly between 0 and 1 (default 0.5)"),
                   Option("n-train", int, None, "training sentences (default 10000, or 2000 under KDLAB_FAST)")],
          summarize=summarize)
def run(seed: int = 0, progress: bool = True, steps: int | None = None, beta: float | None = None,
        n_train: int | None = None) -> dict:
    return compare.run(seed=seed, progress=progress, steps=steps, beta=beta, n_train=n_train)
