"""Experiments that lessons run, also runnable as ``kdlab experiment NAME --seed N --json PATH``.

Each experiment lives in its own module here: a function ``experiment(*,
seed=0, fast=None, data=None, device=None, progress=True, **options) ->
Outcome`` (the contract: :mod:`kdlab.experiments.contract`), registered with
:func:`register` under its command-line name with the options the terminal may
set. The lesson calls the same function, so a number in a notebook and a
number from the terminal come from one implementation. The command line only
parses (the :class:`Option` types convert the strings), runs, prints the
summary and writes the JSON.
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
from .contract import Outcome


@dataclass
class Option:
    """A command-line option of an experiment: ``--name`` converted by ``type``.

    The default None leaves the setting to the experiment (its ``DEFAULTS``,
    or ``FAST`` under KDLAB_FAST), which the help then states.
    """

    name: str
    type: Callable
    default: object = None
    help: str = ""

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


def comma_list(cast: Callable) -> Callable[[str], tuple]:
    """An Option type: ``"30,100"`` -> ``(30, 100)`` with each value converted by ``cast``."""
    def parse(text: str) -> tuple:
        return tuple(cast(v) for v in text.replace(" ", "").split(",") if v)
    parse.__name__ = f"comma-separated {cast.__name__}"   # argparse names the type in its errors
    return parse


@dataclass
class Experiment:
    name: str
    function: Callable[..., Outcome]
    description: str
    options: list = field(default_factory=list)
    summarize: Callable[[dict], str] | None = None  # a human-readable table of the result
    defaults: dict = field(default_factory=dict)    # the experiment's DEFAULTS and FAST, for the help
    fast: dict = field(default_factory=dict)

    def run(self, **kwargs) -> dict:
        """The experiment's JSON-ready result (its models left out)."""
        return self.function(**kwargs).result

    def default_text(self, key: str) -> str:
        def show(v):
            return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) if isinstance(v, (list, tuple)) \
                else f"{v:g}" if isinstance(v, float) else str(v)
        if key not in self.defaults:
            return ""
        text = f"default {show(self.defaults[key])}"
        if key in self.fast and self.fast[key] != self.defaults[key]:
            text += f", {show(self.fast[key])} under KDLAB_FAST"
        return f" ({text})"


REGISTRY: dict[str, Experiment] = {}


def register(name: str, description: str, options=(), summarize=None, defaults=None, fast=None):
    """Decorator: make an ``experiment`` function available as ``kdlab experiment NAME``."""
    def wrap(function):
        REGISTRY[name] = Experiment(name, function, description, list(options), summarize,
                                    dict(defaults or {}), dict(fast or {}))
        return function
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


def all_experiments() -> list[Experiment]:
    """Every registered experiment, by name."""
    _discover()
    return [REGISTRY[name] for name in sorted(REGISTRY)]


def write_json(result: dict, path: Path) -> None:
    atomic_write(path, json.dumps(result, indent=2) + "\n")


def add_cli(sub) -> None:
    """Register ``kdlab experiment NAME [options] --seed N --json PATH``."""
    p = sub.add_parser("experiment", help="run one of the lessons' experiments from the terminal",
                       description="Run an experiment that a lesson runs; print its table and write JSON.")
    names = p.add_subparsers(dest="experiment", required=True, metavar="NAME")
    for exp in all_experiments():
        # argparse %-formats help strings: a description saying "1%" would crash --help.
        described = exp.description.replace("%", "%%")
        q = names.add_parser(exp.name, help=described, description=exp.description)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--json", type=Path, default=None, metavar="PATH",
                       help=f"where to write the result (default: runs/{exp.name}-sSEED.json)")
        q.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
        q.add_argument("--no-progress", action="store_true", help="hide the progress bars")
        for opt in exp.options:
            q.add_argument(f"--{opt.name}", type=opt.type, default=opt.default, dest=opt.key,
                           help=(opt.help + exp.default_text(opt.key)).replace("%", "%%"))
        q.set_defaults(func=_cmd_experiment, _experiment=exp)


def _cmd_experiment(args) -> int:
    exp: Experiment = args._experiment
    options = {opt.key: getattr(args, opt.key) for opt in exp.options}
    # Checked before the experiment runs: a bad path must not cost its minutes of training.
    paths.check_seed(args.seed)
    path = paths.check_output_file(args.json or Path("runs") / f"{exp.name}-s{args.seed}.json", "--json")
    paths.check_device(args.device)
    from .. import settings

    if settings.fast_mode():
        print("KDLAB_FAST=1: a smoke test on a small slice of the data, with few epochs; its numbers are "
              "not results", flush=True)
    result = exp.run(seed=args.seed, device=args.device, progress=not args.no_progress, **options)
    print(exp.summarize(result) if exp.summarize is not None else json.dumps(result, indent=2))
    write_json(result, path)
    print(f"wrote {path}")
    return 0
