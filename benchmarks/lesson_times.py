"""How long does each lesson take with the full data? Executes the solution notebooks top to bottom.

Each part starts from an empty kdlab cache, as a learner's first run does (so the
part's first lesson pays for training its teacher), and the parts run one after
another in their order. KDLAB_FAST is switched off; the data comes from
$KDLAB_DATA (or wherever kdlab.data finds it).

    KDLAB_DATA=../shared/datasets python benchmarks/lesson_times.py [--only 04 05] \\
        [--out runs/lessons] [--json docs/results/lesson-times.json]

``--out`` keeps the executed notebooks, with every number the lessons printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
# The issues' limits on 2 CPU cores, in seconds.
LIMITS = {"01": 120, "02": 120, "03": 120, "04": 240, "05": 480, "06": 480, "07": 480, "08": 480, "09": 600}


def lessons(only: list[str] | None) -> list[Path]:
    found = sorted(REPO.glob("solutions/part*/[0-9][0-9]_*.ipynb"), key=lambda p: p.name)
    return [p for p in found if not only or p.name[:2] in only]


def run(path: Path, cache: Path, out: Path | None) -> float:
    nb = nbformat.read(path, as_version=4)
    env = {"KDLAB_FAST": "0", "XDG_CACHE_HOME": str(cache), "MPLBACKEND": "Agg"}
    saved = {k: os.environ.get(k) for k in (*env, "NBGRADER_EXECUTION")}
    os.environ.update(env)
    os.environ.pop("NBGRADER_EXECUTION", None)
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / path.name)
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="lesson numbers, e.g. 04 05")
    parser.add_argument("--out", type=Path, help="folder for the executed notebooks")
    parser.add_argument("--json", type=Path, help="write the times here")
    args = parser.parse_args(argv)

    rows, caches = [], {}
    with tempfile.TemporaryDirectory(prefix="kdlab-lessons-") as scratch:
        for path in lessons(args.only):
            part = path.parent.name
            cache = caches.setdefault(part, Path(scratch) / part)
            seconds = run(path, cache, args.out)
            limit = LIMITS.get(path.name[:2])
            ok = "" if limit is None else ("within" if seconds <= limit else "OVER") + f" {limit} s"
            print(f"{path.parent.name}/{path.name}: {seconds:7.1f} s  {ok}", flush=True)
            rows.append({"lesson": f"{part}/{path.name}", "seconds": round(seconds, 1), "limit_seconds": limit})
    result = {"lessons": rows, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "data": os.environ.get("KDLAB_DATA")}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
