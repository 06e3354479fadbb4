from dataclasses import replace

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from kdlab import data, models, train, zoo


def test_architectures_and_param_counts():
    # Hinton et al.'s nets: 784-1200-1200-10 and 784-800-800-10
    assert models.count_params(models.build("mlp-1200x2-dropout")) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 12010
    assert models.count_params(models.build("mlp-800x2")) == 784 * 800 + 800 + 800 * 800 + 800 + 8010
    assert models.count_params(models.build("mlp-30x2")) == 784 * 30 + 30 + 30 * 30 + 30 + 310
    x = torch.rand(3, 1, 28, 28)
    for arch in ("mlp-30x2", "mlp-1200x2-dropout", "cnn-small", "cnn-wide"):
        assert models.build(arch)(x).shape == (3, 10)
    with pytest.raises(ValueError, match="unknown architecture"):
        models.build("resnet")


def test_dropout_teacher_is_deterministic_in_eval_mode():
    m = models.build("mlp-1200x2-dropout").eval()
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(m(x), m(x))


def test_cnn_pools_before_its_relu_with_the_outputs_and_gradients_of_relu_then_pool():
    torch.manual_seed(0)
    cnn = models.build("cnn-small").eval()
    conv1, conv2 = cnn.features[0], cnn.features[3]

    def relu_then_pool(x):
        h = torch.nn.functional.max_pool2d(torch.relu(conv1(x)), 2)
        return cnn.head(torch.nn.functional.max_pool2d(torch.relu(conv2(h)), 2))

    x = torch.rand(8, 1, 28, 28)
    ours, reference = cnn(x), relu_then_pool(x)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    g_ours = torch.autograd.grad(ours.square().sum(), [conv1.weight, conv2.weight])
    g_ref = torch.autograd.grad(reference.square().sum(), [conv1.weight, conv2.weight])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [type(m).__name__ for m in cnn.features][:3] == ["Conv2d", "MaxPool2d", "ReLU"]


@pytest.fixture(scope="module")
def sample():
    return data.load("mnist", sample=True)


def test_training_learns_and_is_seeded(sample):
    def run(seed):
        torch.manual_seed(seed)
        m = models.build("mlp-100x2")
        h = train.train(m, sample, epochs=6, lr=0.1, seed=seed, progress=False)
        return m, h
    m1, h1 = run(0)
    _, h2 = run(0)
    assert h1.test_errors == h2.test_errors and h1.train_loss == h2.train_loss
    assert h1.test_errors[-1] < 200  # > 80% on 1,000 real test digits after 6 short epochs
    assert h1.train_loss[-1] < h1.train_loss[0]
    assert train.evaluate(m1, sample.x_test, sample.y_test)["test_errors"] == h1.test_errors[-1]


def test_distillation_keeps_teacher_frozen_in_eval_mode(sample):
    torch.manual_seed(0)
    teacher = models.build("mlp-1200x2-dropout")
    train.train(teacher, sample, epochs=1, progress=False)
    teacher.train()  # even if handed over in train mode...
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calls = []
    teacher.register_forward_hook(lambda mod, inp, out: calls.append((mod.training, out.requires_grad)))
    student = models.build("mlp-30x2")
    train.distill(student, teacher, sample, T=4.0, alpha=0.9, epochs=1, jitter=2, progress=False)
    assert calls and all(not training and not grad for training, grad in calls)  # eval mode, no graph
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_teacher_logits_cached_without_jitter(sample):
    teacher = models.build("mlp-30x2")
    calls = []
    teacher.register_forward_hook(lambda mod, inp, out: calls.append(len(inp[0])))
    train.distill(models.build("mlp-30x2"), teacher, sample, T=2.0, alpha=0.5, epochs=2, progress=False)
    assert sum(calls) == len(sample.y_train)  # one pass over the training set, for two epochs
    calls.clear()
    train.distill(models.build("mlp-30x2"), teacher, sample, T=2.0, alpha=0.5, epochs=2, jitter=2, progress=False)
    assert sum(calls) == 2 * len(sample.y_train)  # jittered batches: the teacher sees each one


def test_bad_settings_raise_clear_errors(sample):
    with pytest.raises(ValueError, match="temperature"):
        train.distill(models.build("mlp-30x2"), models.build("mlp-30x2"), sample, T=0)
    with pytest.raises(ValueError, match="alpha"):
        train.distill(models.build("mlp-30x2"), models.build("mlp-30x2"), sample, alpha=2)
    with pytest.raises(ValueError, match="optimizer"):
        train.train(models.build("mlp-30x2"), sample, optimizer="lbfgs", progress=False)


def test_zoo_trains_once_then_loads_from_cache(sample, isolated_cache):
    t1 = zoo.pretrained("mlp-teacher", sample, epochs=1, progress=False)
    files = list((isolated_cache / "kdlab" / "models").glob("*.pt"))
    assert len(files) == 1 and not t1.training
    t2 = zoo.pretrained("mlp-teacher", sample, epochs=1, progress=False)
    assert t2.metrics == t1.metrics
    x = sample.x_test[:5]
    assert torch.equal(t1(x), t2(x))
    files[0].write_bytes(b"corrupt")  # a broken cache entry is retrained, not fatal
    t3 = zoo.pretrained("mlp-teacher", sample, epochs=1, progress=False)
    assert t3.metrics == t1.metrics


def test_cached_teacher_views_match_the_teacher_on_the_same_jitter(sample):
    teacher = models.build("mlp-30x2").eval()
    calls = []
    teacher.register_forward_hook(lambda mod, inp, out: calls.append(len(inp[0])))
    h = train.distill(models.build("mlp-30x2"), teacher, sample, T=2.0, alpha=0.5, epochs=3, jitter=2,
                      teacher_views=2, progress=False)
    assert sum(calls) == 2 * len(sample.y_train)  # two views, computed once, reused for three epochs
    assert h.teacher_seconds > 0
    g = torch.Generator().manual_seed(0)
    shifts, logits = train.cache_teacher_views(teacher, sample.x_train[:50], 2, 3, g)
    assert shifts.shape == (3, 2, 50) and logits.shape == (3, 50, 10)
    for v in range(3):
        replay = teacher(data.jitter(sample.x_train[:50], 2, shifts=shifts[v]))
        assert torch.allclose(logits[v], replay, atol=1e-5)


# ----------------------------------------------------------------------------- the engine's other inputs

@pytest.fixture(scope="module")
def small(sample):
    return sample.subset(512, 200)


def run(data, seed=0, **kwargs):
    """A seeded mlp-30x2 trained for 2 epochs by the engine; its final weights."""
    torch.manual_seed(seed)
    model = models.build("mlp-30x2")
    kwargs = {"epochs": 2, "lr": 0.05, "batch_size": 64, "seed": seed, "progress": False, **kwargs}
    history = train.train(model, data, **kwargs)
    return [p.detach().clone() for p in model.parameters()], history


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_cached_teacher_logits_train_exactly_as_the_teacher_itself(small):
    torch.manual_seed(1)
    teacher = models.build("mlp-100x2").eval()
    logits = train.predict_logits(teacher, small.x_train)
    with_teacher, h1 = run(small, teacher=teacher, T=4.0, alpha=0.9)
    with_logits, h2 = run(small, teacher_logits=logits, T=4.0, alpha=0.9)
    assert same(with_teacher, with_logits) and h1.test_errors == h2.test_errors
    assert h2.teacher_seconds == 0.0 < h1.teacher_seconds


def test_a_label_mask_limits_the_cross_entropy_to_the_labeled_images(small):
    logits = 3 * torch.randn(len(small.y_train), 10, generator=torch.Generator().manual_seed(2))
    everyone = torch.ones(len(small.y_train), dtype=torch.bool)
    assert same(run(small, teacher_logits=logits, labeled=everyone)[0], run(small, teacher_logits=logits)[0])
    nobody = torch.zeros_like(everyone)
    assert same(run(small, teacher_logits=logits, labeled=nobody, alpha=1.0)[0],
                run(small, teacher_logits=logits, alpha=1.0)[0])       # no label at all: pure soft targets
    some = torch.arange(len(everyone)) % 5 == 0
    scrambled = replace(small, y_train=torch.where(some, small.y_train, (small.y_train + 3) % 10))
    assert same(run(small, teacher_logits=logits, labeled=some)[0],
                run(scrambled, teacher_logits=logits, labeled=some)[0])   # unlabeled rows' labels never read
    assert not same(run(small, teacher_logits=logits, labeled=some)[0], run(small, teacher_logits=logits)[0])


def test_batches_with_nothing_to_learn_from_are_skipped(small):
    labeled = torch.zeros(len(small.y_train), dtype=torch.bool)
    labeled[:5] = True
    g = torch.Generator().manual_seed(0)
    expected = sum(bool(labeled[idx].any()) for idx in data.batch_indices(len(labeled), 64, generator=g))
    steps = []
    handle = register_optimizer_step_post_hook(lambda *a: steps.append(1))
    try:
        run(small, labeled=labeled, epochs=1)
    finally:
        handle.remove()
    assert 0 < len(steps) == expected < -(-len(labeled) // 64)
    with pytest.raises(ValueError, match="nothing to learn from"):
        run(small, labeled=torch.zeros_like(labeled))


class Probe(torch.nn.Module):
    """An extra term with a parameter of its own, reading the student's first hidden layer."""

    layers = ("2",)

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen = []

    def forward(self, batch):
        hidden = batch.features["2"]
        self.seen.append((tuple(hidden.shape), len(batch.idx), tuple(batch.logits.shape)))
        return (self.scale * hidden).pow(2).mean()


def test_an_extra_term_reads_hidden_layers_and_its_parameters_train(small):
    probe = Probe()
    weights, _ = run(small, extra_loss=[probe], epochs=1)
    assert probe.seen and all(shape == (n, 30) and logits == (n, 10) for shape, n, logits in probe.seen)
    assert float(probe.scale.detach()) < 1.0 and not probe.training          # trained alongside, left in eval mode
    torch.manual_seed(0)
    model = models.build("mlp-30x2")
    assert all(not m._forward_hooks for m in model.modules())
    assert not same(weights, run(small, epochs=1)[0])
    plain = run(small, extra_loss=lambda batch: batch.logits.sum() * 0.0, epochs=1)[0]   # a plain callable
    assert all(torch.allclose(a, b) for a, b in zip(plain, run(small, epochs=1)[0]))


def test_epoch_callbacks_clip_and_warmup(small):
    calls = []
    _, history = run(small, epochs=3, evaluate_every_epoch=False, on_epoch_end=[lambda h: calls.append(list(h.epochs))])
    assert calls == [[1], [1, 2], [1, 2, 3]] and history.test_errors[:2] == [None, None]
    assert history.final_test_errors == history.test_errors[-1] is not None
    torch.manual_seed(0)
    start = [p.detach().clone() for p in models.build("mlp-30x2").parameters()]
    clipped, _ = run(small, epochs=1, clip=1e-6)
    assert max(float((a - b).abs().max()) for a, b in zip(clipped, start)) < 1e-4
    assert not same(run(small, warmup_steps=1)[0], run(small)[0])


def test_the_engine_rejects_inconsistent_inputs(small):
    teacher = models.build("mlp-30x2")
    logits = torch.zeros(len(small.y_train), 10)
    for kwargs, message in [(dict(teacher=teacher, teacher_logits=logits), "not both"),
                            (dict(teacher_logits=logits[:10]), "one row of logits per training image"),
                            (dict(teacher_logits=logits, jitter=2), "jitter"),
                            (dict(labeled=torch.ones(3, dtype=torch.bool)), "boolean mask"),
                            (dict(teacher_logits=logits, T=0), "temperature")]:
        with pytest.raises(ValueError, match=message):
            run(small, **kwargs)


def test_label_smoothing_is_the_smoothed_cross_entropy_and_only_without_a_teacher(small):
    torch.manual_seed(0)
    model = models.build("mlp-30x2")
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(small.x_train), small.y_train, label_smoothing=0.1)
        plain = torch.nn.functional.cross_entropy(model(small.x_train), small.y_train)
    # lr = 0: the weights never move, so the epoch's mean loss is the loss of the whole set
    history = train.train(model, small, label_smoothing=0.1, epochs=1, lr=0.0, batch_size=64, progress=False)
    assert history.train_loss[0] == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) > float(plain)   # the smoothed target charges for confidence
    assert same(run(small, label_smoothing=0.0)[0], run(small)[0])
    assert not same(run(small, label_smoothing=0.1)[0], run(small)[0])
    mask = torch.arange(len(small.y_train)) % 3 == 0
    assert not same(run(small, labeled=mask, label_smoothing=0.1)[0], run(small, labeled=mask)[0])
    for bad in (1.0, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="label_smoothing"):
            run(small, label_smoothing=bad)
    with pytest.raises(ValueError, match="label_smoothing"):
        run(small, teacher_logits=torch.zeros(len(small.y_train), 10), label_smoothing=0.1)


def test_a_zoo_recipe_with_label_smoothing_trains_with_it_under_its_own_key(sample, isolated_cache, monkeypatch):
    assert zoo.settings_of("cnn-teacher-ls")["label_smoothing"] == 0.1
    assert zoo.settings_of("cnn-teacher")["label_smoothing"] == 0.0
    assert zoo.settings_of("cnn-teacher", fast=True)["epochs"] == 1 == zoo.settings_of("cnn-teacher", epochs=1)["epochs"]
    data_ = sample.subset(512, 200)
    base = dict(arch="mlp-30x2", epochs=1, lr=0.05, batch_size=128, jitter=0)
    monkeypatch.setitem(zoo.RECIPES, "tiny", base)
    monkeypatch.setitem(zoo.RECIPES, "tiny-ls", {**base, "label_smoothing": 0.2})
    assert not zoo.cache_file("tiny-ls", data_).is_file()
    plain, smoothed = (zoo.pretrained(r, data_, progress=False) for r in ("tiny", "tiny-ls"))
    assert zoo.cache_file("tiny-ls", data_).is_file() and not zoo.cache_file("tiny-ls", data_, seed=1).is_file()
    names = sorted(f.name for f in (isolated_cache / "kdlab" / "models").glob("*.pt"))
    assert names == ["mnist-tiny-ls-mlp-30x2-e1-lr0.05-ls0.2-s0-n512.pt", "mnist-tiny-mlp-30x2-e1-lr0.05-s0-n512.pt"]
    torch.manual_seed(0)
    by_hand = models.build("mlp-30x2")
    train.train(by_hand, data_, epochs=1, lr=0.05, batch_size=128, label_smoothing=0.2, progress=False,
                evaluate_every_epoch=False)
    assert same(list(smoothed.parameters()), list(by_hand.parameters()))
    assert not same(list(plain.parameters()), list(by_hand.parameters()))
