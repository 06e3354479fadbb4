"""What fraction of this machine's matmul peak does student training reach?

Measures torch.mm FLOP/s on exactly the matrix shapes an 800-800 MLP student's
training step multiplies (forward, and the two backward products per layer), then
times real training steps of the student and counts their FLOPs the same way.

    python benchmarks/matmul_peak.py [--arch mlp-800x2] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from kdlab.models import build
from kdlab.train import make_optimizer


def layer_shapes(model) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def step_matmuls(shapes, b) -> list[tuple[int, int, int]]:
    """(m, k, n) of every product in one training step: y = xW, dX = dY W^T, dW = X^T dY."""
    out = []
    for i, (fan_in, fan_out) in enumerate(shapes):
        out.append((b, fan_in, fan_out))           # forward
        out.append((fan_in, b, fan_out))           # weight gradient
        if i > 0:
            out.append((b, fan_out, fan_in))       # input gradient (not needed for the first layer)
    return out


def time_mm(m, k, n, seconds=1.0) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(10):
        torch.mm(a, b)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="mlp-800x2")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = build(args.arch)
    shapes = layer_shapes(model)
    mms = step_matmuls(shapes, args.batch_size)
    flops_per_step = sum(2 * m * k * n for m, k, n in mms)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.arch}, batch {args.batch_size}")
    total_time = 0.0
    for m, k, n in mms:
        rate = time_mm(m, k, n)
        total_time += 2 * m * k * n / rate
        print(f"  mm {m:5d} x {k:5d} x {n:5d}: {rate / 1e9:7.1f} GFLOP/s")
    peak = flops_per_step / total_time
    print(f"matmul peak on the step's shapes (time-weighted): {peak / 1e9:.1f} GFLOP/s")

    x = torch.rand(args.batch_size * 50, 1, 28, 28)
    y = torch.randint(0, 10, (len(x),))
    opt = make_optimizer(model, "sgd", 0.01)
    model.train()
    for phase in ("warm-up", "timed"):
        start = time.perf_counter()
        for s in range(args.steps if phase == "timed" else 20):
            i = (s % 50) * args.batch_size
            loss = F.cross_entropy(model(x[i:i + args.batch_size]), y[i:i + args.batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        elapsed = time.perf_counter() - start
    achieved = flops_per_step * args.steps / elapsed
    print(f"student training: {args.steps / elapsed:.0f} steps/s, {achieved / 1e9:.1f} GFLOP/s "
          f"(matmul FLOPs only) = {100 * achieved / peak:.0f}% of the matmul peak")


if __name__ == "__main__":
    main()
