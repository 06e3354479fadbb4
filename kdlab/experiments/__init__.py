"""Experiments that lessons run, also runnable as ``kdlab experiment NAME --seed N --json PATH``.

Each experiment lives in its own module here and registers itself with
:func:`register`: a function ``run(seed=0, **options) -> dict`` (JSON-ready),
the options it accepts on the command line, and a one-line description. The
lesson calls the same function, so a number in a notebook and a number from
the terminal come from one implementation.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import paths
from ..paths import atomic_write


@dataclass
class Option:
    """A command-line option of an experiment: ``--name`` of ``type`` with a ``default``."""

    name: str
    type: type
    default: object
    help: str = ""


@dataclass
class Experiment:
    name: str
    run: Callable[..., dict]
    description: str
    options: list = field(default_factory=list)
    summarize: Callable[[dict], str] | None = None  # a human-readable table of the result


REGISTRY: dict[str, Experiment] = {}


def register(name: str, description: str, options=(), summarize=None):
    """Decorator: make ``run`` available as ``kdlab experiment NAME``."""
    def wrap(run):
        REGISTRY[name] = Experiment(name, run, description, list(options), summarize)
        return run
    return wrap


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def get(name: str) -> Experiment:
    _discover()
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(sorted(REGISTRY)) or '(none)'}")
    return REGISTRY[name]


def write_json(result: dict, path: Path) -> None:
    atomic_write(path, json.dumps(result, indent=2) + "\n")


def add_cli(sub) -> None:
    """Register ``kdlab experiment NAME [options] --seed N --json PATH``."""
    _discover()
    p = sub.add_parser("experiment", help="run one of the lessons' experiments from the terminal",
                       description="Run an experiment that a lesson runs; print its table and write JSON.")
    names = p.add_subparsers(dest="experiment", required=True, metavar="NAME")
    for exp in sorted(REGISTRY.values(), key=lambda e: e.name):
        # argparse %-formats help strings: a description saying "1%" would crash --help.
        described = exp.description.replace("%", "%%")
        q = names.add_parser(exp.name, help=described, description=exp.description)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--json", type=Path, default=None, metavar="PATH",
                       help=f"where to write the result (default: runs/{exp.name}-sSEED.json)")
        q.add_argument("--no-progress", action="store_true", help="hide the progress bars")
        for opt in exp.options:
            q.add_argument(f"--{opt.name}", type=opt.type, default=opt.default,
                           help=opt.help.replace("%", "%%") if opt.help else opt.help,
                           dest=opt.name.replace("-", "_"))
        q.set_defaults(func=_cmd_experiment, _experiment=exp)


def _cmd_experiment(args) -> int:
    exp: Experiment = args._experiment
    options = {opt.name.replace("-", "_"): getattr(args, opt.name.replace("-", "_")) for opt in exp.options}
    # Checked before the experiment runs: a bad path must not cost its minutes of training.
    paths.check_seed(args.seed)
    path = paths.check_output_file(args.json or Path("runs") / f"{exp.name}-s{args.seed}.json", "--json")
    for opt in exp.options:
        if opt.type is Path and options[opt.name.replace("-", "_")] is not None:
            paths.check_output_file(options[opt.name.replace("-", "_")], f"--{opt.name}")
    from .. import settings

    if settings.fast_mode():
        print("KDLAB_FAST=1: a smoke test on a small slice of the data, with few epochs; its numbers are "
              "not results", flush=True)
    result = exp.run(seed=args.seed, progress=not args.no_progress, **options)
    if exp.summarize is not None:
        print(exp.summarize(result))
    else:
        print(json.dumps(result, indent=2))
    write_json(result, path)
    print(f"wrote {path}")
    return 0
