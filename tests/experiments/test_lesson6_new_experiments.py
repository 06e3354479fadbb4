"""Lesson 6's capacity-gap and label-smoothing experiments: what each student is given, the verdicts, the CLI.

Each experiment runs once for the module, in fast mode, on the module's one fast CNN teacher (the other
teachers, small or one epoch on the fast slice, are trained into the module's cache), with the engine
spied on: every student of a seed starts from the same weights on the same batches, and gets the soft
targets (or the smoothed labels) it should.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from kdlab import experiments, zoo
from kdlab.experiments import capacity_gap, label_smoothing
from kdlab.experiments.mnist import cached_teacher
from kdlab.train import predict_logits


def run_kdlab(*args, cache, cwd):
    env = {**os.environ, "KDLAB_FAST": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-m", "kdlab.cli", "experiment", *args, "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("teacher-cache")


@pytest.fixture(scope="module")
def fast_env(teacher_cache):
    """KDLAB_FAST=1 and the module's cache, for the module's fixtures (each test has its own cache otherwise)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDLAB_FAST", "1")
        mp.setenv("XDG_CACHE_HOME", str(teacher_cache))
        yield mp


@pytest.fixture(scope="module")
def shared(fast_env):
    """The module's one fast CNN teacher (cnn-teacher) and its logits."""
    return cached_teacher(seed=0, progress=False)


def spy(module, mp) -> list:
    """Every call ``module`` makes to the engine: the model's architecture and initial weights, and the settings."""
    calls, real = [], module.train

    def record(model, data, **kw):
        calls.append({"arch": model.arch, "start": [p.detach().clone() for p in model.parameters()],
                      "data": data, "model": model, **kw})
        return real(model, data, **kw)

    mp.setattr(module, "train", record)
    return calls


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def gap(shared, fast_env):
    calls = spy(capacity_gap, fast_env)
    outcome = capacity_gap.experiment(seed=0, teacher=shared, teachers=("mlp-teacher-small", "cnn-teacher"),
                                      seeds=2, epochs=1, progress=False)
    return outcome, calls


@pytest.fixture(scope="module")
def smoothing(shared, fast_env):
    calls, teacher_calls = spy(label_smoothing, fast_env), spy(zoo, fast_env)
    outcome = label_smoothing.experiment(seed=0, teacher=shared, temperatures=(1.0, 4.0), seeds=2, epochs=1,
                                         student="mlp-30x2", progress=False)   # a small student: what it gets
    return outcome, calls, teacher_calls


def test_both_are_registered_with_their_options():
    gap_options = {o.name for o in experiments.get("capacity-gap").options}
    assert gap_options >= {"teachers", "student", "assistant", "seeds", "epochs"}
    assert {o.name for o in experiments.get("label-smoothing").options} >= {"epsilon", "temperatures", "seeds"}
    for name in ("capacity-gap", "label-smoothing"):
        assert experiments.get(name).summarize is not None and experiments.get(name).description


# ----------------------------------------------------------------------------- capacity gap

def test_capacity_gap_students_share_weights_batches_and_settings_per_seed(gap, shared):
    (result, models), calls = gap
    student, ta = result["student"]["arch"], result["assistant"]["arch"]
    assert [c["arch"] for c in calls] == [student, student, student, ta, student] * 2
    for s in (0, 1):
        mine = [c for c in calls if c["seed"] == s and c["arch"] == student]
        assert len(mine) == 4 and all(same_weights(c["start"], mine[0]["start"]) for c in mine)
        assert all(c["data"] is shared.data and c["epochs"] == 1 for c in mine)
        assert all((c.get("T"), c.get("alpha")) == (4.0, 0.9) for c in mine[1:]) and "teacher_logits" not in mine[0]
    first, second = ([c for c in calls if c["seed"] == s and c["arch"] == student] for s in (0, 1))
    assert not same_weights(first[0]["start"], second[0]["start"])      # another seed, another start
    small = models["teachers"]["mlp-teacher-small"]
    by_seed = [c for c in calls if c["seed"] == 0]
    assert torch.equal(by_seed[1]["teacher_logits"], predict_logits(small, shared.data.x_train))
    assert by_seed[2]["teacher_logits"] is shared.train_logits
    errors = {t["recipe"]: t["test_errors"] for t in result["teachers"]}
    best = min(("cnn-teacher", "mlp-teacher-small"), key=errors.get)      # the later one on a tie
    assert result["assistant"]["teacher"] == result["teacher"]["recipe"] == best
    ta_call, via_ta = by_seed[3], by_seed[4]
    taught_by = {"cnn-teacher": shared.train_logits, "mlp-teacher-small": by_seed[1]["teacher_logits"]}[best]
    assert torch.equal(ta_call["teacher_logits"], taught_by)
    assert torch.equal(via_ta["teacher_logits"], predict_logits(models["assistants"][0], shared.data.x_train))


def test_capacity_gap_result_reports_every_teacher_and_seed(gap):
    (result, _), _ = gap
    assert result["seeds"] == [0, 1] and [t["recipe"] for t in result["teachers"]] == ["mlp-teacher-small",
                                                                                        "cnn-teacher"]
    for t in result["teachers"]:
        assert len(t["student_test_errors"]) == 2 == len(t["agreement"])
        assert t["student_mean"] == pytest.approx(sum(t["student_test_errors"]) / 2)
        assert t["params"] > 0 and t["macs"] > 0 and isinstance(t["was_cached"], bool)
        assert all(0.0 <= a <= 1.0 for a in t["agreement"])
    assert next(t for t in result["teachers"] if t["recipe"] == "cnn-teacher")["macs"] > 4_000_000
    assert len(result["student_alone_test_errors"]) == 2 == len(result["assistant"]["student_test_errors"])
    assert result["better_teacher_always_better_student"] is (result["pairs_against_the_rule"] == [])
    text = capacity_gap.summarize(result)
    assert "Does a better teacher always give a better student?" in text and "TA, taught by" in text
    assert "student alone" in text
    fig = capacity_gap.plot(result)
    assert fig.axes[0].get_xlabel().startswith("test errors of the student's teacher")
    import matplotlib.pyplot as plt

    plt.close(fig)


def teacher_row(recipe, errors, students):
    return {"recipe": recipe, "test_errors": errors, "student_test_errors": students,
            "student_mean": sum(students) / len(students)}


def test_the_rule_and_its_exceptions_are_read_from_the_means_and_the_spread():
    a, b, c = (teacher_row("weak", 300, [400, 410]), teacher_row("mid", 200, [380, 384]),
               teacher_row("strong", 100, [395, 397]))
    against = capacity_gap.pairs_against_the_rule([a, b, c])
    # strong (100) gave 396 against mid's 382: an exception, wider than either seed range (10 and 4)
    assert against == [{"better_teacher": "strong", "worse_teacher": "mid", "student_mean_with_better": 396,
                        "student_mean_with_worse": 382, "beyond_seed_spread": True}]
    close = teacher_row("strong", 100, [378, 390])       # mean 384 >= 382, but the range (12) covers the gap
    assert capacity_gap.pairs_against_the_rule([b, close])[0]["beyond_seed_spread"] is False
    assert capacity_gap.pairs_against_the_rule([a, b]) == []
    assert capacity_gap.pairs_against_the_rule([a, teacher_row("tie", 300, [1, 1])]) == []   # equal teachers
    r = {"pairs_against_the_rule": against, "seeds": [0, 1]}
    assert capacity_gap.verdict(r).startswith("no, not always here") and "strong (the better teacher) 396" in \
        capacity_gap.verdict(r)
    assert capacity_gap.verdict({"pairs_against_the_rule": [], "seeds": [0, 1]}).startswith("yes, here")


def test_capacity_gap_refuses_bad_teachers(shared):
    for teachers in (("cnn-teacher",), ("cnn-teacher", "nope"), ("cnn-teacher", "cnn-teacher")):
        with pytest.raises(ValueError, match="recipes"):
            capacity_gap.experiment(teacher=shared, teachers=teachers, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        capacity_gap.experiment(teacher=shared, teachers=("mlp-teacher-small", "cnn-teacher"), seeds=0,
                                progress=False)


# ----------------------------------------------------------------------------- label smoothing

def test_label_smoothing_trains_each_student_as_it_says(smoothing, shared):
    (result, models), calls, teacher_calls = smoothing
    # the smoothed teacher: cnn-teacher's recipe with eps = 0.1, the only teacher trained here
    assert [(c["arch"], c["label_smoothing"]) for c in teacher_calls] == [("cnn-small", 0.1)]
    assert teacher_calls[0]["epochs"] == 1 and teacher_calls[0]["seed"] == 0
    plain, smoothed = models["teachers"]["plain"], models["teachers"]["smoothed"]
    assert plain is shared and smoothed.recipe == "cnn-teacher-ls"
    for s in (0, 1):
        mine = [c for c in calls if c["seed"] == s]
        assert all(same_weights(c["start"], mine[0]["start"]) and c["data"] is shared.data for c in mine)
        kinds = [(c.get("label_smoothing", 0.0), c.get("T"), c.get("teacher_logits")) for c in mine]
        assert kinds[0][:2] == (0.0, None) and kinds[1][:2] == (0.1, None)
        assert kinds[0][2] is None and kinds[1][2] is None
        expected = [(T, logits) for T in (1.0, 4.0) for logits in (plain.train_logits, smoothed.train_logits)]
        assert len(kinds) == 2 + len(expected)
        assert all(T == want_T and logits is want for (_, T, logits), (want_T, want) in zip(kinds[2:], expected))
        assert all(c["alpha"] == 0.9 for c in mine[2:])


def test_label_smoothing_result_profiles_both_teachers(smoothing):
    (result, _), _, _ = smoothing
    for key, eps in (("plain", 0.0), ("smoothed", 0.1)):
        te = result["teachers"][key]
        assert te["label_smoothing"] == eps and set(te["wrong_class_evenness"]) == {"1", "4"}
        for t in ("1", "4"):
            sim = torch.tensor(te["class_similarity"][t])
            assert sim.shape == (10, 10) and torch.allclose(sim.sum(1), torch.ones(10), atol=1e-3)
            assert len(te["most_similar_pairs"][t]) == 3
        assert 0.0 < te["true_class_probability"] <= 1.0
    assert set(result["students"]["kd_plain"]) == {"1", "4"}
    assert len(result["students"]["cross_entropy"]) == 2 == len(result["students"]["kd_smoothed"]["4"])
    c = result["smoothed_teacher_against_plain"]["4"]
    plain, smoothed = result["students"]["kd_plain"]["4"], result["students"]["kd_smoothed"]["4"]
    assert c["first"] == pytest.approx(sum(plain) / 2) and c["second"] == pytest.approx(sum(smoothed) / 2)
    text = label_smoothing.summarize(result)
    assert "the smoothed teacher's students" in text and "label smoothing alone" in text
    fig = label_smoothing.plot(result)
    assert len(fig.axes) >= 3
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_wrong_class_evenness_is_1_when_the_wrong_classes_tie_and_falls_as_one_stands_out():
    labels = torch.tensor([0, 3])
    tied = torch.zeros(2, 10)
    tied[0, 0] = tied[1, 3] = 5.0
    assert label_smoothing.wrong_class_evenness(tied, labels, 1.0) == 1.0
    one_out = tied.clone()
    one_out[:, 7] = 3.0
    low = label_smoothing.wrong_class_evenness(one_out, labels, 1.0)
    # by hand: wrong classes e^3 once, e^0 eight times
    p = torch.tensor([math.e ** 3] + [1.0] * 8, dtype=torch.float64)
    p = p / p.sum()
    assert low == pytest.approx(float(-(p * p.log()).sum() / math.log(9)), abs=1e-4) and low < 1
    assert label_smoothing.wrong_class_evenness(one_out, labels, 4.0) > low       # a higher T evens them out


def test_label_smoothing_refuses_bad_settings(shared):
    with pytest.raises(ValueError, match="epsilon"):
        label_smoothing.experiment(teacher=shared, epsilon=1.5, progress=False)
    with pytest.raises(ValueError, match="cnn-teacher"):
        label_smoothing.experiment(teacher=replace(shared, recipe="mlp-teacher"), progress=False)


# ----------------------------------------------------------------------------- the command line

def test_cli_capacity_gap(tmp_path, shared, teacher_cache):
    out = tmp_path / "cg.json"
    r = run_kdlab("capacity-gap", "--teachers", "mlp-teacher-small,cnn-teacher", "--seeds", "1", "--epochs", "1",
                  "--json", str(out), cache=teacher_cache, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["experiment"] == "capacity-gap" and res["seeds"] == [0] and len(res["teachers"]) == 2
    assert res["teacher"]["test_errors"] == min(t["test_errors"] for t in res["teachers"])
    assert "Does a better teacher always give a better student?" in r.stdout
    cnn = next(t for t in res["teachers"] if t["recipe"] == "cnn-teacher")
    assert cnn["test_errors"] == shared.test_errors and cnn["was_cached"] is True


def test_cli_label_smoothing(tmp_path, shared, teacher_cache, smoothing):
    out = tmp_path / "ls.json"
    r = run_kdlab("label-smoothing", "--temperatures", "4", "--seeds", "1", "--epochs", "1", "--epsilon", "0.2",
                  "--student", "mlp-30x2",
                  "--json", str(out), cache=teacher_cache, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["epsilon"] == 0.2 and res["temperatures"] == [4.0] and res["seeds"] == [0]
    assert res["teachers"]["smoothed"]["was_cached"] is True   # trained by the module's in-process run
    assert res["teachers"]["plain"]["test_errors"] == shared.test_errors
    assert "label smoothing 0.2" in r.stdout and "evenness" in r.stdout
