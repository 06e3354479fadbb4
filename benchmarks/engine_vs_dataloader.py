"""kdlab's distillation engine against the usual PyTorch loop, side by side in one run.

The usual loop is what most KD tutorials write: a DataLoader over a
TensorDataset, and the teacher's forward pass at every step. Both distill the
same student (same initial weights, same T, alpha, optimizer, schedule and
epochs) from the same teacher; their runs alternate so machine noise hits both.

    KDLAB_DATA=../shared/datasets python benchmarks/engine_vs_dataloader.py --epochs 3 --repeats 2

With ``--jitter 2`` (the Hinton preset's transfer set) the usual loop jitters every
batch afresh and runs the teacher on it; kdlab's engine draws each image from
``--teacher-views`` fixed jittered views (default: the preset's number) whose teacher
logits it cached once.

Prints seconds per run (kdlab's includes caching the teacher's logits), test
errors, and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from kdlab import data as kdata
from kdlab.jobs import PRESETS
from kdlab.models import build
from kdlab.train import evaluate, make_optimizer, train, warmup_cosine


def usual_loop(student, teacher, ds, *, epochs, T, alpha, lr, batch_size, seed, jitter=0):
    """The textbook loop: DataLoader batches (jittered if asked), teacher forward every step."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(ds.x_train, ds.y_train), batch_size=batch_size, shuffle=True, generator=g)
    opt = make_optimizer(student, "sgd", lr)
    steps = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, len(loader) // 2))
    teacher.eval()
    student.train()
    for _ in range(epochs):
        for xb, yb in loader:
            if jitter:
                xb = kdata.jitter(xb, jitter, g)
            with torch.no_grad():
                t_logits = teacher(xb)
            s_logits = student(xb)
            soft = F.kl_div(F.log_softmax(s_logits / T, dim=1), F.softmax(t_logits / T, dim=1),
                            reduction="batchmean") * T * T
            loss = alpha * soft + (1 - alpha) * F.cross_entropy(s_logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    student.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="cnn-small", help="teacher architecture (default: the quick preset's)")
    ap.add_argument("--student", default="mlp-800x2")
    ap.add_argument("--teacher-epochs", type=int, default=1, help="epochs to train the teacher first")
    ap.add_argument("--epochs", type=int, default=3, help="distillation epochs per run")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each loop, alternating")
    ap.add_argument("--sample", action="store_true", help="use the shipped 2,000-image sample")
    ap.add_argument("--T", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--jitter", type=int, default=0, help="translate training images by up to this many pixels")
    ap.add_argument("--teacher-views", type=int, default=PRESETS["hinton"].teacher_views,
                    help="with --jitter: the jittered views kdlab's engine caches teacher logits on "
                         "(default: the hinton preset's)")
    args = ap.parse_args()

    ds = kdata.load("mnist", sample=args.sample)
    print(f"data: {ds}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    teacher = build(args.teacher)
    train(teacher, ds, epochs=args.teacher_epochs, lr=0.05, progress=False, evaluate_every_epoch=False)
    print(f"teacher {args.teacher}: {evaluate(teacher, ds.x_test, ds.y_test)['test_errors']} test errors")

    times = {"kdlab": [], "usual": []}
    errors = {"kdlab": [], "usual": []}
    for rep in range(args.repeats):
        for name in (("kdlab", "usual") if rep % 2 == 0 else ("usual", "kdlab")):
            torch.manual_seed(rep)
            student = build(args.student)
            start = time.perf_counter()
            if name == "kdlab":
                train(student, ds, teacher=teacher, T=args.T, alpha=args.alpha, epochs=args.epochs, lr=args.lr,
                      batch_size=args.batch_size, seed=rep, progress=False, evaluate_every_epoch=False,
                      jitter=args.jitter, teacher_views=args.teacher_views if args.jitter else 0)
            else:
                usual_loop(student, teacher, ds, epochs=args.epochs, T=args.T, alpha=args.alpha, lr=args.lr,
                           batch_size=args.batch_size, seed=rep, jitter=args.jitter)
            elapsed = time.perf_counter() - start
            err = evaluate(student, ds.x_test, ds.y_test)["test_errors"]
            times[name].append(elapsed)
            errors[name].append(err)
            print(f"run {rep}  {name:5s}  {elapsed:7.1f} s  ({elapsed / args.epochs:5.2f} s/epoch)  "
                  f"{err} test errors", flush=True)
    k, u = statistics.median(times["kdlab"]), statistics.median(times["usual"])
    transfer = (f", transfer set jittered by up to {args.jitter} pixels "
                f"(kdlab: {args.teacher_views} cached views)" if args.jitter else "")
    print(f"\n{args.epochs} distillation epochs of {args.student} from {args.teacher}{transfer}, "
          f"median of {args.repeats}:")
    print(f"  usual loop (DataLoader, teacher every step): {u:7.1f} s, test errors {errors['usual']}")
    print(f"  kdlab engine (tensor batches, cached logits): {k:7.1f} s, test errors {errors['kdlab']}")
    print(f"  speed-up: {u / k:.2f}x")


if __name__ == "__main__":
    main()
