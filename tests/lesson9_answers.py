"""Lesson 9's answer bank (the interface: tests/answer_banks.py): right ones, wrong ones by family, wrappers."""

from __future__ import annotations

from functools import partial

import nbgrader_harness as h
from answer_tools import course_bug, edit, noisy, src  # noqa: F401 - part of this bank's interface
from kdlab import course

LESSON_NAME = "09_distilling_language_models"
ASSIGNMENT = course.lesson(LESSON_NAME).assignment
EXERCISES = [e.name for e in course.lesson(LESSON_NAME).exercises]   # from the course manifest (kdlab/course.json)
LESSON = {name: LESSON_NAME for name in EXERCISES}
# None of docs/course.md's numbered bugs is injected here: lesson 9's families of wrong answers are its own.
APPLICABLE_BUGS: set[int] = set()
# The families of wrong answers each exercise's bank must cover; the k-th wrong hand-in takes one of the k-th.
FAMILIES = {"forward_kl": ["direction", "probabilities", "averaging"],
            "reverse_kl": ["direction", "probabilities", "averaging"],
            "generalized_jsd": ["direction", "probabilities", "averaging"],
            "gkd_step": ["policy", "gradient", "averaging", "direction", "models"]}
FORWARD = '''
def forward_kl(teacher_logits, student_logits):
    log_p = torch.log_softmax(teacher_logits.detach(), dim=-1)
    log_q = torch.log_softmax(student_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
'''

REVERSE = '''
def reverse_kl(teacher_logits, student_logits):
    log_p = torch.log_softmax(teacher_logits.detach(), dim=-1)
    log_q = torch.log_softmax(student_logits, dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(dim=-1).mean()
'''

JSD = '''
def generalized_jsd(teacher_logits, student_logits, beta):
    if not 0 < beta < 1:
        raise ValueError("beta must lie strictly between 0 and 1")
    log_p = torch.log_softmax(teacher_logits.detach(), dim=-1)
    log_q = torch.log_softmax(student_logits, dim=-1)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(dim=-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(dim=-1)
    return (beta * kl_pm + (1 - beta) * kl_qm).mean()
'''

GKD = '''
def gkd_step(student, teacher, prompts, n_new, beta, lmbda):
    writer = student if torch.rand(()) < lmbda else teacher
    tokens = prompts
    with torch.no_grad():
        for _ in range(n_new):
            probs = torch.softmax(writer(tokens)[:, -1], dim=-1)
            tokens = torch.cat([tokens, torch.multinomial(probs, 1)], dim=1)
        t_logits = teacher(tokens[:, :-1])
    s_logits = student(tokens[:, :-1])
    first = prompts.shape[1] - 1
    return generalized_jsd(t_logits[:, first:], s_logits[:, first:], beta)
'''

# The same, with the JSD written out (for the bugs a learner's own generalized_jsd would hide).
GKD_OWN_JSD = edit(GKD, ("    return generalized_jsd(t_logits[:, first:], s_logits[:, first:], beta)", '''
    log_p = torch.log_softmax(t_logits[:, first:], dim=-1)
    log_q = torch.log_softmax(s_logits[:, first:], dim=-1)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return (beta * kl_pm + (1 - beta) * kl_qm).mean()'''.strip("\n")))

# The wrong answers each hidden test suite must catch: each is the solution with one mistake. The issue names
# three families: the wrong direction, probabilities in place of log-probabilities, the wrong averaging.
WRONG = {
    "forward_kl": {
        "direction: reverse KL": edit(FORWARD, ("log_p.exp() * (log_p - log_q)", "log_q.exp() * (log_q - log_p)")),
        "direction: F.kl_div with its arguments swapped": src('''
            def forward_kl(teacher_logits, student_logits):
                V = student_logits.shape[-1]
                log_p = torch.log_softmax(teacher_logits.detach(), dim=-1).reshape(-1, V)
                log_q = torch.log_softmax(student_logits, dim=-1).reshape(-1, V)
                return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
        '''),
        "probabilities: F.kl_div given the student's probabilities": src('''
            def forward_kl(teacher_logits, student_logits):
                V = student_logits.shape[-1]
                q = torch.softmax(student_logits, dim=-1).reshape(-1, V)
                p = torch.softmax(teacher_logits.detach(), dim=-1).reshape(-1, V)
                return F.kl_div(q, p, reduction="batchmean")
        '''),
        "probabilities: p * (log p - q)": edit(FORWARD, ("(log_p - log_q)", "(log_p - log_q.exp())")),
        "averaging: mean over the vocabulary too": edit(FORWARD, (".sum(dim=-1).mean()", ".mean()")),
        "averaging: summed over positions": edit(FORWARD, (".sum(dim=-1).mean()", ".sum()")),
        "averaging: batchmean divides by dimension 0 only": src('''
            def forward_kl(teacher_logits, student_logits):
                log_p = torch.log_softmax(teacher_logits.detach(), dim=-1)
                log_q = torch.log_softmax(student_logits, dim=-1)
                return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
        '''),
        "averaging: summed over each sequence, averaged over sequences": edit(
            FORWARD, (".sum(dim=-1).mean()", ".sum(dim=-1).reshape(student_logits.shape[0], -1).sum(-1).mean()")),
        "gradient into the teacher": edit(FORWARD, ("teacher_logits.detach()", "teacher_logits")),
        "log of softmax overflows to -inf": edit(FORWARD, ("torch.log_softmax(student_logits, dim=-1)",
                                                          "torch.log(torch.softmax(student_logits, dim=-1))")),
        "softmax over the first dimension": edit(FORWARD, ("torch.log_softmax(student_logits, dim=-1)",
                                                          "torch.log_softmax(student_logits, dim=0)")),
        "student detached: no gradient": edit(FORWARD, ("torch.log_softmax(student_logits, dim=-1)",
                                                       "torch.log_softmax(student_logits.detach(), dim=-1)")),
    },
    "reverse_kl": {
        "direction: forward KL": edit(REVERSE, ("log_q.exp() * (log_q - log_p)", "log_p.exp() * (log_p - log_q)")),
        "direction: the log-ratio flipped": edit(REVERSE, ("(log_q - log_p)", "(log_p - log_q)")),
        "probabilities: F.kl_div given the teacher's probabilities": src('''
            def reverse_kl(teacher_logits, student_logits):
                V = student_logits.shape[-1]
                p = torch.softmax(teacher_logits.detach(), dim=-1).reshape(-1, V)
                q = torch.softmax(student_logits, dim=-1).reshape(-1, V)
                return F.kl_div(p, q, reduction="batchmean")
        '''),
        "probabilities: q * (log q - p)": edit(REVERSE, ("(log_q - log_p)", "(log_q - log_p.exp())")),
        "averaging: mean over the vocabulary too": edit(REVERSE, (".sum(dim=-1).mean()", ".mean()")),
        "averaging: summed over positions": edit(REVERSE, (".sum(dim=-1).mean()", ".sum()")),
        "averaging: batchmean divides by dimension 0 only": src('''
            def reverse_kl(teacher_logits, student_logits):
                log_p = torch.log_softmax(teacher_logits.detach(), dim=-1)
                log_q = torch.log_softmax(student_logits, dim=-1)
                return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
        '''),
        "gradient into the teacher": edit(REVERSE, ("teacher_logits.detach()", "teacher_logits")),
        "log of softmax overflows to -inf": edit(REVERSE, ("torch.log_softmax(teacher_logits.detach(), dim=-1)",
                                                          "torch.log(torch.softmax(teacher_logits.detach(), dim=-1))")),
        "softmax over the first dimension": edit(REVERSE, ("torch.log_softmax(student_logits, dim=-1)",
                                                          "torch.log_softmax(student_logits, dim=0)")),
        "student probabilities detached (a wrong gradient)": edit(REVERSE, ("log_q.exp() *", "log_q.exp().detach() *")),
    },
    "generalized_jsd": {
        "direction: the mixture's weights swapped": edit(JSD, ("log_p + math.log(beta), log_q + math.log(1 - beta)",
                                                               "log_p + math.log(1 - beta), log_q + math.log(beta)")),
        "direction: the outer weights swapped": edit(JSD, ("beta * kl_pm + (1 - beta) * kl_qm",
                                                           "(1 - beta) * kl_pm + beta * kl_qm")),
        "direction: teacher and student swapped": edit(JSD, ("torch.log_softmax(teacher_logits.detach(), dim=-1)\n",
                                                             "torch.log_softmax(student_logits, dim=-1)\n    _ = 0\n"),
                                                       ("log_q = torch.log_softmax(student_logits, dim=-1)",
                                                        "log_q = torch.log_softmax(teacher_logits.detach(), dim=-1)")),
        "direction: KL(M || P) and KL(M || Q)": src('''
            def generalized_jsd(teacher_logits, student_logits, beta):
                if not 0 < beta < 1:
                    raise ValueError("beta must lie strictly between 0 and 1")
                log_p = torch.log_softmax(teacher_logits.detach(), dim=-1)
                log_q = torch.log_softmax(student_logits, dim=-1)
                log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
                kl_mp = (log_m.exp() * (log_m - log_p)).sum(dim=-1)
                kl_mq = (log_m.exp() * (log_m - log_q)).sum(dim=-1)
                return (beta * kl_mp + (1 - beta) * kl_mq).mean()
        '''),
        "probabilities: F.kl_div given the mixture's probabilities": src('''
            def generalized_jsd(teacher_logits, student_logits, beta):
                if not 0 < beta < 1:
                    raise ValueError("beta must lie strictly between 0 and 1")
                V = student_logits.shape[-1]
                p = torch.softmax(teacher_logits.detach(), dim=-1).reshape(-1, V)
                q = torch.softmax(student_logits, dim=-1).reshape(-1, V)
                m = beta * p + (1 - beta) * q
                return beta * F.kl_div(m, p, reduction="batchmean") + (1 - beta) * F.kl_div(m, q, reduction="batchmean")
        '''),
        "probabilities: the mixture of log-probabilities": edit(
            JSD, ("log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)",
                  "log_m = beta * log_p + (1 - beta) * log_q")),
        "averaging: mean over the vocabulary too": src('''
            def generalized_jsd(teacher_logits, student_logits, beta):
                if not 0 < beta < 1:
                    raise ValueError("beta must lie strictly between 0 and 1")
                log_p = torch.log_softmax(teacher_logits.detach(), dim=-1)
                log_q = torch.log_softmax(student_logits, dim=-1)
                log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
                return (beta * log_p.exp() * (log_p - log_m) + (1 - beta) * log_q.exp() * (log_q - log_m)).mean()
        '''),
        "averaging: summed over positions": edit(JSD, ("(beta * kl_pm + (1 - beta) * kl_qm).mean()",
                                                       "(beta * kl_pm + (1 - beta) * kl_qm).sum()")),
        "averaging: divided by dimension 0 only": edit(JSD, ("(beta * kl_pm + (1 - beta) * kl_qm).mean()",
                                                             "(beta * kl_pm + (1 - beta) * kl_qm).sum() / teacher_logits.shape[0]")),
        "beta ignored: the ordinary JSD": edit(JSD, ("log_p + math.log(beta), log_q + math.log(1 - beta)",
                                                     "log_p + math.log(0.5), log_q + math.log(0.5)"),
                                               ("beta * kl_pm + (1 - beta) * kl_qm", "0.5 * kl_pm + 0.5 * kl_qm")),
        "beta = 0 and 1 accepted (a probability-space mixture, no check)": src('''
            def generalized_jsd(teacher_logits, student_logits, beta):
                p = torch.softmax(teacher_logits.detach(), dim=-1)
                q = torch.softmax(student_logits, dim=-1)
                m = beta * p + (1 - beta) * q
                kl_pm = (p * (torch.log(p) - torch.log(m))).sum(dim=-1)
                kl_qm = (q * (torch.log(q) - torch.log(m))).sum(dim=-1)
                return (beta * kl_pm + (1 - beta) * kl_qm).mean()
        '''),
        "gradient into the teacher": edit(JSD, ("teacher_logits.detach()", "teacher_logits")),
        "softmax over the first dimension": edit(JSD, ("torch.log_softmax(student_logits, dim=-1)",
                                                      "torch.log_softmax(student_logits, dim=0)")),
    },
    "gkd_step": {
        "policy: always off-policy (lmbda ignored, the teacher writes)": edit(
            GKD, ("student if torch.rand(()) < lmbda else teacher", "teacher")),
        "policy: always on-policy (lmbda ignored, the student writes)": edit(
            GKD, ("student if torch.rand(()) < lmbda else teacher", "student")),
        "policy: lmbda read the wrong way round": edit(GKD, ("torch.rand(()) < lmbda", "torch.rand(()) > lmbda")),
        "policy: a coin per sequence, not one per batch": src('''
            def gkd_step(student, teacher, prompts, n_new, beta, lmbda):
                mine = torch.rand(prompts.shape[0]) < lmbda
                tokens = prompts
                with torch.no_grad():
                    for _ in range(n_new):
                        probs = torch.where(mine[:, None], torch.softmax(student(tokens)[:, -1], dim=-1),
                                            torch.softmax(teacher(tokens)[:, -1], dim=-1))
                        tokens = torch.cat([tokens, torch.multinomial(probs, 1)], dim=1)
                    t_logits = teacher(tokens[:, :-1])
                s_logits = student(tokens[:, :-1])
                first = prompts.shape[1] - 1
                return generalized_jsd(t_logits[:, first:], s_logits[:, first:], beta)
        '''),
        "policy: greedy decoding, not sampling": edit(GKD, ("torch.multinomial(probs, 1)", "probs.argmax(-1, keepdim=True)")),
        "gradient: into the teacher": edit(GKD_OWN_JSD, ("        t_logits = teacher(tokens[:, :-1])\n", ""),
                                           ("    s_logits = student(tokens[:, :-1])",
                                            "    s_logits = student(tokens[:, :-1])\n    t_logits = teacher(tokens[:, :-1])")),
        "gradient: none (the student's logits under no_grad too)": edit(
            GKD, ("    s_logits = student(tokens[:, :-1])\n", ""),
            ("        t_logits = teacher(tokens[:, :-1])\n",
             "        t_logits = teacher(tokens[:, :-1])\n        s_logits = student(tokens[:, :-1])\n")),
        "gradient: through the sampling (a score-function term)": edit(
            GKD, ("    return generalized_jsd(t_logits[:, first:], s_logits[:, first:], beta)",
                  "    loss = generalized_jsd(t_logits[:, first:], s_logits[:, first:], beta)\n"
                  "    logq = torch.log_softmax(student(tokens)[:, first:-1], -1).gather(-1, tokens[:, first + 1:, None]).sum()\n"
                  "    return loss + loss.detach() * (logq - logq.detach())")),
        "averaging: the prompts' positions scored too": edit(GKD, ("first = prompts.shape[1] - 1", "first = 0")),
        "averaging: summed over the new positions": edit(
            GKD, ("return generalized_jsd(t_logits[:, first:], s_logits[:, first:], beta)",
                  "return generalized_jsd(t_logits[:, first:], s_logits[:, first:], beta) * n_new")),
        "averaging: off by one, the positions after each new token": edit(
            GKD, ("t_logits = teacher(tokens[:, :-1])", "t_logits = teacher(tokens)"),
            ("s_logits = student(tokens[:, :-1])", "s_logits = student(tokens)"),
            ("first = prompts.shape[1] - 1", "first = prompts.shape[1]")),
        "direction: beta swapped, JSD(1 - beta)": edit(GKD, ("s_logits[:, first:], beta)", "s_logits[:, first:], 1 - beta)")),
        "direction: teacher and student swapped in the JSD": edit(
            GKD_OWN_JSD, ("log_p = torch.log_softmax(t_logits", "log_p = torch.log_softmax(s_logits"),
            ("log_q = torch.log_softmax(s_logits", "log_q = torch.log_softmax(t_logits")),
        "models: the teacher frozen by switching off requires_grad": edit(
            GKD, ("    writer = student", "    teacher.requires_grad_(False)\n    writer = student")),
    },
}

# Correct answers written differently: they must keep full marks. {exercise: {label: source}}
RIGHT = {
    "forward_kl": {"F.kl_div with log_target, rows flattened": src('''
        def forward_kl(teacher_logits, student_logits):
            V = student_logits.shape[-1]
            log_p = F.log_softmax(teacher_logits, dim=-1).detach().reshape(-1, V)
            log_q = F.log_softmax(student_logits, dim=-1).reshape(-1, V)
            return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    ''')},
    "reverse_kl": {"q times the log-ratio, averaged by hand": src('''
        def reverse_kl(teacher_logits, student_logits):
            q = torch.softmax(student_logits, dim=-1)
            log_ratio = torch.log_softmax(student_logits, dim=-1) - torch.log_softmax(teacher_logits, dim=-1).detach()
            per_position = (q * log_ratio).sum(-1)
            return per_position.sum() / per_position.numel()
    ''')},
    "generalized_jsd": {"in probability space, float64, with xlogy": src('''
        def generalized_jsd(teacher_logits, student_logits, beta):
            beta = float(beta)
            if beta <= 0 or beta >= 1:
                raise ValueError(f"beta = {beta} is outside (0, 1)")
            p = torch.softmax(teacher_logits.detach().double(), dim=-1)
            q = torch.softmax(student_logits.double(), dim=-1)
            m = beta * p + (1 - beta) * q
            kl_pm = torch.special.xlogy(p, p) - torch.special.xlogy(p, m)
            kl_qm = torch.special.xlogy(q, q) - torch.special.xlogy(q, m)
            out = (beta * kl_pm + (1 - beta) * kl_qm).sum(-1).mean()
            return out.to(student_logits.dtype)
    ''')},
    # it also puts the teacher in eval mode (pitfall 4)
    "gkd_step": {"torch.bernoulli's coin, Gumbel-max sampling, its own JSD in float64": src('''
        def gkd_step(student, teacher, prompts, n_new, beta, lmbda):
            teacher.eval()
            on_policy = bool(torch.bernoulli(torch.tensor(float(lmbda))))
            text = prompts.clone()
            for _ in range(n_new):
                with torch.no_grad():
                    logits = (student if on_policy else teacher)(text)[:, -1].double()
                gumbel = -torch.log(-torch.log(torch.rand(logits.shape, dtype=torch.float64).clamp_min(1e-300)))
                text = torch.cat([text, (logits + gumbel).argmax(-1, keepdim=True)], dim=1)
            inputs, n_prompt = text[:, :-1], prompts.shape[1]
            p = torch.softmax(teacher(inputs).detach()[:, n_prompt - 1:].double(), dim=-1)
            q = torch.softmax(student(inputs)[:, n_prompt - 1:].double(), dim=-1)
            m = beta * p + (1 - beta) * q
            jsd = beta * (torch.special.xlogy(p, p) - torch.special.xlogy(p, m)).sum(-1) \\
                + (1 - beta) * (torch.special.xlogy(q, q) - torch.special.xlogy(q, m)).sum(-1)
            return jsd.mean().float()
    ''')},
}

WRAPPERS = {
    "forward_kl": "from kdlab.lm.losses import forward_kl",
    "reverse_kl": ("import kdlab.lm.losses\n\ndef reverse_kl(teacher_logits, student_logits):\n"
                   "    return kdlab.lm.losses.reverse_kl(teacher_logits.clone(), student_logits) + 0.0"),
    "generalized_jsd": ("import functools\nfrom kdlab.lm import losses as _l\n\n"
                        "generalized_jsd = functools.partial(_l.generalized_jsd)"),
    "gkd_step": "import kdlab.lm.losses as _losses\n\n" + edit(
        GKD, ("return generalized_jsd(", "return _losses.generalized_jsd(")),
}

# The right answers that the wrong ones above are one edit away from.
BASES = {"forward_kl": src(FORWARD), "reverse_kl": src(REVERSE), "generalized_jsd": src(JSD), "gkd_step": src(GKD)}

# More wrong hand-ins: the k-th carries, for each exercise that has a k-th family, that family's first wrong answer.
WRONG_HANDINS = [{name: next(label for label in WRONG[name] if label.startswith(FAMILIES[name][k] + ":"))
                  for name in EXERCISES if k < len(FAMILIES[name])}
                 for k in range(max(len(f) for f in FAMILIES.values()))]


def tampered() -> dict:
    """A hand-in whose test cells were deleted or emptied: ``{lesson: notebook}``."""
    nb = partial(h.with_answers, ASSIGNMENT, LESSON)({"reverse_kl": WRONG["reverse_kl"]["direction: forward KL"]})
    h.delete_cell(nb[LESSON_NAME], "test_reverse_kl")
    h.set_source(nb[LESSON_NAME], "test_forward_kl", "pass")
    return nb


# The exercise the tampered hand-in fails (its deleted test cell is put back), and the cells that come back.
TAMPERED_FAILS = {"reverse_kl"}
TAMPERED_POINTS: dict = {}
TAMPERED_RESTORED = [(LESSON_NAME, "test_reverse_kl"), (LESSON_NAME, "test_forward_kl")]

# Wrong answers the released notebook's visible checks catch: ({exercise: wrong label}, words the message holds).
# The visible checks alone catch the wrong direction in every exercise.
VISIBLE_CHECKS = [({name: next(label for label in WRONG[name] if label.startswith("direction"))}, [name])
                  for name in EXERCISES]
