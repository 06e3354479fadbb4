"""What the models of `kdlab distill` cost to run: parameters, MACs per image, batch-1 CPU latency.

    python benchmarks/model_costs.py [--rounds 5] [--json docs/results/model-costs.json]

The models are fresh ones of each architecture (what a dense forward pass costs does not depend on
the weights' values): the CNN teacher of the quick and hinton presets, lessons 2-3's 1200-1200 MLP
teacher (``kdlab distill --teacher mlp-teacher``) and the 800-800 student. MACs are counted
(:func:`kdlab.costs.macs`: exact, the same on every machine); latency is measured
(:func:`kdlab.costs.latency_ms`: median of 200 batch-1 forwards after 20 of warm-up, one thread,
CPU) ``--rounds`` times, and the median round is reported beside the range and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from kdlab.costs import LATENCY, latency_ms, macs
from kdlab.experiments.contract import environment, format_table
from kdlab.models import build, count_params
from kdlab.paths import atomic_write

MODELS = {
    "cnn-small": "teacher of the quick and hinton presets (kdlab.zoo cnn-teacher)",
    "mlp-1200x2": "teacher of lessons 2-3 (kdlab.zoo mlp-teacher)",
    "mlp-800x2": "the student, Hinton et al.'s 800-800",
}
STUDENT = "mlp-800x2"


def measure(rounds: int) -> dict:
    start = time.perf_counter()
    built = {arch: build(arch).eval() for arch in MODELS}
    out = {arch: {"role": role, "params": count_params(built[arch]), "macs": macs(built[arch]),
                  "latency_ms_rounds": []} for arch, role in MODELS.items()}
    for _ in range(rounds):   # the models take turns, so a burst of load hits them all alike
        for arch, model in built.items():
            out[arch]["latency_ms_rounds"].append(round(latency_ms(model), 4))
    for entry in out.values():
        entry["latency_ms"] = statistics.median(entry["latency_ms_rounds"])
    return {"benchmark": "model-costs", "environment": environment(), "loadavg": list(os.getloadavg()),
            "latency_settings": {**LATENCY, "device": "cpu", "rounds": rounds}, "models": out,
            "seconds": {"total": round(time.perf_counter() - start, 1)}}


def report(r: dict) -> str:
    models = r["models"]
    rows = [(arch, e["role"], f"{e['params']:,}", f"{e['macs']:,}", f"{e['latency_ms']:.3f}",
             f"{min(e['latency_ms_rounds']):.3f}-{max(e['latency_ms_rounds']):.3f}") for arch, e in models.items()]
    lines = [format_table(("model", "role", "params", "MACs/image", "CPU ms", "range"), rows, left=2), ""]
    s = models[STUDENT]
    for arch, t in models.items():
        if arch != STUDENT:
            lines.append(f"{STUDENT} against {arch}: {s['params'] / t['params']:.2f}x the parameters, "
                         f"{s['macs'] / t['macs']:.2f}x the MACs, {s['latency_ms'] / t['latency_ms']:.2f}x the "
                         f"latency")
    lat = r["latency_settings"]
    lines.append(f"latency: batch {lat['batch_size']}, {lat['threads']} thread, {lat['statistic']} of "
                 f"{lat['repeats']} forwards after {lat['warmup']}, median of {lat['rounds']} rounds; "
                 f"load average {' '.join(f'{x:.2f}' for x in r['loadavg'])} on {r['environment']['cpus']} CPUs")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="latency measurements per model (default 5)")
    parser.add_argument("--json", type=Path, help="where to write the numbers")
    args = parser.parse_args(argv)
    result = measure(args.rounds)
    print(report(result))
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
