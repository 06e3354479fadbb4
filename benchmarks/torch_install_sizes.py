"""How much ``pip install torch==2.13.0`` downloads on Linux x86-64, from PyPI and from PyTorch's CPU index.

    python benchmarks/torch_install_sizes.py            # needs the package indexes; downloads no wheel

pip resolves the install without downloading the wheels (``--dry-run
--report``, reading each wheel's metadata by HTTP range requests), then the
size of every wheel is read from its index's JSON (PEP 691/700). The README's
"Installing" section quotes what this prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

INDEXES = {"PyPI (the default: CUDA build)": "https://pypi.org/simple",
           "PyTorch's CPU index": "https://download.pytorch.org/whl/cpu"}


def resolve(index: str, extra: str | None, spec: str) -> list:
    report = Path(tempfile.mkdtemp()) / "report.json"
    cmd = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed",
           "--only-binary=:all:", "--use-feature=fast-deps", "--quiet", "--report", str(report),
           "--index-url", index]
    if extra:
        cmd += ["--extra-index-url", extra]
    subprocess.run(cmd + [spec], check=True)
    return [(i["metadata"]["name"], i["download_info"]["url"]) for i in json.loads(report.read_text())["install"]]


def size_of(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.headers["Content-Length"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default="torch==2.13.0")
    p.add_argument("--cpu-wheel", type=Path, default=None,
                   help="a CPU wheel of torch already downloaded from PyTorch's CPU index, for when that index "
                        "cannot be reached from here")
    args = p.parse_args(argv)
    items = resolve(INDEXES["PyPI (the default: CUDA build)"], None, args.spec)
    sizes = [(name, size_of(url)) for name, url in items]
    total = sum(s for _, s in sizes)
    gpu = sum(s for n, s in sizes if n.lower().startswith(("nvidia", "cuda", "triton")))
    torch_size = next(s for n, s in sizes if n == "torch")
    rest = total - gpu - torch_size
    print(f"PyPI (pip install -r requirements.txt on plain PyPI): {len(sizes)} wheels, {total / 2**30:.2f} GiB; "
          f"torch itself {torch_size / 2**20:.0f} MiB; "
          f"{sum(1 for n, _ in sizes if n.lower().startswith('nvidia'))} nvidia-* wheels; "
          f"CUDA, nvidia and triton {gpu / 2**30:.2f} GiB")
    try:
        size_of(INDEXES["PyTorch's CPU index"] + "/torch/")
        cpu = resolve(INDEXES["PyTorch's CPU index"], "https://pypi.org/simple", args.spec)
        cpu_sizes = [(name, size_of(url)) for name, url in cpu]
        print(f"PyTorch's CPU index: {len(cpu_sizes)} wheels, {sum(s for _, s in cpu_sizes) / 2**30:.2f} GiB")
    except OSError as e:
        if args.cpu_wheel is None:
            print(f"PyTorch's CPU index: not reachable from here ({e}); pass --cpu-wheel PATH")
        else:
            wheel = args.cpu_wheel.stat().st_size
            print(f"PyTorch's CPU index: {args.cpu_wheel.name} is {wheel / 2**20:.0f} MiB; with the same "
                  f"{len(sizes) - 1 - sum(1 for n, _ in sizes if n.lower().startswith(('nvidia', 'cuda', 'triton')))}"
                  f" pure dependencies ({rest / 2**20:.0f} MiB): {(wheel + rest) / 2**20:.0f} MiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
