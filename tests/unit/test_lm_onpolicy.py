"""Lesson 9's ``llm-on-policy`` parts (kdlab.lm.onpolicy), on a tiny language: what it measures, and its claims.

A language of strings of at most 4 symbols, a teacher and a start trained for a few steps: every part runs in
seconds, and each number it reports is recomputed here from the models it returns.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from kdlab.lm import compare, models, onpolicy, policy, scoring


@pytest.fixture(scope="module")
def setup():
    config = compare.Config(max_len=4, n_train=300, teacher_hidden=12, teacher_steps=60, warm_steps=20, steps=12,
                            batch_size=16, n_samples=200)
    with models.one_thread():
        return compare.make_setup(config, seed=0, progress=False)


SETTINGS = onpolicy.Settings(estimators=("single-step", "decomposed", "minillm"), trained=("single-step", "decomposed"),
                             seeds=2, n_batches=4, lambdas=(0.0, 1.0), lambda_seeds=2, n_show=3)


@pytest.fixture(scope="module")
def ran(setup):
    start = compare.student_start(setup)
    before = copy.deepcopy(start.state_dict())
    with models.one_thread():
        out, students = onpolicy.run(setup, SETTINGS, start=start)
    return start, before, out, students


def test_the_settings_are_checked():
    with pytest.raises(ValueError, match="single-step"):
        onpolicy.Settings(trained=("minillm",))
    with pytest.raises(ValueError, match="unknown estimator"):
        onpolicy.Settings(estimators=("single-step", "reinforce"))
    with pytest.raises(ValueError, match="seeds"):
        onpolicy.Settings(seeds=0)
    with pytest.raises(ValueError, match="lambda"):
        onpolicy.Settings(lambdas=(0.0, 1.5))
    config, settings = onpolicy.settings_from({"steps": 7, "max_len": 6, "seeds": 1, "lambdas": [0.0, 0.5]})
    assert config.steps == 7 and config.max_len == 6 and config.n_train == compare.Config().n_train
    assert settings.seeds == 1 and settings.lambdas == (0.0, 0.5) and settings.trained == onpolicy.TRAINED
    for key in onpolicy.FAST:   # the fast settings are settings of this experiment, and valid
        assert hasattr(settings, key)
    onpolicy.Settings(**onpolicy.FAST)


def test_the_start_is_shared_and_left_as_it_was(ran):
    start, before, out, students = ran
    assert all(torch.equal(before[k], v) for k, v in start.state_dict().items())
    assert set(students) == {"single-step", "decomposed", "gkd-lambda-0", "gkd-lambda-1"}
    for model in students.values():
        assert model is not start and any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert out["student_start"]["params"] == sum(p.numel() for p in start.parameters())


def test_every_reported_kl_is_the_exact_one_of_the_returned_students(setup, ran):
    start, _, out, students = ran
    max_len = setup.config.max_len
    log_t = models.string_log_probs(setup.teacher, max_len)
    kl_start, _ = policy.exact_gradient(start, log_t, max_len)
    assert math.isclose(out["gradient"]["start"]["kl"], kl_start, rel_tol=1e-9)
    assert math.isclose(out["student_start"]["kl_student_to_teacher"], kl_start, rel_tol=1e-4)
    kl_trained, _ = policy.exact_gradient(students["single-step"], log_t, max_len)
    assert out["gradient"]["trained_by"] == "single-step"
    assert math.isclose(out["gradient"]["trained"]["kl"], kl_trained, rel_tol=1e-9)
    first = out["students"]["single-step"]["per_seed"][0]
    assert math.isclose(first["kl_student_to_teacher"], kl_trained, rel_tol=1e-4)
    direct = scoring.score_model(students["decomposed"], setup.lang, setup.config.n_samples, seed=setup.seed,
                                 teacher_log_probs=log_t)
    assert out["students"]["decomposed"]["per_seed"][0]["kl_truth_to_student"] == direct["kl_truth_to_student"]


def test_means_are_over_the_seeds_and_the_seeds_differ(ran):
    _, _, out, _ = ran
    groups = [out["students"][name] for name in SETTINGS.trained] + out["lambda"]["sweep"]
    for entry in groups:
        rows = entry["per_seed"]
        assert len(rows) == 2 and rows[0]["kl_student_to_teacher"] != rows[1]["kl_student_to_teacher"]
        for key in onpolicy.METRICS:
            assert entry["mean"][key] == pytest.approx(np.mean([r[key] for r in rows]), rel=1e-12), key
    assert [e["lambda"] for e in out["lambda"]["sweep"]] == [0.0, 1.0]
    lam0, lam1 = (e["per_seed"][0]["kl_student_to_truth"] for e in out["lambda"]["sweep"])
    assert lam0 != lam1
    assert all(len(out["students"][n]["samples"]) == SETTINGS.n_show for n in SETTINGS.trained)


def test_the_gradient_check_reports_every_estimator_in_range(ran):
    _, _, out, _ = ran
    for where in ("start", "trained"):
        g = out["gradient"][where]
        assert list(g["estimators"]) == list(SETTINGS.estimators)
        assert g["n_batches"] == SETTINGS.n_batches and g["batch_size"] == 16 and g["exact_norm"] > 0
        for e in g["estimators"].values():
            assert -1 <= e["cosine"] <= 1 and -1 <= e["cosine_of_mean"] <= 1
            assert e["bias"] >= 0 and e["error"] > 0
            # the mean of the estimates is no further from the exact gradient than one estimate, on average
            assert e["bias"] <= e["error"] + 1e-12


def result_with(ran, *, ss=(0.5, 0.8), dec=(0.99, 0.05), errors=(0.5, 2.0), kl=(0.1, 0.2, 0.15), modes=True,
                trained_cos=0.1, truth=(0.2, 0.3)):
    """The tiny run's result with the numbers the claims read replaced."""
    out = copy.deepcopy(ran[2])
    g0 = out["gradient"]["start"]["estimators"]
    g0["single-step"].update(cosine_of_mean=ss[0], bias=ss[1])
    g0["decomposed"].update(cosine_of_mean=dec[0], bias=dec[1], error=errors[0])
    g0["score-function"] = {**g0["decomposed"], "error": errors[1]}
    out["gradient"]["trained"]["estimators"]["single-step"]["cosine_of_mean"] = trained_cos
    out["students"]["minillm"] = copy.deepcopy(out["students"]["decomposed"])
    for name, value in zip(("single-step", "decomposed", "minillm"), kl):
        out["students"][name]["mean"]["kl_student_to_teacher"] = value
    seeking, covering = out["students"]["decomposed"]["mean"], out["students"]["single-step"]["mean"]
    seeking.update(entropy=3.0, kl_student_to_truth=0.2, kl_teacher_to_student=1.0)
    covering.update(entropy=3.5, kl_student_to_truth=0.25, kl_teacher_to_student=0.1)
    if not modes:
        seeking["entropy"] = 4.0
    for entry, value in zip(out["lambda"]["sweep"], truth):   # lambda 0, then 1
        entry["mean"].update(kl_student_to_truth=value, kl_truth_to_student=value)
    return out


def test_the_claims_follow_the_numbers(ran):
    verdicts = onpolicy.claims(result_with(ran))
    assert len(verdicts) == 7 and all(ok for _, ok, _ in verdicts), verdicts
    assert "0.1000 against 0.2000" in verdicts[2][2] and "lambda 0: 0.2000 and 0.2000" in verdicts[-1][2]
    flipped = onpolicy.claims(result_with(ran, ss=(0.99, 0.05), dec=(0.5, 0.8), errors=(2.0, 0.5), kl=(0.2, 0.1, 0.3),
                                          modes=False, trained_cos=0.5, truth=(0.3, 0.2)))
    assert len(flipped) == 7 and not any(ok for _, ok, _ in flipped), flipped
    # a claim whose estimators were not run is left out, not failed
    assert len(onpolicy.claims(ran[2])) == 5
