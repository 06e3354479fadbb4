"""The benchmark scripts still run (on the shipped sample, in seconds), and the engine's profile ranges."""

import json
import re
import subprocess
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from data_helpers import ROOT
from kdlab.data import load
from kdlab.models import build
from kdlab.train import train


def run_script(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_engine_profile_names_every_phase_of_a_jittered_distillation_step():
    data = load("mnist", sample=True).subset(256, 64)
    torch.manual_seed(0)
    teacher, student = build("cnn-small"), build("mlp-30x2")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(student, data, teacher=teacher, epochs=1, batch_size=64, jitter=2, teacher_views=2, progress=False)
    counts = {e.key: e.count for e in prof.key_averages() if e.key.startswith("kdlab.")}
    assert counts["kdlab.teacher_logits"] == 1
    for phase in ("batch", "forward", "loss", "backward", "optimizer"):
        assert counts[f"kdlab.{phase}"] == 4, counts  # 256 images / batch 64
    assert counts["kdlab.evaluate"] == 1
    assert "kdlab.teacher_forward" not in counts  # the cached views keep the teacher out of the loop


def test_engine_runs_the_teacher_inside_the_loop_only_without_cached_views():
    data = load("mnist", sample=True).subset(128, 32)
    teacher, student = build("mlp-30x2"), build("mlp-30x2")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(student, data, teacher=teacher, epochs=1, batch_size=64, jitter=1, teacher_views=0, progress=False)
    counts = {e.key: e.count for e in prof.key_averages() if e.key.startswith("kdlab.")}
    assert counts["kdlab.teacher_forward"] == 2


def test_engine_vs_dataloader_runs_with_a_jittered_transfer_set():
    out = run_script("engine_vs_dataloader.py", "--sample", "--epochs", "1", "--repeats", "1", "--jitter", "2",
                     "--teacher-views", "2", "--student", "mlp-30x2")
    assert "transfer set jittered by up to 2 pixels (kdlab: 2 cached views)" in out
    assert re.search(r"speed-up: \d+\.\d\dx", out), out


def test_profile_hinton_prints_the_phases_and_the_trials():
    out = run_script("profile_hinton.py", "--sample", "--images", "512", "--steps", "5", "--repeats", "1",
                     "--no-compile")
    for phase in ("kdlab.forward", "kdlab.backward", "kdlab.optimizer", "kdlab.batch", "kdlab.teacher_logits"):
        assert re.search(rf"{re.escape(phase)}\s+\d+\.\d\d s\s+\d+\.\d%", out), (phase, out)
    assert "SGD foreach=True vs per-parameter loop" in out
    assert "inference_mode" in out and "channels_last" in out
    assert len(re.findall(r"the engine's choice is \d+\.\d\dx", out)) >= 4, out


def test_experiment_times_compares_two_checkouts(tmp_path):
    out = tmp_path / "times.json"
    text = run_script("experiment_times.py", "--before", str(ROOT), "--experiments", "omitted-digit", "--fast",
                      "--json", str(out))
    assert re.search(r"omitted-digit\s+\d+\.\d s\s+\d+\.\d s\s+\d\.\d\d\s+.*yes$", text, re.M), text
    row, = json.loads(out.read_text())["rows"]
    assert row["same_test_errors"] and row["before_own"] > 0 and row["after_wall"] > row["after_own"]
