"""Part 2's answer bank (the interface: tests/answer_banks.py): wrong answers, wrappers, a tampered hand-in.

``WRONG[exercise]`` maps a label to the source of a wrong answer cell. Labels
``"bug N: ..."`` inject bug N of docs/course.md's list where it applies to the
exercise; the others are further plausible mistakes. Each is the solution with
the one mistake, so a failing test shows that the hidden tests catch that
mistake itself.
"""

from __future__ import annotations

from functools import partial

import nbgrader_harness as h
from answer_tools import course_bug, noisy  # noqa: F401 - part of this bank's interface
from answer_tools import edit as _edit, src as _src
from kdlab import course

ASSIGNMENT = "part2_mnist"
# {exercise: lesson} of part 2, in course order, from the course manifest (kdlab/course.json).
LESSON = course.lesson_of(ASSIGNMENT)
COUNT_ERRORS = '''
def count_errors(model, x, y):
    was_training = model.training
    model.eval()
    errors = 0
    try:
        with torch.no_grad():
            for start in range(0, len(x), 1000):
                logits = model(x[start:start + 1000])
                errors += int((logits.argmax(dim=-1) != y[start:start + 1000]).sum())
    finally:
        model.train(was_training)
    return errors
'''

JITTER = '''
def jitter(images, max_shift):
    if max_shift < 0:
        raise ValueError("max_shift must be >= 0")
    m = int(max_shift)
    if m == 0:
        return images.clone()
    b, _, h, w = images.shape
    padded = F.pad(images, (m, m, m, m))
    shifts = torch.randint(-m, m + 1, (b, 2))
    out = torch.empty_like(images)
    for i in range(b):
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        out[i] = padded[i, :, m - dy:m - dy + h, m - dx:m - dx + w]
    return out
'''

DISTILL_STEP = '''
def distill_step(student, x, y, teacher_logits, optimizer, T, alpha):
    student.train()
    teacher_logits = teacher_logits.detach()
    logits = student(x)
    log_q = F.log_softmax(logits / T, dim=-1)
    log_p = F.log_softmax(teacher_logits / T, dim=-1)
    soft = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean() * T * T
    hard = F.cross_entropy(logits, y)
    loss = alpha * soft + (1 - alpha) * hard
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
'''

TRAIN_DISTILLED = '''
def train_distilled(student, teacher_logits, data, epochs, T, alpha, lr=0.05, batch_size=128):
    x, y = data
    n = len(y)
    cached = teacher_logits.detach()
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)
    student.train()
    history = []
    for _ in range(epochs):
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            z = student(x[rows])
            soft = F.kl_div(F.log_softmax(z / T, dim=-1), F.log_softmax(cached[rows] / T, dim=-1),
                            reduction="batchmean", log_target=True)
            loss = alpha * T ** 2 * soft + (1 - alpha) * F.cross_entropy(z, y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        history.append(total / n)
    return history
'''

BIAS_SHIFT = '''
def bias_shift_for_class(student_logits, teacher_logits, cls):
    k = int((teacher_logits.argmax(dim=-1) == cls).sum())
    n = teacher_logits.shape[0]
    if k == 0 or k == n:
        raise ValueError("no rate to match")
    z = student_logits.detach().double()
    others = z.clone()
    others[:, cls] = float("-inf")
    margins = z[:, cls] - others.max(dim=-1).values
    ordered = torch.sort(margins, descending=True).values
    return float(-(ordered[k - 1] + ordered[k]) / 2)
'''

# The right answers that the wrong ones below are one edit away from.
BASES = {"count_errors": _src(COUNT_ERRORS), "jitter": _src(JITTER), "distill_step": _src(DISTILL_STEP),
         "train_distilled": _src(TRAIN_DISTILLED), "bias_shift_for_class": _src(BIAS_SHIFT)}

WRONG = {
    "count_errors": {
        "bug 8: the model is evaluated in training mode (dropout on)": _edit(COUNT_ERRORS, ("    model.eval()\n", "")),
        "bug 8: gradients are recorded (no torch.no_grad)": _edit(
            COUNT_ERRORS, ("with torch.no_grad():", "if True:")),
        "bug 10: argmax over the batch dimension": _edit(COUNT_ERRORS, ("argmax(dim=-1)", "argmax(dim=0)")),
        "counts the correct predictions": _edit(COUNT_ERRORS, ("!= y[start", "== y[start")),
        "returns a tensor": _edit(COUNT_ERRORS, ("errors += int((logits.argmax(dim=-1) != y[start:start + 1000]).sum())",
                                                 "errors = errors + (logits.argmax(dim=-1) != y[start:start + 1000]).sum()")),
        "returns the error rate": _edit(COUNT_ERRORS, ("    return errors", "    return errors / len(y)")),
        "leaves the model in eval mode": _edit(COUNT_ERRORS, ("model.train(was_training)", "model.eval()")),
        "one forward pass over all rows": _edit(COUNT_ERRORS, ("range(0, len(x), 1000)", "range(0, len(x), len(x))"),
                                                ("x[start:start + 1000]", "x[start:]"),
                                                ("y[start:start + 1000]", "y[start:]")),
    },
    "jitter": {
        "torch.roll wraps the border around": _src('''
            def jitter(images, max_shift):
                if max_shift < 0:
                    raise ValueError("max_shift must be >= 0")
                m = int(max_shift)
                shifts = torch.randint(-m, m + 1, (len(images), 2))
                return torch.stack([torch.roll(img, (int(dy), int(dx)), dims=(1, 2)) for img, (dy, dx) in zip(images, shifts)])
        '''),
        "one offset for the whole batch": _edit(JITTER, ("torch.randint(-m, m + 1, (b, 2))",
                                                         "torch.randint(-m, m + 1, (1, 2)).expand(b, 2)")),
        "offsets in -m..m-1 (randint's upper bound is exclusive)": _edit(JITTER, ("torch.randint(-m, m + 1, (b, 2))",
                                                                                   "torch.randint(-m, m, (b, 2))")),
        "offsets in 0..m only": _edit(JITTER, ("torch.randint(-m, m + 1, (b, 2))", "torch.randint(0, m + 1, (b, 2))")),
        "the same offset for rows and columns": _edit(JITTER, ("dy, dx = int(shifts[i, 0]), int(shifts[i, 1])",
                                                               "dy = dx = int(shifts[i, 0])")),
        "each channel shifted on its own": _edit(
            JITTER, ("        out[i] = padded[i, :, m - dy:m - dy + h, m - dx:m - dx + w]",
                     "        for c in range(images.shape[1]):\n"
                     "            dy, dx = (int(v) for v in torch.randint(-m, m + 1, (2,)))\n"
                     "            out[i, c] = padded[i, c, m - dy:m - dy + h, m - dx:m - dx + w]")),
        "rows and columns mixed up (only square images work)": _edit(
            JITTER, ("padded[i, :, m - dy:m - dy + h, m - dx:m - dx + w]", "padded[i, :, m - dy:m - dy + w, m - dx:m - dx + h]")),
        "changes the input in place": _edit(JITTER, ("    out = torch.empty_like(images)\n", "    out = images\n")),
        "numpy's generator (not reproducible with torch.manual_seed)": _edit(
            JITTER, ("shifts = torch.randint(-m, m + 1, (b, 2))",
                     "import numpy as np\n    shifts = np.random.randint(-m, m + 1, (b, 2))")),
        "a negative max_shift is not rejected": _edit(JITTER, ("    if max_shift < 0:\n        raise ValueError(\"max_shift must be >= 0\")\n", ""),
                                                      ("m = int(max_shift)", "m = abs(int(max_shift))")),
    },
    "distill_step": {
        "bug 1: probabilities instead of log-probabilities in the KL": _edit(
            DISTILL_STEP, ("(log_p - log_q)", "(log_p - log_q.exp())")),
        "bug 2: reduction='mean' divides by the classes too": _edit(
            DISTILL_STEP, ("soft = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean() * T * T",
                           "soft = F.kl_div(log_q, log_p, reduction='mean', log_target=True) * T * T")),
        "bug 3: the T^2 factor missing": _edit(DISTILL_STEP, (".mean() * T * T", ".mean()")),
        "bug 4: temperature on the teacher's side only": _edit(DISTILL_STEP, ("F.log_softmax(logits / T, dim=-1)",
                                                                               "F.log_softmax(logits, dim=-1)")),
        "bug 5: KL direction reversed": _edit(DISTILL_STEP, ("(log_p.exp() * (log_p - log_q))",
                                                              "(log_q.exp() * (log_q - log_p))")),
        "bug 6: alpha weights the hard term": _edit(DISTILL_STEP, ("alpha * soft + (1 - alpha) * hard",
                                                                    "(1 - alpha) * soft + alpha * hard")),
        "bug 7: cross-entropy on softened logits": _edit(DISTILL_STEP, ("F.cross_entropy(logits, y)",
                                                                         "F.cross_entropy(logits / T, y)")),
        "bug 8: gradients flow into the teacher (logits not detached)": _edit(
            DISTILL_STEP, ("    teacher_logits = teacher_logits.detach()\n", "")),
        "bug 9: a softmax by hand that overflows on large logits": _edit(
            DISTILL_STEP, ("    log_p = F.log_softmax(teacher_logits / T, dim=-1)",
                           "    e = torch.exp(teacher_logits / T)\n    log_p = torch.log(e / e.sum(dim=-1, keepdim=True))")),
        "bug 10: softmax over the batch dimension": _edit(
            DISTILL_STEP, ("F.log_softmax(logits / T, dim=-1)", "F.log_softmax(logits / T, dim=0)"),
            ("F.log_softmax(teacher_logits / T, dim=-1)", "F.log_softmax(teacher_logits / T, dim=0)")),
        "stale gradients: no zero_grad": _edit(DISTILL_STEP, ("    optimizer.zero_grad()\n", "")),
        "the student is left in eval mode": _edit(DISTILL_STEP, ("    student.train()\n", "")),
        "returns the loss tensor": _edit(DISTILL_STEP, ("return loss.item()", "return loss")),
        "returns the loss after the step": _edit(
            DISTILL_STEP, ("    return loss.item()", "    with torch.no_grad():\n"
                           "        z = student(x)\n"
                           "        after = alpha * T * T * F.kl_div(F.log_softmax(z / T, -1), log_p, reduction='batchmean', "
                           "log_target=True) + (1 - alpha) * F.cross_entropy(z, y)\n"
                           "    return after.item()")),
    },
    "train_distilled": {
        "bug 3: the T^2 factor missing": _edit(TRAIN_DISTILLED, ("alpha * T ** 2 * soft", "alpha * soft")),
        "bug 2: reduction='mean' divides by the classes too": _edit(TRAIN_DISTILLED, ('reduction="batchmean"',
                                                                                      'reduction="mean"')),
        "bug 5: KL direction reversed": _edit(
            TRAIN_DISTILLED, ("soft = F.kl_div(F.log_softmax(z / T, dim=-1), F.log_softmax(cached[rows] / T, dim=-1),",
                              "soft = F.kl_div(F.log_softmax(cached[rows] / T, dim=-1), F.log_softmax(z / T, dim=-1),")),
        "bug 6: alpha weights the hard term": _edit(
            TRAIN_DISTILLED, ("alpha * T ** 2 * soft + (1 - alpha) * F.cross_entropy(z, y[rows])",
                              "(1 - alpha) * T ** 2 * soft + alpha * F.cross_entropy(z, y[rows])")),
        "bug 7: cross-entropy on softened logits": _edit(TRAIN_DISTILLED, ("F.cross_entropy(z, y[rows])",
                                                                            "F.cross_entropy(z / T, y[rows])")),
        "bug 8: gradients flow into the cached teacher logits (not detached)": _edit(
            TRAIN_DISTILLED, ("cached = teacher_logits.detach()", "cached = teacher_logits")),
        "bug 9: a softmax by hand that overflows on large logits": _edit(
            TRAIN_DISTILLED, ("F.log_softmax(cached[rows] / T, dim=-1)",
                              "torch.log(torch.exp(cached[rows] / T) / torch.exp(cached[rows] / T).sum(-1, keepdim=True))")),
        "bug 10: softmax over the batch dimension": _edit(
            TRAIN_DISTILLED, ("F.log_softmax(z / T, dim=-1), F.log_softmax(cached[rows] / T, dim=-1)",
                              "F.log_softmax(z / T, dim=0), F.log_softmax(cached[rows] / T, dim=0)")),
        "the cached logits read by position, not with the shuffled rows (misaligned)": _edit(
            TRAIN_DISTILLED, ("F.log_softmax(cached[rows] / T", "F.log_softmax(cached[start:start + batch_size] / T")),
        "no shuffling (the rows in stored order every epoch)": _edit(TRAIN_DISTILLED, ("torch.randperm(n)",
                                                                                        "torch.arange(n)")),
        "stale gradients: no zero_grad": _edit(TRAIN_DISTILLED, ("            optimizer.zero_grad()\n", "")),
        "the student is not put in training mode (dropout stays off)": _edit(TRAIN_DISTILLED,
                                                                            ("    student.train()\n", "")),
        "one epoch whatever epochs says": _edit(TRAIN_DISTILLED, ("range(epochs)", "range(1)")),
        "the last, smaller batch dropped": _edit(TRAIN_DISTILLED, ("range(0, n, batch_size)",
                                                                   "range(0, n - batch_size + 1, batch_size)")),
        "the epoch's loss as the plain mean of its batch losses": _edit(
            TRAIN_DISTILLED, ("total += loss.item() * len(rows)", "total += loss.item() * batch_size")),
        "returns tensors, not floats": _edit(TRAIN_DISTILLED, ("total += loss.item() * len(rows)",
                                                               "total = total + loss.detach() * len(rows)")),
        "plain SGD, without the momentum": _edit(TRAIN_DISTILLED, ("lr=lr, momentum=0.9", "lr=lr")),
    },
    "bias_shift_for_class": {
        "bug 10: the teacher's argmax over the rows": _edit(BIAS_SHIFT, ("teacher_logits.argmax(dim=-1)",
                                                                         "teacher_logits.argmax(dim=0)")),
        "the difference of the mean logits": _src('''
            def bias_shift_for_class(student_logits, teacher_logits, cls):
                k = int((teacher_logits.argmax(dim=-1) == cls).sum())
                if k == 0 or k == teacher_logits.shape[0]:
                    raise ValueError("no rate to match")
                return float(teacher_logits[:, cls].mean() - student_logits[:, cls].detach().mean())
        '''),
        "the sign flipped": _edit(BIAS_SHIFT, ("return float(-(ordered", "return float((ordered")),
        "the k-th margin only, not the midpoint": _edit(BIAS_SHIFT, ("-(ordered[k - 1] + ordered[k]) / 2",
                                                                     "-ordered[k - 1] + 1e-6")),
        "off by one in the sorted margins": _edit(BIAS_SHIFT, ("-(ordered[k - 1] + ordered[k]) / 2",
                                                               "-(ordered[k] + ordered[k + 1]) / 2")),
        "the student's own rate instead of the teacher's": _edit(
            BIAS_SHIFT, ("k = int((teacher_logits.argmax(dim=-1) == cls).sum())",
                         "k = int((student_logits.argmax(dim=-1) == cls).sum())")),
        "no ValueError when the teacher never predicts the class": _edit(
            BIAS_SHIFT, ("    if k == 0 or k == n:\n        raise ValueError(\"no rate to match\")\n", "")),
        "returns a tensor": _edit(BIAS_SHIFT, ("return float(-(ordered[k - 1] + ordered[k]) / 2)",
                                               "return -(ordered[k - 1] + ordered[k]) / 2")),
    },
}

# Answers that are, or only call, kdlab's reference: they must earn nothing.
WRAPPERS = {
    "count_errors": ("import kdlab.train\n\ndef count_errors(model, x, y):\n"
                     "    return int(kdlab.train.evaluate(model, x, y, batch_size=1000)['test_errors'])"),
    "jitter": "from kdlab.data import jitter",
    "distill_step": _edit(DISTILL_STEP, ("    log_q = F.log_softmax(logits / T, dim=-1)\n", ""),
                          ("    log_p = F.log_softmax(teacher_logits / T, dim=-1)\n", ""),
                          ("    soft = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean() * T * T\n", ""),
                          ("    hard = F.cross_entropy(logits, y)\n", ""),
                          ("    loss = alpha * soft + (1 - alpha) * hard",
                           "    import kdlab.losses\n    loss = kdlab.losses.distillation_loss(logits, teacher_logits, y, T, alpha)")),
    "train_distilled": _edit(TRAIN_DISTILLED,
                             ("            soft = F.kl_div(F.log_softmax(z / T, dim=-1), F.log_softmax(cached[rows] / T, dim=-1),\n"
                              "                            reduction=\"batchmean\", log_target=True)\n", ""),
                             ("            loss = alpha * T ** 2 * soft + (1 - alpha) * F.cross_entropy(z, y[rows])",
                              "            import kdlab.losses\n"
                              "            loss = kdlab.losses.distillation_loss(z, cached[rows], y[rows], T, alpha)")),
    "bias_shift_for_class": "from kdlab.experiments.omitted_digit import bias_shift_for_class",
}

# The bugs of docs/course.md that apply to part 2's exercises: 1-10 in distill_step; 2, 3, 5-10 in
# train_distilled; 8 (eval mode, no gradients) and 10 (argmax over the batch) in count_errors; 10 in
# bias_shift_for_class.
APPLICABLE_BUGS = {bug.number for bug in course.bugs()}

_with_answers = partial(h.with_answers, ASSIGNMENT, LESSON)


def tampered() -> dict:
    """A hand-in whose test cells were edited, stripped of metadata, or deleted: ``{lesson: notebook}``."""
    nb4 = _with_answers({"count_errors": WRONG["count_errors"]["counts the correct predictions"]})["04_teacher"]
    h.set_source(nb4, "test_count_errors", "pass  # tests removed")
    h.delete_cell(nb4, "test_jitter")
    nb5 = _with_answers({"distill_step": WRONG["distill_step"]["bug 3: the T^2 factor missing"]})["05_distill"]
    test = h.cell(nb5, "test_distill_step")
    test.metadata.pop("nbgrader")
    test.source = 'print("looks fine")'
    nb6 = h.solution(ASSIGNMENT, "06_dark_knowledge_experiments")
    h.cell(nb6, "test_bias_shift_for_class").metadata.nbgrader["points"] = 100
    return {"04_teacher": nb4, "05_distill": nb5, "06_dark_knowledge_experiments": nb6}


# The exercises the tampered hand-in fails (the deleted test_jitter is put back and passes), what the one whose
# test cell claims 100 points scores (the gradebook's points), the test cells that come back with hidden tests.
TAMPERED_FAILS = {"count_errors", "distill_step"}
TAMPERED_POINTS = {"bias_shift_for_class": (2.0, 2.0)}
TAMPERED_RESTORED = [("04_teacher", "test_count_errors"), ("04_teacher", "test_jitter"),
                     ("05_distill", "test_distill_step")]

# Wrong answers the released notebook's visible checks catch: ({exercise: wrong label}, words the message holds).
# Exercise 2's checks name a loss bug, and send a misaligned cache of teacher logits back to the batch's rows.
VISIBLE_CHECKS = [({"distill_step": "bug 5: KL direction reversed"},
                   ["T = 4, alpha = 0.9", "expected", "got", "hint: your loss matches bug 5"]),
                  ({"train_distilled": "bug 6: alpha weights the hard term"}, ["hint: your loss matches bug 6"]),
                  ({"train_distilled": "the cached logits read by position, not with the shuffled rows (misaligned)"},
                   ["lr = 0", "own rows"])]
