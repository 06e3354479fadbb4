"""``kdlab experiment llm-on-policy``: lesson 9's MiniLLM against GKD, and GKD's lambda, on the synthetic language.

The sequence-level reverse KL KL(q || p_teacher) has a policy-gradient term that MiniLLM keeps and GKD drops
(kdlab/lm/policy.py). On llm-distill's language, teacher and shared student start, this experiment

1. checks every gradient estimator against the exact gradient (every string enumerated), at the start and at
   GKD's trained student: the mean cosine of one batch estimate with it, the cosine of the mean of many, the bias
   and the error of one batch, relative to the exact gradient's norm;
2. trains one student per estimator and seed on llm-distill's budget, and scores each exactly: KL(q || teacher)
   over whole strings (the objective), KL(teacher || q), and the lesson's scores against the truth;
3. sweeps GKD's lambda, the fraction of steps on the student's own samples (the rest on the training sentences).
"""

from __future__ import annotations

from dataclasses import asdict

from ..lm import compare, models, onpolicy
from . import Option, comma_list, register
from .contract import Outcome, Run, fast_note, format_table

DEFAULTS = {**asdict(compare.Config()), **asdict(onpolicy.Settings())}
FAST = {**compare.FAST, **onpolicy.FAST}


def _f(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}"


def summarize(r: dict) -> str:
    c = r["config"]
    lines = [f"llm-on-policy{fast_note(r)}: {r['language']['description']}",
             (f"teacher {r['teacher']['arch']} ({r['teacher']['params']:,} parameters); students "
             f"{r['student_start']['arch']} ({r['student_start']['params']:,} parameters) from one start, "
             f"{c['steps']} steps of {c['batch_size']} strings each"), ""]
    for where, title in (("start", "at the shared start"), ("trained", "at the student GKD's gradient trained")):
        g = r["gradient"][where]
        lines.append(f"the gradient of KL(q || teacher) {title}: exact KL {g['kl']:.4f}, "
                     f"{g['n_batches']} batch estimates of {g['batch_size']} strings per estimator")
        rows = [(name, _f(e["cosine"], 3), _f(e["cosine_of_mean"], 3), _f(e["bias"], 3), _f(e["error"], 3))
                for name, e in g["estimators"].items()]
        lines += [format_table(("estimator", "cos(batch, exact)", "cos(mean, exact)", "bias", "error"), rows), ""]
    rows = [(name, *(_f(s["mean"][k]) for k in ("kl_student_to_teacher", "kl_teacher_to_student",
                                                 "kl_truth_to_student", "kl_student_to_truth")),
             _f(s["mean"]["sample_validity"], 3), _f(s["mean"]["entropy"], 3), f"{s['mean']['train_seconds']:.1f}")
            for name, s in r["students"].items()]
    start = r["student_start"]
    foot = ("start", *(_f(start[k]) for k in ("kl_student_to_teacher", "kl_teacher_to_student", "kl_truth_to_student",
                                               "kl_student_to_truth")),
            _f(start["sample_validity"], 3), _f(start["entropy"], 3), "")
    lines += [f"students, the mean of {c['seeds']} training seed(s) (KL over whole strings, exact):",
              format_table(("estimator", "KL(q||teacher)", "KL(teacher||q)", "KL(truth||q)", "KL(q||truth)",
                            "validity", "entropy", "seconds"), rows, footer=foot), ""]
    lines += [f"  {name}: {' '.join(s['samples'])}" for name, s in r["students"].items()]
    lam = r["lambda"]
    rows = [(f"{e['lambda']:g}", *(_f(e["mean"][k]) for k in ("kl_student_to_teacher", "kl_teacher_to_student",
                                                              "kl_truth_to_student", "kl_student_to_truth")),
             _f(e["mean"]["sample_validity"], 3), f"{e['mean']['train_seconds']:.1f}") for e in lam["sweep"]]
    lines += ["", (f"GKD's lambda (JSD({lam['beta']:g}); the fraction of steps on the student's own samples), "
                  f"the mean of {lam['seeds']} seed(s):"),
              format_table(("lambda", "KL(q||teacher)", "KL(teacher||q)", "KL(truth||q)", "KL(q||truth)",
                            "validity", "seconds"), rows), ""]
    lines += [f"{'holds' if ok else 'FAILS'}: {text} ({numbers})" for text, ok, numbers in onpolicy.claims(r)]
    lines.append(f"whole run {r['seconds']['total']:.1f} s")
    return "\n".join(lines)


@register("llm-on-policy", "lesson 9: the policy-gradient term MiniLLM keeps and GKD drops, measured; GKD's lambda swept",
          options=[Option("steps", int, help="optimizer steps per student"),
                   Option("seeds", int, help="training seeds per estimator"),
                   Option("n-batches", int, help="batch estimates per estimator in the gradient check"),
                   Option("lambdas", comma_list(float), help="GKD's on-policy fractions, comma-separated")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data=None, device=None, progress: bool = True,
               steps: int | None = None, seeds: int | None = None, n_batches: int | None = None,
               lambdas: tuple | None = None, setup: compare.Setup | None = None, start=None) -> Outcome:
    """Parts 1-3 of :mod:`kdlab.lm.onpolicy`, with the common header; ``models`` holds the teacher and students.

    ``setup``: llm-distill's language, data and teacher, already made (the lesson's); else they are made here
    from the settings. ``start``: the shared student start (else :func:`kdlab.lm.compare.student_start`).
    """
    if data is not None:
        raise ValueError("llm-on-policy draws its own sentences from the synthetic language: data must be None")
    run = Run("llm-on-policy", seed=seed, fast=fast, device=device or "cpu")
    if run.device.type != "cpu":
        raise ValueError(f"llm-on-policy trains on the CPU only, not {run.device}")
    with models.one_thread():   # the GRUs are tiny: one thread is as fast, and never fights other jobs
        cfg = run.config(DEFAULTS, FAST, steps=steps, seeds=seeds, n_batches=n_batches, lambdas=lambdas)
        config, settings = onpolicy.settings_from(cfg)
        if setup is None:
            with run.timed("teacher"):
                setup = compare.make_setup(config, seed=seed, progress=progress)
        else:
            config = setup.config if steps is None else compare.Config(**{**asdict(setup.config), "steps": steps})
            setup = compare.Setup(config, setup.lang, setup.data, setup.teacher, setup.teacher_seconds,
                                  setup.teacher_scores, setup.seed)
        fields, students = onpolicy.run(setup, settings, start=start, progress=progress, timer=run.timed)
        return run.finish({**onpolicy.fields(setup, settings), **fields}, teacher=onpolicy.teacher_fields(setup),
                          models={"teacher": setup.teacher, **students})
