"""Part 1's helpers: the temperature widget's logic and wiring, the checks, the references, the pitfalls lab."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch

from kdlab import analysis, checks, lessons, losses, pitfalls, widgets
from kdlab.data import Dataset


# ----------------------------------------------------------------------------- the widget

def test_parse_logits_reads_what_a_learner_types():
    assert widgets.parse_logits("5, 2, 1, 0.5, -1") == [5.0, 2.0, 1.0, 0.5, -1.0]
    assert widgets.parse_logits(" [3 3 0] ") == [3.0, 3.0, 0.0]
    assert widgets.parse_logits("1e3;-2") == [1000.0, -2.0]


@pytest.mark.parametrize("text,message", [("1, two, 3", "'two' is not a number"), ("7", "at least two"),
                                          ("", "at least two"), ("1, inf", "finite")])
def test_parse_logits_explains_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        widgets.parse_logits(text)


def test_temperature_frame_is_the_softmax_and_its_entropy():
    frame = widgets.temperature_frame([5, 2, 1, 0.5, -1], 2.0)
    p = losses.softmax_t(torch.tensor([5, 2, 1, 0.5, -1], dtype=torch.float64), 2.0)
    assert frame.probs == pytest.approx(p.tolist())
    assert frame.entropy == pytest.approx(float(analysis.entropy(p)))
    assert frame.max_entropy == pytest.approx(math.log(5))
    assert frame.argmax == 0 and frame.T == 2.0


def test_frames_soften_with_temperature_and_keep_the_ranking():
    frames = [widgets.temperature_frame([5, 2, 1, 0.5, -1], T) for T in widgets.play_temperatures()]
    entropies = [f.entropy for f in frames]
    assert all(b >= a - 1e-12 for a, b in zip(entropies, entropies[1:]))
    assert entropies[0] < 0.01 and entropies[-1] > 0.99 * math.log(5)
    assert {f.argmax for f in frames} == {0}
    assert widgets.temperature_frame([1000, 0, 0], 0.1).probs == pytest.approx([1, 0, 0])


def test_play_steps_t_geometrically_through_its_range():
    temps = widgets.play_temperatures(5, 0.1, 1000.0)
    assert temps == pytest.approx([0.1, 1, 10, 100, 1000])
    assert widgets.play_temperatures()[0] == pytest.approx(widgets.T_MIN)
    assert widgets.play_temperatures()[-1] == pytest.approx(widgets.T_MAX)
    assert widgets.nearest_frame(9.0, temps) == 2
    with pytest.raises(ValueError):
        widgets.play_temperatures(1)


def test_render_frame_draws_one_bar_per_class_and_the_entropy():
    html = widgets.render_frame(widgets.temperature_frame([2, 1, 0], 1.0), labels=["cat", "dog", "<b>"])
    assert html.count("(z=") == 3 and "cat" in html and "&lt;b&gt;" in html
    assert "#d62728" in html and "entropy H =" in html and "T = 1" in html


def test_the_widget_redraws_on_slider_text_and_play():
    box = widgets.temperature_explorer([5, 2, 1, 0.5, -1], T=1.0)
    parts = box.explorer
    first = parts["view"].value
    parts["slider"].value = 10.0
    assert parts["view"].value != first and "T = 10" in parts["view"].value
    parts["text"].value = "1, 2, nope"
    assert "not a number" in parts["message"].value
    parts["text"].value = "0, 0, 9"
    assert parts["message"].value == "" and parts["view"].value.count("(z=") == 3
    parts["play"].value = 0
    assert parts["slider"].value == pytest.approx(parts["temperatures"][0], rel=0.03)
    parts["play"].value = len(parts["temperatures"]) - 1
    assert parts["slider"].value == pytest.approx(widgets.T_MAX, rel=0.03)
    assert parts["play"].max == len(parts["temperatures"]) - 1


# ----------------------------------------------------------------------------- lessons plumbing

def test_experiment_cells_are_skipped_only_by_the_transformer():
    cell = ["\n", "#| experiment\n", "teacher = train_for_a_minute()\n"]
    assert lessons.skip_experiments(cell) == ["pass  # experiment cell: skipped while grading\n"]
    assert lessons.skip_experiments(["x = 1\n", "#| experiment\n"]) == ["x = 1\n", "#| experiment\n"]
    assert lessons.is_experiment("#| experiment\nprint(1)") and not lessons.is_experiment("print(1)")


def test_grading_mode_follows_nbgrader(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert not lessons.grading()
    for mode in ("autograde", "validate"):
        monkeypatch.setenv("NBGRADER_EXECUTION", mode)
        assert lessons.grading()


@pytest.mark.parametrize("start,frozen", [("from kdlab.lessons import setup\nsetup(); setup()", True),  # re-run cell
                                          ("from kdlab.cli import main\nmain(['--version'])", True),
                                          ("import torch, kdlab.cli", False)])               # the control
def test_lesson_and_cli_processes_freeze_their_heap_as_they_exit(start, frozen):
    """settings.freeze_heap_at_exit(): by the time the interpreter finalizes, every object is frozen, so its
    final collections are quick (an exit handler registered first runs last, and sees the frozen heap)."""
    code = "import atexit, gc, sys\natexit.register(lambda: sys.stdout.write(f'frozen {gc.get_freeze_count()}'))\n"
    out = subprocess.run([sys.executable, "-c", code + start], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr
    count = int(out.stdout.rsplit("frozen ", 1)[1])
    assert (count > 10_000) if frozen else (count == 0), count


# ----------------------------------------------------------------------------- checks

def _noisy_softmax(logits, T=1.0):
    print("noise", file=sys.stderr)
    os.write(2, b"fd noise\n")
    warnings.warn("a warning")
    logging.getLogger("learner").error("logged")
    return torch.softmax(logits / T, dim=-1)


def test_checks_swallow_every_kind_of_stderr_noise(capfd):
    check = checks.Checker(_noisy_softmax, reference=losses.softmax_t, name="softmax_t")
    check.matches("a case", torch.tensor([1.0, 2.0]), 2.0)
    check.done()
    out, err = capfd.readouterr()
    assert err == "" and "all 1 checks passed" in out


def test_checks_reject_kdlab_and_wrappers_of_it():
    with pytest.raises(checks.CheckFailed, match="kdlab's own kdlab.losses.kd_kl"):
        checks.Checker(losses.kd_kl)
    check = checks.Checker(lambda z, T: losses.softmax_t(z, T) * 1.0, reference=losses.softmax_t, name="softmax_t")
    with pytest.raises(checks.CheckFailed, match="calls kdlab's kdlab.losses.softmax_t"):
        check.matches("a case", torch.tensor([1.0, 2.0]), 1.0)


def test_trusted_names_are_swapped_in_only_during_the_check():
    namespace = {"torch": torch, "kd_kl": lambda s, t, T: torch.tensor(0.0)}
    exec("def blend(s, t, T):\n    return 0.5 * kd_kl(s, t, T)", namespace)  # noqa: S102
    check = checks.Checker(namespace["blend"], trusted={"kd_kl": losses.kd_kl})
    s, t = checks.randn(3, 4, seed=1), checks.randn(3, 4, seed=2)
    check.matches("uses the trusted kd_kl", s, t, 2.0, expected=0.5 * losses.kd_kl(s, t, 2.0))
    assert namespace["kd_kl"](s, t, 2.0) == 0.0   # restored afterwards


def test_failure_message_shows_case_call_expected_and_got():
    check = checks.Checker(lambda z, T: torch.softmax(z / T, dim=0), reference=losses.softmax_t, name="softmax_t")
    with pytest.raises(checks.CheckFailed) as info:
        check.matches("two rows", torch.tensor([[2.0, 1.0], [0.0, 3.0]]), 1.0, hint="dim=-1")
    text = str(info.value)
    for part in ("softmax_t failed the case: two rows", "called   softmax_t(", "expected tensor(", "got      tensor(",
                 "largest difference", "hint: dim=-1"):
        assert part in text


def test_checks_catch_in_place_changes_missing_gradients_and_wrong_errors():
    def in_place(z, T):
        z /= T
        return torch.softmax(z, -1)
    with pytest.raises(checks.CheckFailed, match="changed its input in place"):
        checks.Checker(in_place, reference=losses.softmax_t).matches("case", torch.tensor([1.0, 3.0]), 2.0)
    detached = checks.Checker(lambda z, T: torch.softmax(z / T, -1).detach(), reference=losses.softmax_t)
    with pytest.raises(checks.CheckFailed, match="autograd"):
        detached.gradient("case", torch.tensor([1.0, 3.0]), 2.0, weights=torch.tensor([1.0, 0.0]))
    wrong_error = checks.Checker(lambda z, T: z / T, reference=losses.softmax_t)
    with pytest.raises(checks.CheckFailed, match="expected it to raise ValueError"):
        wrong_error.raises("T = 0", ValueError, torch.tensor([1.0]), 0.0)


def test_as_pairs_normalizes_orientation_and_types():
    assert checks.as_pairs([(3, 1), torch.tensor([0, 2])]) == [(1, 3), (0, 2)]


# ----------------------------------------------------------------------------- references

def test_entropy_reference_handles_zeros_and_batches():
    assert float(analysis.entropy(torch.tensor([0.0, 1.0]))) == 0.0
    assert analysis.entropy(torch.full((2, 3, 4), 0.25)).shape == (2, 3)


def test_class_similarity_reference_means_per_true_class():
    probs = torch.tensor([[0.8, 0.2, 0.0], [0.6, 0.3, 0.1], [0.1, 0.9, 0.0]])
    S = analysis.class_similarity(probs, torch.tensor([0, 0, 1]))
    assert torch.allclose(S, torch.tensor([[0.7, 0.25, 0.05], [0.1, 0.9, 0.0], [0.0, 0.0, 0.0]]))


def test_most_similar_pairs_reference_symmetrizes_and_orders():
    S = torch.tensor([[1.0, 0.0, 0.3], [0.4, 1.0, 0.1], [0.3, 0.1, 1.0]])
    assert analysis.most_similar_pairs(S, 5) == [(0, 2), (0, 1), (1, 2)]
    assert analysis.most_similar_pairs(S, 0) == []


# ----------------------------------------------------------------------------- pitfalls lab

def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(32, 10, generator=g), torch.randn(32, 10, generator=g) * 3,
            torch.randint(0, 10, (32,), generator=g))


def test_every_course_bug_is_in_the_lab_and_changes_something():
    assert [p.number for p in pitfalls.PITFALLS] == list(range(1, 11))
    s, t, y = _batch()
    rows = {r["number"]: r for r in pitfalls.loss_effects(s, t, y, T=4.0, alpha=0.7)}
    assert rows[0]["loss_ratio"] == pytest.approx(1.0) and rows[0]["teacher_grad"] == 0.0
    for n in (1, 2, 3, 4, 5, 6, 7, 10):   # each changes the loss value and the gradient
        assert abs(rows[n]["loss_ratio"] - 1) > 1e-3, n
        assert abs(rows[n]["grad_ratio"] - 1) > 1e-3 or rows[n]["grad_cosine"] < 0.999, n
    assert rows[8]["teacher_grad"] > 0 and rows[8]["loss"] == pytest.approx(rows[0]["loss"])
    assert math.isfinite(rows[0]["huge_loss"]) and not math.isfinite(rows[9]["huge_loss"])


def test_bug_three_shrinks_the_soft_gradient_by_t_squared():
    s, t, y = _batch(1)
    grads = {}
    for name, fn in [("ok", pitfalls.correct_loss), ("bug3", pitfalls.bug3_no_t_squared)]:
        x = s.clone().requires_grad_(True)
        fn(x, t, y, 4.0, 1.0).backward()   # alpha = 1: the soft term alone
        grads[name] = x.grad.norm()
    assert float(grads["ok"] / grads["bug3"]) == pytest.approx(16.0, rel=1e-4)


def test_short_run_trains_and_bug_eight_changes_the_teacher():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    data = Dataset("toy", x, y, x[:64], y[:64], "random", [str(i) for i in range(10)])
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    before = [p.detach().clone() for p in teacher.parameters()]
    ok = pitfalls.short_run(pitfalls.correct_loss, data, teacher, steps=5, batch_size=64)
    assert ok["steps"] == 5 and not ok["diverged"] and 0 <= ok["test_errors"] <= 64
    bad = pitfalls.short_run(pitfalls.bug8_teacher_not_detached, data, teacher, teacher_in_graph=True, steps=5,
                             batch_size=64)
    assert "teacher_test_errors_after" in bad
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters())), "the caller's teacher is untouched"


# ----------------------------------------------------------------------------- lesson 3's fix_kd_step check

def test_kd_step_networks_are_seeded_mode_dependent_and_leave_the_rng_alone():
    state = torch.get_rng_state()
    (s1, t1), (s2, t2) = pitfalls.kd_step_networks(3), pitfalls.kd_step_networks(3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(t1.state_dict().values(), t2.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(s1.state_dict().values(), s2.state_dict().values()))
    assert not t1.training and s1.training
    x = torch.randn(8, 1, 3, 4)
    with torch.no_grad():
        assert not torch.allclose(t1(x), t1.train()(x))    # batch statistics and dropout in training mode
    big, _ = pitfalls.kd_step_networks(3, scale=1000.0)
    with torch.no_grad():
        assert float(big(x).abs().max()) > 100 * float(s1(x).abs().max())


def test_kd_step_reference_is_one_sgd_step_on_the_correct_loss_and_touches_nothing():
    student, teacher = pitfalls.kd_step_networks(0)
    teacher.train()
    x, y = torch.randn(8, 1, 3, 4), torch.randint(0, 5, (8,))
    both = torch.nn.ModuleList([student, teacher])
    optimizer = torch.optim.SGD(both.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in both.state_dict().items()}
    loss, params = pitfalls.kd_step_reference(student, teacher, optimizer, x, y, 4.0, 0.9)
    assert all(torch.equal(v, before[k]) for k, v in both.state_dict().items()) and teacher.training
    assert all(p.grad is None for p in both.parameters())
    with torch.no_grad():
        v = teacher.eval()(x)
    want = losses.distillation_loss(student(x), v, y, 4.0, 0.9)
    grads = torch.autograd.grad(want, list(student.parameters()))
    assert loss == pytest.approx(float(want.detach()), rel=1e-6)
    for p, g, got in zip(student.parameters(), grads, params):
        assert torch.allclose(got, p.detach() - 0.1 * g, atol=1e-7)
