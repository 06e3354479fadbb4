"""The ``kdlab`` command: argument parsing and printing; the work is done by the library.

    kdlab distill [--preset quick|hinton] [--teacher RECIPE] [--dataset mnist|fashion-mnist] [--seed N] [--json PATH]
        the main job (:mod:`kdlab.jobs`): a teacher, a student alone and the student distilled; a table
        (parameters, MACs per image, CPU latency, test errors), JSON and a PNG of the training curves
    kdlab data download|verify|where [--dataset NAME] [--data DIR]
        fetch the data sets (checksums verified), check them, or say where they are (:mod:`kdlab.data`)
    kdlab experiment NAME [options] [--seed N] [--json PATH] [--device DEV]
        one of the lessons' experiments (:mod:`kdlab.experiments`; ``kdlab experiment --help`` lists
        them): its table, and its JSON with the common header
    kdlab grade SUBMISSIONS --out DIR [--workers N]
        autograde a class's hand-ins, each in a sandbox (:mod:`kdlab.grading`)
    kdlab lab [--notebook-dir DIR] [--port N] [--no-browser] [--fast]
        open the course in JupyterLab, for a learner working alone (:mod:`kdlab.lab`)

Problems the user can fix (missing or corrupt data, bad arguments) print one
line, ``kdlab: error: ...``, and exit with status 2; no traceback. Paths,
devices and seeds are checked before any work starts (:mod:`kdlab.paths`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import paths, settings
from .errors import KdlabError


def _add_distill(sub) -> None:
    from .jobs import PRESETS
    from .zoo import RECIPES

    p = sub.add_parser("distill", help="train a teacher, a student alone and a distilled student; print the table",
                       description="Train a teacher, the student alone and the same student distilled from the "
                                   "teacher; print a results table, write JSON and a PNG of the training curves.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="quick (default, about 2 minutes on 2 CPU cores) or hinton "
                        "(Hinton et al.'s MNIST table, about 14 minutes)")
    p.add_argument("--teacher", choices=sorted(RECIPES), default=None, metavar="RECIPE",
                   help="train the teacher with this kdlab.zoo recipe instead of the preset's: "
                        + ", ".join(sorted(RECIPES)) + " (mlp-teacher: lessons 2-3's 1200-1200 MLP, "
                        "the paper's pairing with the 800-800 student)")
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="where to write the results (default: runs/distill-DATASET-PRESET[-RECIPE]-sSEED.json)")
    p.add_argument("--plot", type=Path, default=None, metavar="PATH",
                   help="where to write the training curves (default: beside the JSON, .png)")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="folder holding mnist/ and fashion-mnist/ (default: $KDLAB_DATA, the cache, a download)")
    p.add_argument("--temperature", "-T", type=float, default=None, help="override the preset's temperature")
    p.add_argument("--alpha", type=float, default=None, help="override the preset's weight of the soft term")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args) -> int:
    from .jobs import results_table, run_distill, save_results

    if args.temperature is not None and not args.temperature > 0:
        raise KdlabError(f"--temperature must be positive, got {args.temperature}")
    if args.alpha is not None and not 0 <= args.alpha <= 1:
        raise KdlabError(f"--alpha must lie in [0, 1], got {args.alpha}")
    # Every path, the device and the seed are checked before minutes of training, not after.
    paths.check_seed(args.seed)
    recipe = f"-{args.teacher}" if args.teacher else ""
    json_path = paths.check_output_file(
        args.json or Path("runs") / f"distill-{args.dataset}-{args.preset}{recipe}-s{args.seed}.json", "--json")
    plot_path = paths.check_output_file(args.plot or json_path.with_suffix(".png"), "--plot")
    if args.data is not None:
        paths.check_input_dir(args.data, "--data")
    paths.check_device(args.device)
    if settings.fast_mode():
        from .data import fast_source

        print(f"KDLAB_FAST=1: a smoke test on {fast_source(args.dataset, args.data)}, with few epochs; "
              "its numbers are not results", flush=True)
    results = run_distill(args.preset, args.dataset, args.seed, teacher=args.teacher, data_root=args.data,
                          device=args.device, temperature=args.temperature, alpha=args.alpha,
                          progress=not args.no_progress)
    print(results_table(results))
    save_results(results, json_path, plot_path)
    print(f"wrote {json_path} and {plot_path}")
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="download or verify the data sets")
    p.add_argument("action", choices=["download", "verify", "where"])
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    p.add_argument("--data", type=Path, default=None, metavar="DIR")
    p.set_defaults(func=_cmd_data)


def _cmd_data(args) -> int:
    from . import data

    if args.data is not None:
        if args.action == "download":
            paths.check_output_dir(args.data, "--data")
        else:
            paths.check_input_dir(args.data, "--data")
    if args.action == "download":
        folder = data.download(args.dataset, args.data / args.dataset if args.data else None)
        print(f"{args.dataset}: verified files in {folder}")
        return 0
    folder = data.locate(args.dataset, args.data, download_missing=False)
    if args.action == "where":
        print(folder)
        return 0
    report = data.verify(folder, args.dataset)
    for stem, ok in report.items():
        print(f"{'ok      ' if ok else 'MISMATCH'}  {data.file_of(folder, stem)}")
    return 0 if all(report.values()) else 1


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="kdlab", description="Knowledge distillation, by doing it.")
    parser.add_argument("--version", action="version", version=f"kdlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_distill(sub)
    _add_data(sub)
    from . import lab

    lab.add_cli(sub)
    for extra in ("kdlab.experiments", "kdlab.grading"):
        # Later parts register their own sub-commands (experiment, grade) when present.
        try:
            module = __import__(extra, fromlist=["add_cli"])
        except ModuleNotFoundError as e:
            if e.name != extra:
                raise
            continue
        module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    settings.freeze_heap_at_exit()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KdlabError as e:
        print(f"kdlab: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # bad settings reach us as ValueError from the library
        print(f"kdlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
