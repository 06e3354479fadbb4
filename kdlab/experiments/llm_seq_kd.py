"""``kdlab experiment llm-seq-kd``: lesson 9's sequence-level KD as Kim and Rush (2016) did it, with beam search.

On llm-distill's language and teacher: the teacher continues a prompt of every training sentence once by beam
search (width 5) and once by sampling; students of two widths (the lesson's, and a narrower one) are trained from
one start each on the training sentences (maximum likelihood, and word-level KD), on the teacher's samples, on its
beam outputs, and with word-level KD on its beam outputs. Each student decodes held-out prompts greedily; the
experiment reports how often that equals the teacher's beam and greedy outputs, how often it is grammatical, how
often it is the student's own beam output, the probability the student gives it, and the lesson's exact scores.
"""

from __future__ import annotations

from dataclasses import asdict

from ..lm import compare, models, onpolicy, seqkd
from . import Option, comma_list, register
from .contract import Outcome, Run, fast_note, format_table

DEFAULTS = {**asdict(compare.Config()), **asdict(seqkd.Settings())}
FAST = {**compare.FAST, **seqkd.FAST}
COLUMNS = (("match_teacher_beam", "= teacher's beam", 3), ("valid", "valid", 3), ("greedy_is_beam", "greedy = own beam", 3),
           ("greedy_prob", "q(greedy)", 3), ("kl_truth_to_student", "KL(truth||q)", 4),
           ("kl_student_to_truth", "KL(q||truth)", 4), ("entropy", "entropy", 3))


def summarize(r: dict) -> str:
    c, t = r["config"], r["teacher_outputs"]
    lines = [f"llm-seq-kd{fast_note(r)}: {r['language']['description']}",
             (f"teacher {r['teacher']['arch']}; beam width {c['width']}; {c['steps']} steps of {c['batch_size']} "
              f"strings per student; greedy decoding of {c['n_eval']:,} held-out prompts"),
             (f"the teacher's beam output is its greedy output on {t['beam_is_greedy_eval']:.1%} of the held-out "
              f"prompts ({t['beam_is_greedy_train']:.1%} of the training ones); distinct training texts: data "
              f"{t['data_distinct']:,}, teacher samples {t['sample_distinct']:,}, beam outputs {t['beam_distinct']:,}"),
             "examples (prompt -> beam): " + ", ".join(f"{p or '(empty)'} -> {b}" for p, b in t["beam_examples"]), ""]
    for entry in r["students"].values():
        rows = [(name, *(f"{m['mean'][k]:.{d}f}" for k, _, d in COLUMNS)) for name, m in entry["methods"].items()]
        foot = ("start", *(f"{entry['start'][k]:.{d}f}" for k, _, d in COLUMNS))
        lines += [f"{entry['arch']} students ({entry['params']:,} parameters), the mean of {c['seeds']} seed(s):",
                  format_table(("student", *(h for _, h, _ in COLUMNS)), rows, footer=foot), ""]
    lines += [f"{'holds' if ok else 'FAILS'}: {text} ({numbers})" for text, ok, numbers in seqkd.claims(r)]
    lines.append(f"whole run {r['seconds']['total']:.1f} s")
    return "\n".join(lines)


@register("llm-seq-kd", "lesson 9: sequence-level KD on the teacher's beam search (Kim and Rush), decoded greedily",
          options=[Option("steps", int, help="optimizer steps per student"),
                   Option("seeds", int, help="training seeds per student"),
                   Option("widths", comma_list(int), help="student GRU widths, comma-separated"),
                   Option("width", int, help="the beam's width")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data=None, device=None, progress: bool = True,
               steps: int | None = None, seeds: int | None = None, widths: tuple | None = None,
               width: int | None = None, setup: compare.Setup | None = None) -> Outcome:
    """:func:`kdlab.lm.seqkd.run` with the common header; ``models`` holds the teacher and the students.

    ``setup``: llm-distill's language, data and teacher, already made (the lesson's); else made here.
    """
    if data is not None:
        raise ValueError("llm-seq-kd draws its own sentences from the synthetic language: data must be None")
    run = Run("llm-seq-kd", seed=seed, fast=fast, device=device or "cpu")
    if run.device.type != "cpu":
        raise ValueError(f"llm-seq-kd trains on the CPU only, not {run.device}")
    with models.one_thread():   # the GRUs are tiny: one thread is as fast, and never fights other jobs
        cfg = run.config(DEFAULTS, FAST, steps=steps, seeds=seeds, widths=widths, width=width)
        config_keys = set(asdict(compare.Config()))
        settings = seqkd.Settings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()
                                     if k not in config_keys})
        if setup is None:
            with run.timed("teacher"):
                setup = compare.make_setup(compare.Config(**{k: v for k, v in cfg.items() if k in config_keys}),
                                           seed=seed, progress=progress)
        elif steps is not None:
            setup = compare.Setup(compare.Config(**{**asdict(setup.config), "steps": steps}), setup.lang, setup.data,
                                  setup.teacher, setup.teacher_seconds, setup.teacher_scores, setup.seed)
        fields, students = seqkd.run(setup, settings, progress=progress, timer=run.timed)
        return run.finish({**onpolicy.fields(setup, settings), **fields}, teacher=onpolicy.teacher_fields(setup),
                          models={"teacher": setup.teacher, **students})
