"""Lessons 7 and 8's answer bank (the interface: tests/answer_banks.py): wrong answers, wrappers, a tampered hand-in.

(Data only: pytest collects no test here.) ``WRONG[exercise]`` maps a label to
the source of a wrong answer cell; each is the solution with one plausible
mistake. Labels ``"bug N: ..."`` inject bug N of docs/course.md's list where it
applies to feature losses (bug 8: gradients flowing into the teacher).
"""

from __future__ import annotations

import textwrap
from functools import partial

import nbgrader_harness as h
from answer_tools import course_bug, noisy  # noqa: F401 - part of this bank's interface
from answer_tools import src as _src
from kdlab import course

ASSIGNMENT = "part3_beyond"
# {exercise: lesson} of lessons 7 and 8, in course order, from the course manifest (kdlab/course.json);
# lesson 9's answers are in tests/lesson9_answers.py.
LESSON = {e.name: e.lesson for name in ("07_feature_distillation", "08_compress_for_deployment")
          for e in course.lesson(name).exercises}
# Of docs/course.md's bugs, 8 applies to the feature losses (the teacher's features not detached).
APPLICABLE_BUGS = {8}


def _hint(body: str) -> str:
    return "def hint_loss(student_features, teacher_features, regressor):\n" + textwrap.indent(_src(body), "    ")


def _map(body: str) -> str:
    return "def attention_map(features, p=2):\n" + textwrap.indent(_src(body), "    ")


def _at(body: str, signature: str = "student_features, teacher_features, p=2") -> str:
    return f"def attention_transfer_loss({signature}):\n" + textwrap.indent(_src(body), "    ")


def _size(body: str, header: str = "import io\nimport torch\n\n") -> str:
    return header + "def model_size_bytes(model):\n" + textwrap.indent(_src(body), "    ")


def _sparsity(body: str) -> str:
    return "import torch\nfrom torch import nn\n\ndef sparsity(model):\n" + textwrap.indent(_src(body), "    ")


SPARSITY_LOOP = '''
zeros, total = 0, 0
for module in model.modules():
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        zeros += int((module.weight == 0).sum())
        total += module.weight.numel()
return zeros / total
'''

def _rkd(body: str) -> str:
    return ("import torch\nimport torch.nn.functional as F\n\n"
            "def rkd_distance_loss(student_embeddings, teacher_embeddings):\n" + textwrap.indent(_src(body), "    "))


# The right potentials (each network's pair distances over their mean) and loss that most wrong answers edit.
RKD_POTENTIALS = '''
def potentials(e):
    i, j = torch.triu_indices(len(e), len(e), offset=1)
    d = (e[i] - e[j]).norm(dim=1)
    return d / d.mean()
'''
RKD_HUBER = "return F.huber_loss(potentials(student_embeddings), potentials(teacher_embeddings.detach()), delta=1.0)"


def _rkd_p(body: str, potentials: str = RKD_POTENTIALS) -> str:
    """rkd_distance_loss defining ``potentials`` (the right one unless given) and then ``body``."""
    return _rkd(_src(potentials) + "\n\n" + _src(body))


WRONG = {
    "hint_loss": {
        "bug 8: the teacher's features are not detached": _hint(
            "return ((regressor(student_features) - teacher_features) ** 2).mean()"),
        "the regressor applied to the teacher's side": _hint(
            "return ((student_features - regressor(teacher_features.detach())) ** 2).mean()"),
        "sum instead of mean": _hint(
            "return ((regressor(student_features) - teacher_features.detach()) ** 2).sum()"),
        "FitNets' 1/2 factor kept": _hint(
            "return 0.5 * ((regressor(student_features) - teacher_features.detach()) ** 2).mean()"),
        "summed per example, averaged over the batch": _hint('''
            d = (regressor(student_features) - teacher_features.detach()) ** 2
            return d.reshape(d.shape[0], -1).sum(dim=1).mean()'''),
        "absolute error (L1) instead of squared": _hint(
            "return (regressor(student_features) - teacher_features.detach()).abs().mean()"),
        "root of the mean squared error": _hint(
            "return ((regressor(student_features) - teacher_features.detach()) ** 2).mean().sqrt()"),
        "no gradient to the student (the regressor's output detached)": _hint(
            "return ((regressor(student_features).detach() - teacher_features.detach()) ** 2).mean()"),
        "the student's features detached (only the regressor learns)": _hint(
            "return ((regressor(student_features.detach()) - teacher_features.detach()) ** 2).mean()"),
        "assumes a 1x1 convolution (no padding)": _hint('''
            import torch.nn.functional as F
            guided = F.conv2d(student_features, regressor.weight, regressor.bias)
            return ((guided - teacher_features.detach()) ** 2).mean()'''),
    },
    "attention_map": {
        "no absolute value before the power": _map('''
            a = features.pow(p).sum(dim=1).flatten(1)
            return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)'''),
        "power of the channel sum, |sum_c A_c|^p": _map('''
            a = features.sum(dim=1).abs().pow(p).flatten(1)
            return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)'''),
        "not normalised": _map("return features.abs().pow(p).sum(dim=1).flatten(1)"),
        "normalised to sum 1 (L1) instead of unit L2 norm": _map('''
            a = features.abs().pow(p).sum(dim=1).flatten(1)
            return a / a.sum(dim=1, keepdim=True).clamp_min(1e-12)'''),
        "like bug 10: normalised over the whole batch, not per image": _map('''
            a = features.abs().pow(p).sum(dim=1).flatten(1)
            return a / a.norm().clamp_min(1e-12)'''),
        "normalised over the batch dimension (dim=0)": _map('''
            a = features.abs().pow(p).sum(dim=1).flatten(1)
            return a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)'''),
        "NaN for an all-zero feature map (no guard)": _map('''
            a = features.abs().pow(p).sum(dim=1).flatten(1)
            return a / a.norm(dim=1, keepdim=True)'''),
        "the p-th root taken (a p-norm over channels)": _map('''
            a = features.abs().pow(p).sum(dim=1).pow(1 / p).flatten(1)
            return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)'''),
        "max over channels instead of the sum": _map('''
            a = features.abs().pow(p).amax(dim=1).flatten(1)
            return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)'''),
        "not flattened: (N, H, W)": _map('''
            a = features.abs().pow(p).sum(dim=1)
            return a / a.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)'''),
        "p ignored (always squares)": _map('''
            a = features.pow(2).sum(dim=1).flatten(1)
            return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)'''),
        "the default p is 1": _map('''
            a = features.abs().pow(p).sum(dim=1).flatten(1)
            return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)''').replace("p=2", "p=1"),
        "no gradient (computed under no_grad)": _map('''
            with torch.no_grad():
                a = features.abs().pow(p).sum(dim=1).flatten(1)
                return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)'''),
        "sums over the wrong dimension (height instead of channels)": _map('''
            a = features.abs().pow(p).sum(dim=2).flatten(1)
            return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)'''),
        "flattens columns first (transposed H and W)": _map('''
            a = features.abs().pow(p).sum(dim=1).transpose(1, 2).flatten(1)
            return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)'''),
    },
    "attention_transfer_loss": {
        "bug 8: the teacher's features are not detached": _at('''
            q_s = attention_map(student_features, p)
            q_t = attention_map(teacher_features, p)
            return ((q_s - q_t) ** 2).sum(dim=1).mean()'''),
        "the authors' .mean() (also divides by H*W)": _at('''
            q_s = attention_map(student_features, p)
            q_t = attention_map(teacher_features.detach(), p)
            return ((q_s - q_t) ** 2).mean()'''),
        "the unsquared norm": _at('''
            q_s = attention_map(student_features, p)
            q_t = attention_map(teacher_features.detach(), p)
            return (q_s - q_t).norm(dim=1).mean()'''),
        "summed over the batch instead of averaged": _at('''
            q_s = attention_map(student_features, p)
            q_t = attention_map(teacher_features.detach(), p)
            return ((q_s - q_t) ** 2).sum()'''),
        "maps not normalised (computed inline)": _at('''
            q_s = student_features.pow(p).sum(dim=1).flatten(1)
            q_t = teacher_features.detach().pow(p).sum(dim=1).flatten(1)
            return ((q_s - q_t) ** 2).sum(dim=1).mean()'''),
        "p not passed on to the maps": _at('''
            q_s = attention_map(student_features)
            q_t = attention_map(teacher_features.detach())
            return ((q_s - q_t) ** 2).sum(dim=1).mean()'''),
        "the default p is 1": _at('''
            q_s = attention_map(student_features, p)
            q_t = attention_map(teacher_features.detach(), p)
            return ((q_s - q_t) ** 2).sum(dim=1).mean()''', "student_features, teacher_features, p=1"),
        "the raw features compared (mean squared difference of channel means)": _at('''
            return ((student_features.mean(dim=1) - teacher_features.detach().mean(dim=1)) ** 2).sum(dim=(1, 2)).mean()'''),
        "KL divergence between softmaxed maps": _at('''
            import torch.nn.functional as F
            q_s = attention_map(student_features, p)
            q_t = attention_map(teacher_features.detach(), p)
            return F.kl_div(F.log_softmax(q_s, dim=1), F.softmax(q_t, dim=1), reduction="batchmean")'''),
    },
    "rkd_distance_loss": {
        "bug 8: the teacher's embeddings are not detached": _rkd_p(
            "return F.huber_loss(potentials(student_embeddings), potentials(teacher_embeddings), delta=1.0)"),
        "distances not divided by their mean": _rkd_p(RKD_HUBER, RKD_POTENTIALS.replace("d / d.mean()", "d")),
        "both sides divided by the teacher's mean distance": _rkd('''
            def distances(e):
                i, j = torch.triu_indices(len(e), len(e), offset=1)
                return (e[i] - e[j]).norm(dim=1)

            d_s, d_t = distances(student_embeddings), distances(teacher_embeddings.detach())
            return F.huber_loss(d_s / d_t.mean(), d_t / d_t.mean(), delta=1.0)'''),
        "divided by the largest distance instead of the mean": _rkd_p(
            RKD_HUBER, RKD_POTENTIALS.replace("d / d.mean()", "d / d.max()")),
        "squared distances": _rkd_p(
            RKD_HUBER, RKD_POTENTIALS.replace("(e[i] - e[j]).norm(dim=1)", "((e[i] - e[j]) ** 2).sum(dim=1)")),
        "the authors' mean over all N^2 entries of the distance matrix (the diagonal's zeros counted)": _rkd('''
            def potentials(e):
                d = (e[:, None] - e[None]).norm(dim=2)
                return d / d[d > 0].mean()

            ''' + RKD_HUBER),
        "the mean distance taken over all N^2 entries (the diagonal's zeros counted)": _rkd('''
            def potentials(e):
                d = (e[:, None] - e[None]).norm(dim=2)
                i, j = torch.triu_indices(len(e), len(e), offset=1)
                return d[i, j] / d.mean()

            ''' + RKD_HUBER),
        "each row divided by its own mean (per example, not per batch)": _rkd('''
            def potentials(e):
                n = len(e)
                d = (e[:, None] - e[None]).norm(dim=2)
                d = d / (d.sum(dim=1, keepdim=True) / (n - 1))
                i, j = torch.triu_indices(n, n, offset=1)
                return d[i, j]

            ''' + RKD_HUBER),
        "mean squared error instead of the Huber loss": _rkd_p(
            "return F.mse_loss(potentials(student_embeddings), potentials(teacher_embeddings.detach()))"),
        "x^2 / 2 everywhere (no linear part beyond 1)": _rkd_p('''
            diff = potentials(student_embeddings) - potentials(teacher_embeddings.detach())
            return (0.5 * diff ** 2).mean()'''),
        "absolute error (L1) instead of the Huber loss": _rkd_p(
            "return F.l1_loss(potentials(student_embeddings), potentials(teacher_embeddings.detach()))"),
        "summed over the pairs instead of averaged": _rkd_p(RKD_HUBER.replace("delta=1.0", "delta=1.0, reduction='sum'")),
        "Huber loss with delta 0.5": _rkd_p(RKD_HUBER.replace("delta=1.0", "delta=0.5")),
        "the student's mean distance detached": _rkd_p(RKD_HUBER, RKD_POTENTIALS.replace("d / d.mean()",
                                                                                          "d / d.mean().detach()")),
        "sqrt of the summed squares on the whole matrix (NaN gradient from the diagonal)": _rkd('''
            def potentials(e):
                d = ((e[:, None] - e[None]) ** 2).sum(dim=2).sqrt()
                i, j = torch.triu_indices(len(e), len(e), offset=1)
                return d[i, j] / d[i, j].mean()

            ''' + RKD_HUBER),
        "sqrt of the summed squares over the pairs (NaN gradient when two embeddings coincide)": _rkd_p(
            RKD_HUBER, RKD_POTENTIALS.replace("(e[i] - e[j]).norm(dim=1)", "((e[i] - e[j]) ** 2).sum(dim=1).sqrt()")),
        "cosine similarities instead of distances": _rkd('''
            def potentials(e):
                e = F.normalize(e, dim=1)
                i, j = torch.triu_indices(len(e), len(e), offset=1)
                return (e[i] * e[j]).sum(dim=1)

            ''' + RKD_HUBER),
    },
    "model_size_bytes": {
        "4 bytes per parameter": _size("return 4 * sum(p.numel() for p in model.parameters())"),
        "bytes of every state_dict tensor (no headers)": _size(
            "return sum(t.numel() * t.element_size() for t in model.state_dict().values())"),
        "the whole module pickled (torch.save(model))": _size('''
            buffer = io.BytesIO()
            torch.save(model, buffer)
            return len(buffer.getvalue())'''),
        "sys.getsizeof of the state_dict": _size("import sys\nreturn sys.getsizeof(model.state_dict())"),
        "parameters only (buffers left out)": _size('''
            buffer = io.BytesIO()
            torch.save(dict(model.named_parameters()), buffer)
            return len(buffer.getvalue())'''),
        "saved to a temporary file (its name changes the count)": _size('''
            import os, tempfile
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model_checkpoint.pt")
                torch.save(model.state_dict(), path)
                return os.path.getsize(path)'''),
        "returns kilobytes": _size('''
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            return len(buffer.getvalue()) / 1024'''),
        "converts the model to float32 first (changes the model)": _size('''
            buffer = io.BytesIO()
            torch.save(model.float().state_dict(), buffer)
            return len(buffer.getvalue())'''),
    },
    "sparsity": {
        "counts zeros in parameters() (weight_orig when pruned, biases too)": _sparsity('''
            params = [p for p in model.parameters()]
            return sum(int((p == 0).sum()) for p in params) / sum(p.numel() for p in params)'''),
        "parameters named weight (weight_orig and BatchNorm missed or counted)": _sparsity('''
            ws = [p for n, p in model.named_parameters() if n.endswith("weight")]
            return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)'''),
        "includes the biases": _sparsity('''
            zeros, total = 0, 0
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    for t in (module.weight, module.bias):
                        if t is not None:
                            zeros += int((t == 0).sum())
                            total += t.numel()
            return zeros / total'''),
        "mean of the per-layer fractions": _sparsity('''
            fractions = [float((m.weight == 0).float().mean()) for m in model.modules()
                         if isinstance(m, (nn.Linear, nn.Conv2d))]
            return sum(fractions) / len(fractions)'''),
        "near-zero weights counted as zero": _sparsity(SPARSITY_LOOP.replace(
            "(module.weight == 0)", "(module.weight.abs() < 1e-6)")),
        "the fraction of non-zero weights": _sparsity(SPARSITY_LOOP.replace("return zeros / total",
                                                                             "return 1 - zeros / total")),
        "a percentage": _sparsity(SPARSITY_LOOP.replace("return zeros / total", "return 100 * zeros / total")),
        "Linear layers only (convolutions missed)": _sparsity(SPARSITY_LOOP.replace("(nn.Linear, nn.Conv2d)",
                                                                                    "nn.Linear")),
        "every module with a weight (BatchNorm counted)": _sparsity(SPARSITY_LOOP.replace(
            "isinstance(module, (nn.Linear, nn.Conv2d))", "isinstance(getattr(module, 'weight', None), torch.Tensor)")),
        "removes the pruning masks (changes the model)": _sparsity('''
            from torch.nn.utils import prune
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)) and prune.is_pruned(module):
                    prune.remove(module, "weight")
''' + SPARSITY_LOOP),
        "the number of zeros, not a fraction": _sparsity(SPARSITY_LOOP.replace("return zeros / total", "return zeros")),
    },
}


# Answers that are, or only call, kdlab's reference: they must earn nothing.
WRAPPERS = {
    "hint_loss": "from kdlab.features import hint_loss",
    "attention_map": ("from kdlab import features as _f\n\n"
                      "def attention_map(features, p=2):\n    return _f.attention_map(features, p)"),
    "attention_transfer_loss": ("import kdlab.features\n\n"
                                "def attention_transfer_loss(student_features, teacher_features, p=2):\n"
                                "    return kdlab.features.attention_transfer_loss(student_features, teacher_features, p) + 0.0"),
    "rkd_distance_loss": "from kdlab.features import rkd_distance_loss",
    "model_size_bytes": "from kdlab.compress import model_size_bytes",
    "sparsity": ("from kdlab.compress import sparsity as _s\n\n"
                 "def sparsity(model):\n    return float(_s(model))"),
}

# Right answers written differently: they must keep their points.
RIGHT = {
    "rkd_distance_loss": {
        "torch.pdist and F.smooth_l1_loss": _rkd('''
            s, t = torch.pdist(student_embeddings), torch.pdist(teacher_embeddings.detach())
            return F.smooth_l1_loss(s / s.mean(), t / t.mean())'''),
        "cdist without its diagonal, the ordered pairs, Huber by hand": _rkd('''
            off = ~torch.eye(len(student_embeddings), dtype=torch.bool)

            def potentials(e):
                d = torch.cdist(e, e)[off]
                return d / d.mean()

            x = potentials(student_embeddings) - potentials(teacher_embeddings.detach())
            return torch.where(x.abs() <= 1, 0.5 * x ** 2, x.abs() - 0.5).mean()'''),
        "a loop over the pairs": _rkd('''
            t = teacher_embeddings.detach()
            d_s, d_t = [], []
            for i in range(len(t)):
                for j in range(i + 1, len(t)):
                    d_s.append(torch.linalg.vector_norm(student_embeddings[i] - student_embeddings[j]))
                    d_t.append(torch.linalg.vector_norm(t[i] - t[j]))
            d_s, d_t = torch.stack(d_s), torch.stack(d_t)
            return F.huber_loss(d_s / d_s.mean(), d_t / d_t.mean(), delta=1.0)'''),
    },
}

# The right answers that sparsity's and rkd_distance_loss's wrong ones edit.
BASES = {"sparsity": _sparsity(SPARSITY_LOOP), "rkd_distance_loss": _rkd_p(RKD_HUBER)}

# More wrong hand-ins: every exercise wrong at once, with its first listed wrong answer, then with its last.
WRONG_HANDINS = [{e: next(iter(variants)) for e, variants in WRONG.items()},
                 {e: list(variants)[-1] for e, variants in WRONG.items()}]

_with_answers = partial(h.with_answers, ASSIGNMENT, LESSON)


def tampered() -> dict:
    """A hand-in whose test cells were edited, stripped of metadata, or deleted: ``{lesson: notebook}``."""
    l7 = _with_answers({"hint_loss": WRONG["hint_loss"]["sum instead of mean"],
                        "attention_map": WRONG["attention_map"]["not normalised"]})
    nb = l7["07_feature_distillation"]
    h.set_source(nb, "test_hint_loss", "pass  # tests removed")
    h.delete_cell(nb, "test_attention_map")
    h.cell(nb, "test_attention_transfer_loss").metadata.nbgrader["points"] = 100
    l8 = _with_answers({"sparsity": WRONG["sparsity"]["includes the biases"]})
    nb = l8["08_compress_for_deployment"]
    test = h.cell(nb, "test_sparsity")
    test.metadata.pop("nbgrader")
    test.source = 'print("looks fine")'
    return {**l7, **l8}


# The exercises the tampered hand-in fails (the rest keep full marks), what the one whose test cell claims 100
# points scores (the gradebook's points), and the test cells that must come back with their hidden tests.
TAMPERED_FAILS = {"hint_loss", "attention_map", "sparsity"}
TAMPERED_POINTS = {"attention_transfer_loss": (2.0, 2.0)}
TAMPERED_RESTORED = [("07_feature_distillation", "test_hint_loss"), ("07_feature_distillation", "test_attention_map"),
                     ("08_compress_for_deployment", "test_sparsity")]

# Wrong answers the released notebook's visible checks catch: ({exercise: wrong label}, words the message holds).
VISIBLE_CHECKS = [({"attention_transfer_loss": "the authors' .mean() (also divides by H*W)"},
                   ["student (2, 3, 4, 4)", "expected", "got", "hint:"]),
                  ({"rkd_distance_loss": "distances not divided by their mean"},
                   ["a 3-4-5 triangle", "expected", "got", "hint:"]),
                  ({"model_size_bytes": "4 bytes per parameter"}, ["a small MLP", "io.BytesIO"])]
