"""Part 1's answer bank (the interface: tests/answer_banks.py): wrong answers, wrappers, a tampered hand-in.

``WRONG[exercise]`` maps a label to the source of a wrong answer cell. Labels
``"bug N: ..."`` inject bug N of docs/course.md's list; the others are further
plausible mistakes (a wrong dimension, reduction or sign, NaN on an edge case,
2-D-only code, no gradient, ...). Each is the solution with the one mistake,
so a failing test shows that the hidden tests catch that mistake itself.
"""

from __future__ import annotations

from functools import partial

import nbgrader_harness as h
from answer_tools import course_bug, noisy  # noqa: F401 - part of this bank's interface
from answer_tools import edit as _edit, src as _src
from kdlab import course

ASSIGNMENT = "part1_foundations"
# {exercise: lesson} of part 1, in course order, from the course manifest (kdlab/course.json).
LESSON = course.lesson_of(ASSIGNMENT)
# Every bug of docs/course.md applies to part 1: its bank injects each into the exercises it applies to.
APPLICABLE_BUGS = {bug.number for bug in course.bugs()}

SOFTMAX_T_BASE = '''
def softmax_t(logits, T=1.0):
    if not T > 0:
        raise ValueError("T must be positive")
    scaled = logits / T
    e = torch.exp(scaled - scaled.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)
'''

KD_KL_BASE = '''
def kd_kl(student_logits, teacher_logits, T):
    log_q = torch.log_softmax(student_logits / T, dim=-1)
    log_p = torch.log_softmax(teacher_logits.detach() / T, dim=-1)
    per_example = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return per_example.mean() * T**2
'''

DISTILL_BASE = '''
def distillation_loss(student_logits, teacher_logits, labels, T, alpha):
    n_classes = student_logits.shape[-1]
    log_q = torch.log_softmax(student_logits / T, dim=-1)
    log_p = torch.log_softmax(teacher_logits.detach() / T, dim=-1)
    soft = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean() * T**2
    hard = F.cross_entropy(student_logits.reshape(-1, n_classes), labels.reshape(-1))
    return alpha * soft + (1 - alpha) * hard
'''

CLASS_SIMILARITY_BASE = '''
def class_similarity(probs, labels):
    n_classes = probs.shape[1]
    similarity = torch.zeros(n_classes, n_classes, dtype=probs.dtype)
    for k in range(n_classes):
        rows = probs[labels == k]
        if len(rows):
            similarity[k] = rows.mean(dim=0)
    return similarity
'''

GRAD_BASE = '''
def kd_logit_grad(student_logits, teacher_logits, T):
    q = torch.softmax(student_logits / T, dim=-1)
    p = torch.softmax(teacher_logits / T, dim=-1)
    return ((q - p) / T).detach()
'''

FIX_BASE = '''
def fix_kd_step(student, teacher, optimizer, x, y, T, alpha):
    student.train()
    teacher.eval()
    with torch.no_grad():
        teacher_logits = teacher(x)
    student_logits = student(x)
    log_q = F.log_softmax(student_logits / T, dim=-1)
    p = F.softmax(teacher_logits / T, dim=-1)
    soft = F.kl_div(log_q, p, reduction="batchmean") * T**2
    hard = F.cross_entropy(student_logits, y)
    loss = alpha * soft + (1 - alpha) * hard
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
'''

_LIVE_TEACHER = ("    teacher.eval()\n    with torch.no_grad():\n        teacher_logits = teacher(x)",
                 "    teacher_logits = teacher(x)")

NAIVE = '''
def _naive_softmax(z):
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)
'''

# The soft part of kd_kl and of an inlined distillation_loss share their bugs 1-5 and 8-10.
_SOFT_BUGS = {
    "bug 1: probabilities instead of log-probabilities in the KL": [
        ("log_q = torch.log_softmax(student_logits / T, dim=-1)", "log_q = torch.softmax(student_logits / T, dim=-1)")],
    "bug 2: reduction 'mean' (also divides by the classes)": None,   # per base, below
    "bug 3: T^2 factor missing": None,
    "bug 4: temperature on the teacher side only": [
        ("log_q = torch.log_softmax(student_logits / T, dim=-1)", "log_q = torch.log_softmax(student_logits, dim=-1)")],
    "bug 5: KL direction reversed": [("(log_p.exp() * (log_p - log_q))", "(log_q.exp() * (log_q - log_p))")],
    "bug 8: gradients flow into the teacher": [("teacher_logits.detach() / T", "teacher_logits / T")],
    "bug 9: softmax that overflows on large logits": [
        ("log_q = torch.log_softmax(student_logits / T, dim=-1)", "log_q = torch.log(_naive_softmax(student_logits / T))"),
        ("log_p = torch.log_softmax(teacher_logits.detach() / T, dim=-1)",
         "log_p = torch.log(_naive_softmax(teacher_logits.detach() / T))")],
    "bug 10: softmax over the batch dimension": [
        ("torch.log_softmax(student_logits / T, dim=-1)", "torch.log_softmax(student_logits / T, dim=0)"),
        ("torch.log_softmax(teacher_logits.detach() / T, dim=-1)", "torch.log_softmax(teacher_logits.detach() / T, dim=0)")],
}


def _soft_bugs(base: str, mean_fix, t2_fix) -> dict:
    out = {}
    for label, repl in _SOFT_BUGS.items():
        if label.startswith("bug 2"):
            repl = [mean_fix]
        elif label.startswith("bug 3"):
            repl = [t2_fix]
        out[label] = _edit(base, *repl, prefix=NAIVE if label.startswith("bug 9") else "")
    return out


WRONG = {
    "softmax_t": {
        "bug 9: exp without the max shift overflows": _edit(
            SOFTMAX_T_BASE, ("e = torch.exp(scaled - scaled.max(dim=-1, keepdim=True).values)", "e = torch.exp(scaled)")),
        "bug 10: softmax over the batch dimension": _edit(
            SOFTMAX_T_BASE, ("scaled.max(dim=-1, keepdim=True)", "scaled.max(dim=0, keepdim=True)"),
            ("e.sum(dim=-1, keepdim=True)", "e.sum(dim=0, keepdim=True)")),
        "multiplies by T instead of dividing": _edit(SOFTMAX_T_BASE, ("scaled = logits / T", "scaled = logits * T")),
        "T <= 0 not rejected": _edit(SOFTMAX_T_BASE, ('if not T > 0:\n        raise ValueError("T must be positive")\n    ', "")),
        "2-D only (dim=1)": _edit(
            SOFTMAX_T_BASE, ("scaled.max(dim=-1, keepdim=True)", "scaled.max(dim=1, keepdim=True)"),
            ("e.sum(dim=-1, keepdim=True)", "e.sum(dim=1, keepdim=True)")),
        "changes the input in place": _edit(
            SOFTMAX_T_BASE, ("scaled = logits / T", "logits /= T\n    scaled = logits")),
        "no gradient (through numpy)": _src('''
            def softmax_t(logits, T=1.0):
                import numpy as np
                if not T > 0:
                    raise ValueError("T must be positive")
                a = logits.detach().numpy() / T
                e = np.exp(a - a.max(axis=-1, keepdims=True))
                return torch.from_numpy(e / e.sum(axis=-1, keepdims=True))
        '''),
    },
    "entropy": {
        "bug 10: sums over the batch dimension": "def entropy(p):\n    return -torch.special.xlogy(p, p).sum(dim=0)",
        "wrong sign": "def entropy(p):\n    return torch.special.xlogy(p, p).sum(dim=-1)",
        "NaN for zero probabilities": "def entropy(p):\n    return -(p * torch.log(p)).sum(dim=-1)",
        "mean over classes instead of sum": "def entropy(p):\n    return -torch.special.xlogy(p, p).mean(dim=-1)",
        "one number for the whole batch": "def entropy(p):\n    return -torch.special.xlogy(p, p).sum()",
        "log base 2 (bits)": "def entropy(p):\n    return -(torch.special.xlogy(p, p) / torch.log(torch.tensor(2.0))).sum(dim=-1)",
    },
    "class_similarity": {
        "bug 10: mean over the class dimension": _edit(CLASS_SIMILARITY_BASE, ("rows.mean(dim=0)", "rows.mean(dim=1)")),
        "transposed (columns are the true classes)": _edit(CLASS_SIMILARITY_BASE,
                                                           ("return similarity", "return similarity.T")),
        "sum instead of mean": _src('''
            def class_similarity(probs, labels):
                n_classes = probs.shape[1]
                similarity = torch.zeros(n_classes, n_classes, dtype=probs.dtype)
                return similarity.index_add(0, labels, probs)
        '''),
        "divides by N instead of the class count": _src('''
            def class_similarity(probs, labels):
                n_classes = probs.shape[1]
                similarity = torch.zeros(n_classes, n_classes, dtype=probs.dtype)
                return similarity.index_add(0, labels, probs) / len(probs)
        '''),
        "NaN for a class without examples": _src('''
            def class_similarity(probs, labels):
                n_classes = probs.shape[1]
                return torch.stack([probs[labels == k].mean(dim=0) for k in range(n_classes)])
        '''),
        "rows only for the classes present": _src('''
            def class_similarity(probs, labels):
                return torch.stack([probs[labels == k].mean(dim=0) for k in labels.unique()])
        '''),
        "argmax counts instead of soft labels": _src('''
            def class_similarity(probs, labels):
                n_classes = probs.shape[1]
                hard = torch.nn.functional.one_hot(probs.argmax(dim=1), n_classes).to(probs.dtype)
                sums = torch.zeros(n_classes, n_classes, dtype=probs.dtype).index_add(0, labels, hard)
                return sums / torch.bincount(labels, minlength=n_classes).clamp_min(1)[:, None]
        '''),
    },
    "most_similar_pairs": {
        "includes the diagonal": _src('''
            def most_similar_pairs(similarity, k):
                sym = (similarity + similarity.T) / 2
                n = sym.shape[0]
                scored = [(float(sym[i, j]), i, j) for i in range(n) for j in range(i, n)]
                scored.sort(key=lambda item: -item[0])
                return [(i, j) for _, i, j in scored[:k]]
        '''),
        "one direction only (no symmetrization)": _src('''
            def most_similar_pairs(similarity, k):
                n = similarity.shape[0]
                scored = [(float(similarity[i, j]), i, j) for i in range(n) for j in range(i + 1, n)]
                scored.sort(key=lambda item: -item[0])
                return [(i, j) for _, i, j in scored[:k]]
        '''),
        "least similar first": _src('''
            def most_similar_pairs(similarity, k):
                sym = (similarity + similarity.T) / 2
                n = sym.shape[0]
                scored = [(float(sym[i, j]), i, j) for i in range(n) for j in range(i + 1, n)]
                scored.sort(key=lambda item: item[0])
                return [(i, j) for _, i, j in scored[:k]]
        '''),
        "each pair twice": _src('''
            def most_similar_pairs(similarity, k):
                sym = (similarity + similarity.T) / 2
                n = sym.shape[0]
                scored = [(float(sym[i, j]), i, j) for i in range(n) for j in range(n) if i != j]
                scored.sort(key=lambda item: -item[0])
                return [(i, j) for _, i, j in scored[:k]]
        '''),
        "topk fails when k exceeds the pairs": _src('''
            def most_similar_pairs(similarity, k):
                sym = (similarity + similarity.T) / 2
                i, j = torch.triu_indices(*sym.shape, offset=1)
                top = torch.topk(sym[i, j], k).indices
                return [(int(i[n]), int(j[n])) for n in top]
        '''),
    },
    "kd_kl": {
        **_soft_bugs(KD_KL_BASE, ("per_example.mean() * T**2", "(log_p.exp() * (log_p - log_q)).mean() * T**2"),
                     ("per_example.mean() * T**2", "per_example.mean()")),
        "F.kl_div batchmean without flattening (3-D)": _src('''
            def kd_kl(student_logits, teacher_logits, T):
                log_q = torch.log_softmax(student_logits / T, dim=-1)
                p = torch.softmax(teacher_logits.detach() / T, dim=-1)
                return F.kl_div(log_q, p, reduction="batchmean") * T**2
        '''),
    },
    "distillation_loss": {
        **_soft_bugs(DISTILL_BASE, ("(log_p.exp() * (log_p - log_q)).sum(dim=-1).mean() * T**2",
                                    "(log_p.exp() * (log_p - log_q)).mean() * T**2"),
                     ("(log_p.exp() * (log_p - log_q)).sum(dim=-1).mean() * T**2",
                      "(log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()")),
        "bug 6: alpha weights the hard term": _edit(
            DISTILL_BASE, ("return alpha * soft + (1 - alpha) * hard", "return (1 - alpha) * soft + alpha * hard")),
        "bug 7: cross-entropy on softened logits": _edit(
            DISTILL_BASE, ("F.cross_entropy(student_logits.reshape(-1, n_classes)",
                           "F.cross_entropy((student_logits / T).reshape(-1, n_classes)")),
        "cross-entropy without flattening (3-D)": _edit(
            DISTILL_BASE, ("F.cross_entropy(student_logits.reshape(-1, n_classes), labels.reshape(-1))",
                           "F.cross_entropy(student_logits, labels)")),
        "cross-entropy summed over the batch": _edit(
            DISTILL_BASE, ("labels.reshape(-1))", "labels.reshape(-1), reduction='sum')")),
    },
    "fix_kd_step": {
        # Lesson 3's buggy_kd_step has bugs 1, 7 and 8: each alone (the other two fixed), then other mistakes.
        "bug 1: probabilities instead of log-probabilities in the KL": _edit(
            FIX_BASE, ("log_q = F.log_softmax(student_logits / T, dim=-1)", "log_q = F.softmax(student_logits / T, dim=-1)")),
        "bug 7: cross-entropy on softened logits": _edit(
            FIX_BASE, ("F.cross_entropy(student_logits, y)", "F.cross_entropy(student_logits / T, y)")),
        "bug 8: teacher under no_grad but left in train mode": _edit(FIX_BASE, ("    teacher.eval()\n", "")),
        "bug 8: teacher in eval mode, its logits not detached": _edit(
            FIX_BASE, ("    with torch.no_grad():\n        teacher_logits = teacher(x)", "    teacher_logits = teacher(x)")),
        "bug 8: teacher put back in train mode after the step": _edit(
            FIX_BASE, ("    return loss.item()", "    teacher.train()\n    return loss.item()")),
        "bug 8: teacher frozen with requires_grad_(False) but run in train mode": _edit(
            FIX_BASE, ("    teacher.eval()\n    with torch.no_grad():\n        teacher_logits = teacher(x)",
                       "    for w in teacher.parameters():\n        w.requires_grad_(False)\n"
                       "    teacher_logits = teacher(x)")),
        "bug 8: the teacher live, in train mode, with gradients (as in the starter)": _edit(FIX_BASE, _LIVE_TEACHER),
        "bug 2: reduction 'mean' (also divides by the classes)": _edit(
            FIX_BASE, ('reduction="batchmean"', 'reduction="mean"')),
        "bug 3: T^2 factor missing": _edit(FIX_BASE, ('reduction="batchmean") * T**2', 'reduction="batchmean")')),
        "bug 5: KL direction reversed (kl_div of the teacher's log-probabilities)": _edit(
            FIX_BASE, ("log_q = F.log_softmax(student_logits / T, dim=-1)", "q = F.softmax(student_logits / T, dim=-1)"),
            ("p = F.softmax(teacher_logits / T, dim=-1)", "log_p = F.log_softmax(teacher_logits / T, dim=-1)"),
            ("F.kl_div(log_q, p,", "F.kl_div(log_p, q,")),
        "bug 6: alpha weights the hard term": _edit(
            FIX_BASE, ("loss = alpha * soft + (1 - alpha) * hard", "loss = (1 - alpha) * soft + alpha * hard")),
        "bug 9: softmax that overflows on large logits": _edit(
            FIX_BASE, ("log_q = F.log_softmax(student_logits / T, dim=-1)",
                       "log_q = torch.log(_naive_softmax(student_logits / T))"),
            ("p = F.softmax(teacher_logits / T, dim=-1)", "p = _naive_softmax(teacher_logits / T)"), prefix=NAIVE),
        "bug 10: softmax over the batch dimension": _edit(
            FIX_BASE, ("F.log_softmax(student_logits / T, dim=-1)", "F.log_softmax(student_logits / T, dim=0)"),
            ("F.softmax(teacher_logits / T, dim=-1)", "F.softmax(teacher_logits / T, dim=0)")),
        "the starter unchanged (bugs 1, 7 and 8)": _edit(
            FIX_BASE, _LIVE_TEACHER,
            ("log_q = F.log_softmax(student_logits / T, dim=-1)", "log_q = F.softmax(student_logits / T, dim=-1)"),
            ("F.cross_entropy(student_logits, y)", "F.cross_entropy(student_logits / T, y)")),
        "log of a softmax instead of log_softmax (infinite on huge logits)": _edit(
            FIX_BASE, ("log_q = F.log_softmax(student_logits / T, dim=-1)",
                       "log_q = torch.log(F.softmax(student_logits / T, dim=-1))")),
        "returns the loss after the step": _edit(
            FIX_BASE, ("    return loss.item()", "    with torch.no_grad():\n"
                       "        after = alpha * F.kl_div(F.log_softmax(student(x) / T, dim=-1), p, reduction='batchmean')"
                       " * T**2 + (1 - alpha) * F.cross_entropy(student(x), y)\n    return after.item()")),
        "returns a tensor, not a float": _edit(FIX_BASE, ("    return loss.item()", "    return loss.detach()")),
        "stale gradients not cleared": _edit(FIX_BASE, ("    optimizer.zero_grad()\n", "")),
        "gradients cleared after backward": _edit(
            FIX_BASE, ("    optimizer.zero_grad()\n    loss.backward()\n", "    loss.backward()\n    optimizer.zero_grad()\n")),
        "student left in its mode": _edit(FIX_BASE, ("    student.train()\n", "")),
        "two optimizer steps": _edit(FIX_BASE, ("    optimizer.step()\n", "    optimizer.step()\n    optimizer.step()\n")),
    },
    "kd_logit_grad": {
        "bug 1: autograd of a KL built from probabilities": _src('''
            def kd_logit_grad(student_logits, teacher_logits, T):
                z = student_logits.detach().clone().requires_grad_(True)
                q = torch.softmax(z / T, dim=-1)
                p = torch.softmax(teacher_logits.detach() / T, dim=-1)
                (grad,) = torch.autograd.grad((p * (torch.log(p) - q)).sum(), z)
                return grad
        '''),
        "bug 2: averaged over the batch": _edit(
            GRAD_BASE, ("return ((q - p) / T).detach()", "return ((q - p) / T / (q.numel() // q.shape[-1])).detach()")),
        "bug 3: the T^2-scaled loss's gradient (times T)": _edit(
            GRAD_BASE, ("return ((q - p) / T).detach()", "return ((q - p) * T).detach()")),
        "bug 4: temperature on the teacher side only": _edit(
            GRAD_BASE, ("q = torch.softmax(student_logits / T, dim=-1)", "q = torch.softmax(student_logits, dim=-1)")),
        "bug 5: reversed (p - q)": _edit(GRAD_BASE, ("return ((q - p) / T).detach()", "return ((p - q) / T).detach()")),
        "bug 9: softmax that overflows on large logits": _edit(
            GRAD_BASE, ("q = torch.softmax(student_logits / T, dim=-1)", "q = _naive_softmax(student_logits / T)"),
            ("p = torch.softmax(teacher_logits / T, dim=-1)", "p = _naive_softmax(teacher_logits / T)"), prefix=NAIVE),
        "bug 10: softmax over the batch dimension": _edit(
            GRAD_BASE, ("torch.softmax(student_logits / T, dim=-1)", "torch.softmax(student_logits / T, dim=0)"),
            ("torch.softmax(teacher_logits / T, dim=-1)", "torch.softmax(teacher_logits / T, dim=0)")),
        "missing the 1/T": _edit(GRAD_BASE, ("return ((q - p) / T).detach()", "return (q - p).detach()")),
        "1/T^2 instead of 1/T": _edit(GRAD_BASE, ("return ((q - p) / T).detach()", "return ((q - p) / T**2).detach()")),
    },
}


# Answers that are, or only call, kdlab's reference: they must earn nothing.
WRAPPERS = {
    "softmax_t": "from kdlab import losses as _ref\n\ndef softmax_t(logits, T=1.0):\n    return _ref.softmax_t(logits, T)",
    "entropy": "from kdlab.analysis import entropy",
    "class_similarity": ("def class_similarity(probs, labels):\n    import kdlab.analysis\n"
                         "    return kdlab.analysis.class_similarity(probs, labels)"),
    "most_similar_pairs": ("from kdlab.analysis import most_similar_pairs as _pairs\n\n"
                           "def most_similar_pairs(similarity, k):\n    return list(_pairs(similarity, k))"),
    "kd_kl": "import kdlab.losses\n\nkd_kl = kdlab.losses.kd_kl",
    "distillation_loss": ("import functools\nimport kdlab.losses\n\n"
                          "distillation_loss = functools.partial(kdlab.losses.distillation_loss)"),
    "fix_kd_step": ("def fix_kd_step(student, teacher, optimizer, x, y, T, alpha):\n"
                    "    from kdlab.losses import distillation_loss as _loss\n"
                    "    student.train()\n    teacher.eval()\n    with torch.no_grad():\n"
                    "        teacher_logits = teacher(x)\n"
                    "    loss = _loss(student(x), teacher_logits, y, T, alpha)\n"
                    "    optimizer.zero_grad()\n    loss.backward()\n    optimizer.step()\n    return loss.item()"),
    "kd_logit_grad": ("from kdlab.losses import kd_logit_grad as _grad\n\n"
                      "def kd_logit_grad(student_logits, teacher_logits, T):\n"
                      "    return _grad(student_logits.clone(), teacher_logits.clone(), T) + 0.0"),
}

# The right answers that the wrong ones above are one edit away from.
BASES = {"softmax_t": _src(SOFTMAX_T_BASE), "class_similarity": _src(CLASS_SIMILARITY_BASE),
         "kd_kl": _src(KD_KL_BASE), "distillation_loss": _src(DISTILL_BASE), "fix_kd_step": _src(FIX_BASE),
         "kd_logit_grad": _src(GRAD_BASE)}

_with_answers = partial(h.with_answers, ASSIGNMENT, LESSON)


def tampered() -> dict:
    """A hand-in whose test cells were edited, stripped of metadata, or deleted: ``{lesson: notebook}``."""
    l1 = _with_answers({"softmax_t": WRONG["softmax_t"]["bug 9: exp without the max shift overflows"]})
    nb = l1["01_softmax_temperature"]
    h.set_source(nb, "test_softmax_t", "pass  # tests removed")
    h.delete_cell(nb, "test_entropy")
    l2 = _with_answers({"class_similarity": WRONG["class_similarity"]["transposed (columns are the true classes)"]})
    nb = l2["02_dark_knowledge"]
    test = h.cell(nb, "test_class_similarity")
    test.metadata.pop("nbgrader")
    test.source = 'print("looks fine")'
    l3 = _with_answers({"kd_kl": WRONG["kd_kl"]["bug 3: T^2 factor missing"]})
    nb = l3["03_kd_loss"]
    h.delete_cell(nb, "test_kd_kl")
    h.set_source(nb, "test_distillation_loss", "assert True")
    h.cell(nb, "test_kd_logit_grad").metadata.nbgrader["points"] = 100
    return {**l1, **l2, **l3}


# The exercises the tampered hand-in fails (the rest keep full marks), what the one whose test cell claims 100
# points scores (the gradebook's points), and the test cells that must come back with their hidden tests.
TAMPERED_FAILS = {"softmax_t", "class_similarity", "kd_kl"}
TAMPERED_POINTS = {"kd_logit_grad": (2.0, 2.0)}
TAMPERED_RESTORED = [("01_softmax_temperature", "test_entropy"), ("03_kd_loss", "test_kd_kl"),
                     ("03_kd_loss", "test_distillation_loss"), ("02_dark_knowledge", "test_class_similarity")]

# Wrong answers the released notebook's visible checks catch: ({exercise: wrong label}, words the message holds).
VISIBLE_CHECKS = [({"softmax_t": "bug 10: softmax over the batch dimension"},
                   ["a batch of two rows", "expected", "got", "hint:"])]
