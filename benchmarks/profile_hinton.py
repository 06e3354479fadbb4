"""Where the Hinton preset's time goes, and which torch switches pay.

    KDLAB_DATA=../shared/datasets python benchmarks/profile_hinton.py [--images 20000] [--repeats 3]

Part 1 runs ``kdlab.train`` exactly as ``kdlab distill --preset hinton`` trains its
two expensive models, for one epoch over a slice of the training set each, under
``torch.profiler``: the cnn-small teacher on inputs jittered by up to 2 pixels, and
the distilled 800-800 student (batch 128, SGD, the transfer set drawn from cached
jittered teacher views, T = 8, alpha = 0.9). It prints the engine's named ranges
(``kdlab.batch``, ``kdlab.forward``, ...) as shares of the wall time, then the ops
that take the most time.

Part 2 times the switches torch offers, each against the engine's choice, side by
side in one run (alternating, median of ``--repeats``): foreach SGD, zero_grad with
set_to_none, the thread count and torch.compile for the student's steps; for the
teacher, pooling before the ReLU, and for its cached views inference_mode and
channels_last.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from kdlab.data import jitter, load
from kdlab.losses import distillation_loss
from kdlab.jobs import PRESETS
from kdlab.models import build
from kdlab.train import cache_teacher_views, make_optimizer, predict_logits, train

PRESET = PRESETS["hinton"]
T, ALPHA, SHIFT, VIEWS = PRESET.temperature, PRESET.alpha, PRESET.transfer_jitter, PRESET.teacher_views
BATCH = PRESET.student.batch_size


def profile_epoch(title: str, model, data, images: int, **train_kwargs) -> None:
    """One epoch of ``kdlab.train`` over the first ``images`` training images, under the profiler."""
    sliced = data.subset(images, 2000)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(model, sliced, epochs=1, progress=False, **train_kwargs)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    steps = -(-images // train_kwargs.get("batch_size", 128))
    print(f"{title}: one epoch over {images:,} images ({steps} steps) under torch.profiler: "
          f"{wall:.1f} s wall (profiler overhead included)")
    ranges = sorted((e for e in events if e.key.startswith("kdlab.")), key=lambda e: -e.cpu_time_total)
    for e in ranges:
        share = e.cpu_time_total / 1e6 / wall
        print(f"  {e.key:22s} {e.cpu_time_total / 1e6:6.2f} s  {100 * share:5.1f}%  "
              f"({e.count} calls, {e.cpu_time_total / max(1, e.count) / 1e3:.2f} ms each)")
    ops = sorted((e for e in events if not e.key.startswith("kdlab.")), key=lambda e: -e.self_cpu_time_total)[:8]
    total_self = sum(e.self_cpu_time_total for e in events)
    print("  top ops by self time:")
    for e in ops:
        print(f"    {e.key:42s} {e.self_cpu_time_total / 1e6:6.2f} s  {100 * e.self_cpu_time_total / total_self:5.1f}%")


def student_steps(x, y, shifts, t_logits, *, steps: int, foreach=True, set_to_none=True, compiled=False,
                  seed: int = 0) -> float:
    """Seconds for ``steps`` training steps of the engine's inner loop (warm-up excluded)."""
    torch.manual_seed(seed)
    model = build("mlp-800x2")
    forward = torch.compile(model) if compiled else model
    opt = make_optimizer(model, "sgd", 0.05)
    if not foreach:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, foreach=False)
    g = torch.Generator().manual_seed(seed)

    def step() -> None:
        idx = torch.randint(len(y), (BATCH,), generator=g)
        view = torch.randint(VIEWS, (BATCH,), generator=g)
        xb = jitter(x[idx], SHIFT, shifts=shifts[view, :, idx].T)
        loss = distillation_loss(forward(xb), t_logits[view, idx], y[idx], T, ALPHA, validate=False)
        opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        opt.step()

    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def side_by_side(label: str, engine, alternative, repeats: int, unit: str) -> None:
    a, b = [], []
    for rep in range(repeats):
        for fn, out in ((engine, a), (alternative, b)) if rep % 2 == 0 else ((alternative, b), (engine, a)):
            out.append(fn())
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"  {label:52s} {ma:6.2f} {unit} vs {mb:6.2f} {unit}: the engine's choice is {mb / ma:.2f}x")


def teacher_pass(teacher, x, *, inference_mode: bool) -> float:
    start = time.perf_counter()
    if inference_mode:
        with torch.inference_mode():
            predict_logits(teacher, x)
    else:
        predict_logits(teacher, x)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20000, help="training images in part 1's epochs")
    ap.add_argument("--steps", type=int, default=300, help="timed student steps per trial in part 2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile trial")
    ap.add_argument("--sample", action="store_true", help="use the shipped 2,000-image sample (a smoke run)")
    args = ap.parse_args()

    data = load("mnist", sample=args.sample)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; {data}")
    torch.manual_seed(0)
    teacher = build(PRESET.teacher.arch)
    print("\nPart 1")
    profile_epoch(f"teacher {PRESET.teacher.arch}, jitter {PRESET.teacher.jitter}", teacher, data, args.images,
                  lr=PRESET.teacher.lr, jitter=PRESET.teacher.jitter, batch_size=PRESET.teacher.batch_size)
    torch.manual_seed(0)
    profile_epoch(f"distilled student {PRESET.student.arch}, {VIEWS} cached teacher views",
                  build(PRESET.student.arch), data, args.images, teacher=teacher, T=T, alpha=ALPHA,
                  lr=PRESET.student.lr, jitter=SHIFT, teacher_views=VIEWS, batch_size=BATCH)
    teacher.eval()

    x, y = data.x_train[:10000], data.y_train[:10000]  # the trials' steps draw random batches of these
    g = torch.Generator().manual_seed(0)
    shifts, t_logits = cache_teacher_views(teacher, x, SHIFT, VIEWS, g)
    print(f"\nPart 2: the engine's choice against the alternative, median of {args.repeats}, "
          f"{args.steps} student steps per trial:")

    def steps(**kw):
        return lambda: student_steps(x, y, shifts, t_logits, steps=args.steps, **kw)

    side_by_side("SGD foreach=True vs per-parameter loop", steps(), steps(foreach=False), args.repeats, "s")
    side_by_side("zero_grad(set_to_none=True) vs zeroing", steps(), steps(set_to_none=False), args.repeats, "s")

    def one_thread():
        torch.set_num_threads(1)
        try:
            return steps()()
        finally:
            torch.set_num_threads(threads)

    if threads > 1:
        side_by_side(f"{threads} threads vs 1", steps(), one_thread, args.repeats, "s")
    if not args.no_compile:
        start = time.perf_counter()
        steps(compiled=True)()
        first = time.perf_counter() - start
        side_by_side("eager vs torch.compile (steady state, compiled)", steps(), steps(compiled=True),
                     args.repeats, "s")
        print(f"    torch.compile's first run (compiling included): {first:.1f} s")

    teacher_data = data.subset(min(args.images, 6400), 10)

    def teacher_epoch(relu_first: bool):
        def run():
            torch.manual_seed(0)
            model = build(PRESET.teacher.arch)
            if relu_first:  # the usual order: conv, ReLU, pool
                f = model.features
                model.features = torch.nn.Sequential(f[0], f[2], f[1], f[3], f[5], f[4]).to(
                    memory_format=torch.channels_last)
            start = time.perf_counter()
            train(model, teacher_data, epochs=1, lr=PRESET.teacher.lr, jitter=PRESET.teacher.jitter,
                  progress=False, evaluate_every_epoch=False)
            return time.perf_counter() - start
        return run

    side_by_side(f"teacher epoch over {len(teacher_data.y_train):,} images: pool then ReLU vs ReLU then pool",
                 teacher_epoch(False), teacher_epoch(True), args.repeats, "s")
    xs = data.x_train[:20000]
    side_by_side("teacher pass over 20,000 images: no_grad vs inference_mode",
                 lambda: teacher_pass(teacher, xs, inference_mode=False),
                 lambda: teacher_pass(teacher, xs, inference_mode=True), args.repeats, "s")
    plain = build("cnn-small").eval()
    plain.load_state_dict(teacher.state_dict())
    plain.features.to(memory_format=torch.contiguous_format)
    plain.forward = lambda inp: plain.head(plain.features(inp.view(-1, 1, 28, 28)))
    side_by_side("teacher pass: channels_last vs contiguous convolutions",
                 lambda: teacher_pass(teacher, xs, inference_mode=False),
                 lambda: teacher_pass(plain, xs, inference_mode=False), args.repeats, "s")


if __name__ == "__main__":
    main()
