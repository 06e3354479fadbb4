"""Give the course's notebooks the complete kernelspec and language_info the python3 kernel writes.

A notebook that lacks them is filled in by JupyterLab as soon as its kernel
starts, so it opens already marked as changed. ``nbgrader generate_assignment``
copies a notebook's metadata from solutions/ to notebooks/ unchanged, so
setting it in both keeps notebooks/ equal to what generation produces (the
course tests compare them)::

    python scripts/notebook_metadata.py            # rewrite solutions/ and notebooks/ where needed
    python scripts/notebook_metadata.py --check    # list the notebooks that lack it; exit 1 if any

Only the notebook-level ``kernelspec`` and ``language_info`` change; the file
is written the way nbformat and JupyterLab write it (indent 1, sorted keys).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("solutions", "notebooks")
KERNEL = "python3"


def expected_metadata() -> dict:
    """``{"kernelspec": ..., "language_info": ...}`` as this environment's python3 kernel reports them."""
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    return {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": KERNEL},
            "language_info": json.loads(json.dumps(IPythonKernel.language_info))}


def course_notebooks(root: Path = REPO) -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (root / folder).glob("*/*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts)


def missing(path: Path, want: dict) -> list[str]:
    """The metadata keys of ``path`` that differ from ``want``."""
    have = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    return [key for key, value in want.items() if have.get(key) != value]


def apply(path: Path, want: dict) -> bool:
    """Set the metadata in ``path``; True if the file changed."""
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    nb.setdefault("metadata", {}).update(want)
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if text == raw:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the notebooks that lack the metadata")
    args = parser.parse_args(argv)
    want = expected_metadata()
    if args.check:
        bad = [(p, missing(p, want)) for p in course_notebooks()]
        bad = [(p, keys) for p, keys in bad if keys]
        for p, keys in bad:
            print(f"{p.relative_to(REPO)}: {', '.join(keys)} incomplete")
        return 1 if bad else 0
    changed = [p for p in course_notebooks() if apply(p, want)]
    for p in changed:
        print(f"updated {p.relative_to(REPO)}")
    print(f"{len(changed)} notebooks updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
