"""kdlab.features (hints, attention transfer, hooks) and kdlab.compress (size, int8, pruning, latency)."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab import compress, features
from kdlab.data import Dataset
from kdlab.models import build


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- features

def test_attention_map_is_the_normalized_channel_sum_of_abs_powers():
    a = rand(3, 5, 4, 6)
    for p in (1, 2, 3, 4):
        q = features.attention_map(a, p)
        raw = a.abs().pow(p).sum(1).reshape(3, -1)
        assert q.shape == (3, 24)
        assert torch.allclose(q, raw / raw.norm(dim=1, keepdim=True), atol=1e-6)
        assert torch.allclose(q.norm(dim=1), torch.ones(3))


def test_attention_map_ignores_channel_order_and_scale_and_survives_zeros():
    a = rand(2, 6, 3, 3)
    q = features.attention_map(a)
    assert torch.allclose(features.attention_map(a[:, torch.randperm(6)] * 7.0), q, atol=1e-6)
    zero = features.attention_map(torch.zeros(2, 4, 3, 3))
    assert torch.equal(zero, torch.zeros(2, 9))
    with pytest.raises(ValueError):
        features.attention_map(rand(4, 9))
    with pytest.raises(ValueError):
        features.attention_map(a, p=0)


def test_attention_transfer_loss_definition_and_gradients():
    s = rand(4, 3, 5, 5, seed=1).requires_grad_(True)
    t = rand(4, 8, 5, 5, seed=2).requires_grad_(True)   # channel counts may differ
    loss = features.attention_transfer_loss(s, t)
    qs, qt = features.attention_map(s), features.attention_map(t)
    assert torch.allclose(loss, ((qs - qt) ** 2).sum(1).mean())
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None                                 # the teacher is a fixed target
    assert float(features.attention_transfer_loss(t.detach(), t.detach() * 3)) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError):
        features.attention_transfer_loss(rand(2, 3, 5, 5), rand(2, 3, 4, 4))


def test_hint_loss_is_the_mse_through_the_regressor():
    s = rand(2, 3, 4, 4, seed=3).requires_grad_(True)
    t = rand(2, 6, 4, 4, seed=4).requires_grad_(True)
    reg = features.make_regressor(3, 6)
    loss = features.hint_loss(s, t, reg)
    assert torch.allclose(loss, F.mse_loss(reg(s), t))
    loss.backward()
    assert s.grad is not None and reg.weight.grad is not None and t.grad is None
    with pytest.raises(ValueError):
        features.hint_loss(s, rand(2, 5, 4, 4), reg)


def test_capture_records_outputs_and_removes_its_hooks():
    model = build("cnn-small").eval()
    x = rand(2, 1, 28, 28)
    with features.capture(model, features.CNN_BLOCKS) as feats:
        logits = model(x)
    assert feats["features.2"].shape == (2, 32, 14, 14) and feats["features.5"].shape == (2, 64, 7, 7)
    assert all(not m._forward_hooks for m in model.modules())
    assert torch.equal(features.forward_with_features(model, x)[0], logits)
    with pytest.raises(ValueError, match="no layer"):
        features.capture(model, ["nope"])


def test_features_upto_stops_early_and_matches_the_full_pass():
    model = build("cnn-small").eval()
    x = rand(2, 1, 28, 28)
    later = []
    handle = model.features[5].register_forward_hook(lambda *a: later.append(1))
    out = features.features_upto(model, x, "features.2")
    handle.remove()
    assert later == []                                    # block 2 never ran
    _, (block1, _) = features.forward_with_features(model, x)
    assert torch.equal(out, block1)
    assert all(not m._forward_hooks for m in model.modules())


def test_student_blocks_match_the_teacher_spatially():
    teacher, student = build("cnn-small"), features.cnn_student()
    assert features.block_channels(teacher) == [32, 64]
    assert features.block_channels(student) == [8, 16]
    assert features.block_channels(student.train()) == [8, 16] and student.training


def test_teacher_targets_are_the_logits_and_maps_of_the_teacher():
    teacher = build("cnn-small").train()
    x = rand(7, 1, 28, 28)
    targets = features.teacher_targets(teacher, x, batch_size=3)
    assert teacher.training                              # mode restored
    teacher.eval()
    logits, feats = features.forward_with_features(teacher, x)
    assert torch.allclose(targets["logits"], logits, atol=1e-5)
    for name, f in zip(features.CNN_BLOCKS, feats):
        assert torch.allclose(targets["at"][name], features.attention_map(f), atol=1e-5)


def tiny_data(n=256, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset("tiny", x, y, x[:64], y[:64], "random", [str(i) for i in range(10)])


@pytest.mark.parametrize("method", list(features.METHODS))
def test_feature_distill_trains_every_method_and_leaves_the_teacher_alone(method):
    torch.manual_seed(0)
    teacher = build("cnn-small").eval()
    before = copy.deepcopy(teacher.state_dict())
    torch.manual_seed(1)
    student = features.cnn_student()
    history = features.feature_distill(student, teacher, tiny_data(), epochs=1, batch_size=64, progress=False,
                                       device="cpu", **features.METHODS[method])
    assert history.epochs == [1] and isinstance(history.final_test_errors, int)
    assert all(torch.isfinite(torch.tensor(history.train_loss)))
    assert not teacher.training and not student.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(not m._forward_hooks for m in list(teacher.modules()) + list(student.modules()))


def test_feature_distill_needs_a_teacher_for_teacher_terms():
    with pytest.raises(ValueError):
        features.feature_distill(features.cnn_student(), None, tiny_data(), at=True, progress=False)


def test_the_feature_terms_are_the_reference_losses_on_the_batch():
    from kdlab.train import Batch

    torch.manual_seed(0)
    teacher, student = build("cnn-small").eval(), features.cnn_student().eval()
    x = rand(6, 1, 28, 28, seed=5)
    idx = torch.tensor([4, 0, 2, 5, 1, 3])
    logits, (s1, s2) = features.forward_with_features(student, x[idx])
    _, (t1, t2) = features.forward_with_features(teacher, x[idx])
    batch = Batch(x[idx], torch.zeros(6, dtype=torch.long), idx, logits, {"features.2": s1, "features.5": s2})
    reg = features.make_regressor(8, 32)
    hint = features.HintTerm(teacher, reg, "features.2", weight=0.5)
    assert hint.layers == ("features.2",) and list(hint.parameters()) == list(reg.parameters())  # not the teacher's
    assert torch.allclose(hint(batch), 0.5 * features.hint_loss(s1, t1, reg))
    maps = features.teacher_targets(teacher, x)["at"]
    at = features.AttentionTerm(maps, weight=2.0)
    assert at.layers == features.CNN_BLOCKS
    want = 2.0 * (features.attention_transfer_loss(s1, t1) + features.attention_transfer_loss(s2, t2))
    assert torch.allclose(at(batch), want, atol=1e-6)


# ----------------------------------------------------------------------------- compress: size

def small_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def test_model_size_bytes_is_the_in_memory_checkpoint():
    m = small_mlp()
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)
    assert compress.model_size_bytes(m) == len(buffer.getvalue())
    n = sum(p.numel() for p in m.parameters())
    assert 4 * n < compress.model_size_bytes(m) < 4 * n + 4096


def test_int8_quantization_shrinks_quietly_and_keeps_outputs_close():
    m = small_mlp().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = compress.quantize_int8(m)
    assert caught == []
    assert not any(isinstance(x, nn.Linear) for x in q.modules())
    assert any(isinstance(x, nn.Linear) for x in m.modules())   # the original is untouched
    x = torch.rand(8, 1, 28, 28)
    assert (q(x) - m(x)).abs().max() < 0.05
    assert compress.model_size_bytes(q) < 0.3 * compress.model_size_bytes(m)


def test_global_magnitude_pruning_hits_the_amount_and_fine_tuning_keeps_the_zeros():
    m = small_mlp()
    compress.magnitude_prune(m, 0.8)
    assert compress.sparsity(m) == pytest.approx(0.8, abs=1e-4)
    clone = copy.deepcopy(m)    # a freshly pruned model copies, masks and all; the copy keeps its zeros and
    opt = torch.optim.SGD(clone.parameters(), lr=0.1)   # trains apart from the original
    F.cross_entropy(clone(torch.rand(16, 1, 28, 28)), torch.randint(0, 10, (16,))).backward()
    opt.step()
    assert torch.equal(clone[1].weight_mask, m[1].weight_mask) and compress.sparsity(clone) == compress.sparsity(m)
    assert not torch.equal(clone[1].weight_orig, m[1].weight_orig)
    # the smallest weights went: every survivor is at least as large as every pruned weight
    everything = torch.cat([l.weight_orig.detach().abs().flatten() for l in (m[1], m[3])])
    kept = torch.cat([l.weight.detach().abs().flatten() for l in (m[1], m[3])]) > 0
    assert everything[kept].min() >= everything[~kept].max()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for step in range(3):
        loss = F.cross_entropy(m(torch.rand(16, 1, 28, 28)), torch.randint(0, 10, (16,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert compress.sparsity(m) == pytest.approx(0.8, abs=1e-4)
    assert compress.model_size_bytes(m) > 1.9 * compress.model_size_bytes(small_mlp())   # masks attached
    compress.finalize_pruning(m)
    assert not hasattr(m[1], "weight_orig") and compress.sparsity(m) == pytest.approx(0.8, abs=1e-4)
    # dense again: exactly as many floats as before (the key order, hence the zip padding, may differ)
    assert abs(compress.model_size_bytes(m) - compress.model_size_bytes(small_mlp())) < 256


def test_layerwise_pruning_and_bad_arguments():
    m = small_mlp()
    compress.magnitude_prune(m, 0.5, scope="layer")
    for layer in (m[1], m[3]):
        assert float((layer.weight == 0).float().mean()) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError):
        compress.magnitude_prune(small_mlp(), 1.0)
    with pytest.raises(ValueError):
        compress.magnitude_prune(small_mlp(), 0.5, scope="row")
    with pytest.raises(ValueError):
        compress.magnitude_prune(nn.ReLU(), 0.5)


def test_sparsity_counts_linear_and_conv_weights_only():
    conv, lin, bn = nn.Conv2d(1, 2, 3), nn.Linear(4, 2), nn.BatchNorm1d(2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[0] = 0.0          # 9 of 18 zero
        lin.weight.fill_(2.0)         # 0 of 8 zero
        lin.bias.zero_()
        bn.weight.zero_()
    model = nn.Sequential(conv, nn.Flatten(), lin, bn)
    assert compress.sparsity(model) == pytest.approx(9 / 26)
    q = compress.quantize_int8(compress.finalize_pruning(compress.magnitude_prune(small_mlp(), 0.6)))
    assert compress.sparsity(q) >= 0.6    # int8 keeps the zeros (zero point 0) and may round a few more


@pytest.mark.parametrize("numel", [1, 7, 8, 9, 1000])
def test_bit_packing_round_trips(numel):
    mask = torch.rand(numel, generator=torch.Generator().manual_seed(numel)) > 0.5
    packed = compress._pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (numel + 7) // 8
    assert torch.equal(compress._unpack_bits(packed, numel), mask)


def compressed_variants():
    dense = small_mlp(1).eval()
    pruned = compress.finalize_pruning(compress.magnitude_prune(copy.deepcopy(dense), 0.8))
    return {"dense": (dense, small_mlp(2)), "pruned": (pruned, small_mlp(2)),
            "int8": (compress.quantize_int8(dense), compress.quantize_int8(small_mlp(2))),
            "pruned int8": (compress.quantize_int8(pruned), compress.quantize_int8(small_mlp(2)))}


@pytest.mark.parametrize("name", ["dense", "pruned", "int8", "pruned int8"])
def test_compact_storage_round_trips_exactly_through_a_file(name):
    model, template = compressed_variants()[name]
    buffer = io.BytesIO()
    torch.save(compress.compact_state(model), buffer)
    assert buffer.getbuffer().nbytes == compress.compact_size_bytes(model)
    buffer.seek(0)
    restored = compress.restore_compact(template, torch.load(buffer, weights_only=True))
    x = torch.rand(16, 1, 28, 28)
    assert torch.equal(restored(x), model(x))


def test_compact_storage_pays_off_only_with_zeros():
    v = compressed_variants()
    dense, pruned, int8, both = (v[k][0] for k in ("dense", "pruned", "int8", "pruned int8"))
    assert abs(compress.compact_size_bytes(dense) - compress.model_size_bytes(dense)) < 1024
    n = 784 * 64 + 64 * 10
    assert compress.compact_size_bytes(pruned) < n / 8 + 0.2 * 4 * n + 4096
    assert compress.compact_size_bytes(both) < n / 8 + 0.2 * n + 4096
    assert compress.compact_size_bytes(both) < compress.compact_size_bytes(int8) < compress.compact_size_bytes(dense)


def test_a_compact_state_must_fit_its_template():
    model, _ = compressed_variants()["pruned"]
    with pytest.raises(ValueError):
        compress.restore_compact(nn.Sequential(nn.Flatten(), nn.Linear(784, 64)), compress.compact_state(model))


def test_latency_is_positive_and_restores_the_thread_count():
    threads = torch.get_num_threads()
    ms = compress.latency_ms(small_mlp(), torch.rand(1, 1, 28, 28), repeats=5, warmup=1)
    assert 0 < ms < 1000 and torch.get_num_threads() == threads


def test_latencies_alternate_the_models_in_rounds():
    calls = []

    class Tagged(nn.Module):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def forward(self, x):
            calls.append(self.tag)
            return x

    ms = compress.latencies_ms([Tagged("a"), Tagged("b")], torch.rand(1, 1, 28, 28), repeats=7, rounds=3, warmup=2)
    assert len(ms) == 2 and all(0 < m < 1000 for m in ms)
    # warm-up of each, then 3 rounds: 2 warm-up calls and 3, 2, 2 timed calls of each model in turn
    assert "".join(calls) == "aabb" + "aa" + "aaa" + "bb" + "bbb" + ("aa" + "aa" + "bb" + "bb") * 2
    with pytest.raises(ValueError):
        compress.latencies_ms([Tagged("a")], torch.rand(1, 1, 28, 28), repeats=2, rounds=3)


def test_headline_compares_the_last_row_with_the_first():
    rows = [{"name": "teacher", "test_accuracy": 0.99, "test_errors": 100, "size_bytes": 1000, "latency_ms": 1.0},
            {"name": "middle", "test_accuracy": 0.5, "test_errors": 5000, "size_bytes": 1, "latency_ms": 0.001},
            {"name": "final", "test_accuracy": 0.97, "test_errors": 300, "size_bytes": 600, "latency_ms": 0.625}]
    h = compress.headline(rows)
    assert h["accuracy_kept"] == pytest.approx(0.97 / 0.99)
    assert h["size_fraction"] == pytest.approx(0.6) and h["speedup"] == pytest.approx(1.6)
    assert (h["test_errors"], h["teacher_test_errors"]) == (300, 100) and "gap_closed" not in h
    assert h["text"] == ("final keeps 98.0% of the teacher's accuracy (300 test errors against its 100) at 60.0% "
                         "of its size, 1.6 times faster")
    h = compress.headline(rows, alone_errors=500)
    assert h["gap_closed"] == pytest.approx(0.5) and h["alone_test_errors"] == 500
    assert h["text"].endswith("; it closes 50% of the gap between the student trained alone (500 test errors) "
                              "and the teacher")
    assert compress.headline(rows, alone_errors=90)["gap_closed"] is None   # the teacher is no better
    slow = [rows[0], {**rows[2], "latency_ms": 2.5}]
    assert compress.headline(slow)["text"].endswith("2.5 times slower")
    with pytest.raises(ValueError):
        compress.headline(rows[:1])


def test_gap_closed_and_speed_text():
    assert compress.gap_closed(150, alone=200, teacher=100) == pytest.approx(0.5)
    assert compress.gap_closed(100, alone=200, teacher=100) == 1.0 and compress.gap_closed(200, alone=200,
                                                                                            teacher=100) == 0.0
    assert compress.gap_closed(250, alone=200, teacher=100) == pytest.approx(-0.5)   # worse than alone
    assert compress.gap_closed(150, alone=100, teacher=100) is None
    assert compress.speed_text(3.6) == "3.6 times faster"
    assert compress.speed_text(1.0) == "1.0 times faster"
    assert compress.speed_text(0.5) == "2.0 times slower"
    with pytest.raises(ValueError):
        compress.speed_text(0.0)


# ----------------------------------------------------------------------------- kdlab experiment compress

@pytest.mark.slow   # a whole kdlab run from the terminal
def test_compress_experiment_from_the_terminal(tmp_path):
    """``kdlab experiment compress --seed N --json PATH``: a list of rows, teacher first, deployed student last."""
    out = tmp_path / "compress.json"
    env = dict(os.environ, KDLAB_FAST="1")
    proc = subprocess.run([sys.executable, "-m", "kdlab.cli", "experiment", "compress", "--seed", "0", "--json", str(out),
                           "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "keeps" in proc.stdout and "times faster" in proc.stdout
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert isinstance(rows, list) and len(rows) == 5
    for row in rows:
        assert {"name", "size_bytes", "latency_ms", "test_accuracy"} <= set(row)
        assert isinstance(row["size_bytes"], int) and row["size_bytes"] > 0
        assert row["latency_ms"] > 0 and 0 <= row["test_accuracy"] <= 1
    assert rows[0]["name"].startswith("teacher") and "deployed" in rows[-1]["name"]
    assert rows[-1]["precision"] == "int8" and rows[-1]["sparsity"] >= 0.8
    assert rows[-1]["size_bytes"] < rows[2]["size_bytes"] < rows[1]["size_bytes"] < rows[0]["size_bytes"]
    assert abs(rows[3]["state_dict_bytes"] - rows[1]["state_dict_bytes"]) < 256   # pruned but dense: no smaller
    h = result["headline"]
    assert h["size_fraction"] == pytest.approx(rows[-1]["size_bytes"] / rows[0]["size_bytes"])
    assert h["accuracy_kept"] == pytest.approx(rows[-1]["test_accuracy"] / rows[0]["test_accuracy"])
    assert result["fast_mode"] is True and result["seed"] == 0 and result["dataset"] == "mnist"
    assert result["teacher"]["test_errors"] == rows[0]["test_errors"] and result["seconds"]["total"] > 0


@pytest.fixture(scope="module")
def small_teacher(tmp_path_factory):
    """A one-epoch MNIST teacher on 800 sample images and its logits, cached under the module's own cache."""
    from kdlab.data import load
    from kdlab.experiments.mnist import cached_teacher

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("teacher-cache")))
        return cached_teacher(seed=0, fast=True, data=load("mnist", sample=True).subset(800, 300), device="cpu",
                              progress=False)


def test_compress_fine_tunes_the_pruned_student_three_ways_from_the_same_weights(small_teacher):
    """Cross-entropy against KD (CNN teacher, unpruned student): same pruned weights, steps and batches; masks kept."""
    from kdlab.experiments import compress as pipeline
    from kdlab.train import train

    result, models = pipeline.experiment(seed=0, fast=True, device="cpu", progress=False, teacher=small_teacher,
                                         epochs=1, finetune_epochs=1, finetune_seeds=2)
    ft, rows = result["finetune"], result["rows"]
    assert ft["seeds"] == [1, 2] and set(ft["losses"]) == set(pipeline.FINETUNE)
    assert ft["steps"] == math.ceil(800 / 128) and ft["amount"] == 0.8 and ft["mask_kept"] is True
    for key, r in ft["losses"].items():
        assert len(r["test_errors"]) == 2 and r["mean_test_errors"] == sum(r["test_errors"]) / 2
        assert all(s == pytest.approx(0.8, abs=1e-3) for s in r["sparsity"])
        for model in models["finetuned"][key]:    # the masks stayed attached: every pruned weight is zero
            for layer in (m for m in model.modules() if hasattr(m, "weight_mask")):
                assert not layer.weight[layer.weight_mask == 0].any()
    # the table's pruned row is the KD fine-tuning at the first seed
    assert rows[3]["test_errors"] == ft["losses"]["kd_teacher"]["test_errors"][0]
    assert len(ft["verdicts"]) == 2 and all("against cross-entropy" in v for v in ft["verdicts"])
    # the same seed, the same batches: a rerun of the cross-entropy fine-tuning gives the same weights
    again = compress.magnitude_prune(copy.deepcopy(models["student"]), 0.8)
    train(again, small_teacher.data, epochs=1, lr=pipeline.DEFAULTS["finetune_lr"], seed=1, device="cpu",
          evaluate_every_epoch=False, progress=False)
    first = models["finetuned"]["cross_entropy"][0]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), first.state_dict().values()))
    # the student trained alone, the gap and the int8 ratio
    alone = result["student_alone"]["test_errors"]
    assert alone == pipeline.accuracy(models["alone"], small_teacher.data.x_test, small_teacher.data.y_test)[
        "test_errors"]
    assert result["headline"]["alone_test_errors"] == alone
    assert [r["gap_closed"] for r in rows] == [compress.gap_closed(r["test_errors"], alone=alone,
                                                                   teacher=rows[0]["test_errors"]) for r in rows]
    assert result["int8"]["latency_ratio"] == pytest.approx(rows[2]["latency_ms"] / rows[1]["latency_ms"])
    assert "int8 alone makes the float32 student" in result["int8"]["text"]
    text = pipeline.summarize(result)
    assert "cross-entropy on the labels" in text and "pruned weights still zero after every fine-tuning: True" in text


@pytest.mark.skipif(not os.environ.get("KDLAB_FULL"), reason="full-data run (about 3 minutes): set KDLAB_FULL=1")
def test_full_data_deployed_student_keeps_98_percent_at_10_percent_of_the_size():
    from kdlab.experiments import compress as pipeline

    result = pipeline.experiment(seed=0, progress=False).result
    assert not result["fast_mode"]
    assert result["headline"]["accuracy_kept"] >= 0.98
    assert result["headline"]["size_fraction"] <= 0.10
