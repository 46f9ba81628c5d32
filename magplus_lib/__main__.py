"""Command line: `python -m magplus_lib <command> ...`.

run-notebook NB --profile P [--tag T] [-p name=value ...]   execute a notebook (see runner.py)
params NB --profile P --out FILE [--tag T] [-p ...]          resolved parameters, for make
check-profile P                                              list unset ${VAR} paths of a profile
magnify --checkpoint CKPT --alpha A --input IN --output OUT  magnify a clip (see magnify_cli.py)
"""

from __future__ import annotations

import argparse
import sys

from .profiles import ProfileError, missing_variables


def _add_notebook_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="jupytext percent-format notebook, e.g. notebooks/00_data.py")
    p.add_argument("--profile", required=True, help="profile name (ci, default, full) or a YAML path")
    p.add_argument(
        "--tag", default=None, help="suffix of the executed notebook's name (one per parameter set)"
    )
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override (value read as YAML)",
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "magnify":
        # The magnifier owns its own argument parsing; imported lazily because it loads torch.
        from .magnify_cli import main as magnify_main

        return magnify_main(argv[1:])

    parser = argparse.ArgumentParser(prog="python -m magplus_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_notebook_args(sub.add_parser("run-notebook", help="execute a notebook headless with papermill"))
    p_params = sub.add_parser("params", help="write a notebook's resolved parameters (used by make)")
    _add_notebook_args(p_params)
    p_params.add_argument("--out", required=True)
    p_check = sub.add_parser("check-profile", help="fail listing every unset path variable of a profile")
    p_check.add_argument("profile")
    sub.add_parser("magnify", help="magnify a folder of frames or a video (see --help of the subcommand)")
    args = parser.parse_args(argv)

    from . import runner

    try:
        if args.command == "check-profile":
            missing = missing_variables(args.profile)
            if missing:
                from .profiles import MissingPathsError

                print(MissingPathsError(args.profile, missing), file=sys.stderr)
                return 2
            return 0
        overrides = dict(runner.parse_override(p) for p in args.param)
        if args.command == "params":
            runner.write_params_file(args.notebook, args.profile, args.out, tag=args.tag, overrides=overrides)
            return 0
        path = runner.run_notebook(args.notebook, args.profile, tag=args.tag, overrides=overrides)
        print(f"wrote {path}")
        return 0
    except runner.NotebookFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ProfileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
