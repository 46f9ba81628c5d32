"""Command line: `python -m magplus_lib <command> ...`.

run-notebook NB --profile P [--tag T] [-p name=value ...]   execute a notebook (see runner.py)
params NB --profile P --out FILE [--tag T] [-p ...]          resolved parameters, for make
check-profile P                                              list every unset or unusable path
check-run P STAGE...                                         fail unless every stage finished
verify-cache STAGE --profile P                               retrain a cached stage, compare bit for bit
adopt-cache STAGE --profile P --manifest M                   cache checkpoints another checkout trained
magnify --checkpoint CKPT --alpha A --input IN --output OUT  magnify a clip (see magnify_cli.py)
readme [--check]                                             refresh README, docs/findings.md from results
export-notebooks RESULTS                                     executed notebooks as Markdown pages (make paper)
lab-notebooks P                                              notebooks with a run's parameters (make lab)
"""

from __future__ import annotations

import argparse
import sys

from magplus_lib.harness.profiles import ProfileError


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
        help="override of this notebook's parameter or of one key of it (section.key; value read as YAML)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change the profile's setting before the notebook takes its parameters (make's SET)",
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "readme":
        from magplus_lib.harness.profiles import REPO_ROOT
        from magplus_lib.harness.readme import DOCUMENTS, refresh, stale_blocks

        pages = [REPO_ROOT / d for d in DOCUMENTS]
        if argv[1:] == ["--check"]:
            stale = [(p, path) for p in pages for path in stale_blocks(p)]
            for page, path in stale:
                print(
                    f"{page.name}: the block of {path} differs from the file (make readme)", file=sys.stderr
                )
            return 1 if stale else 0
        for page in pages:
            for path in refresh(page):
                print(f"{page.name}: refreshed the block of {path}")
        return 0
    if argv and argv[0] == "magnify":
        # The magnifier owns its own argument parsing; imported lazily because it loads torch.
        from magplus_lib.magnifier.cli import main as magnify_main

        return magnify_main(argv[1:])

    from magplus_lib.harness import cache, runner
    from magplus_lib.harness import settings as settings_mod
    from magplus_lib.harness.notebook_export import ExportError

    parser = argparse.ArgumentParser(prog="python -m magplus_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_notebook_args(sub.add_parser("run-notebook", help="execute a notebook headless with papermill"))
    p_params = sub.add_parser("params", help="write a notebook's resolved parameters (used by make)")
    _add_notebook_args(p_params)
    p_params.add_argument("--out", required=True)
    p_run = sub.choices["run-notebook"]
    p_run.add_argument("--after", default="", help="upstream stage names (their keys enter this one's)")
    p_run.add_argument("--cache", default="", help="checkpoint stems this stage trains (cached)")
    p_run.add_argument("--cache-mode", default="restore", choices=cache.MODES, help="see cache.py")
    p_verify = sub.add_parser("verify-cache", help="retrain one cached stage and compare it bit for bit")
    p_verify.add_argument("stage", nargs="?", help="default: the entry that took least time to train")
    p_verify.add_argument("--profile", required=True)
    p_adopt = sub.add_parser(
        "adopt-cache", help="cache checkpoints another checkout trained (see cache_runs)"
    )
    p_adopt.add_argument("stage", help="a stage that ran here on the other checkout's finished checkpoints")
    p_adopt.add_argument("--profile", required=True)
    p_adopt.add_argument(
        "--manifest", required=True, help="the other checkout's results/<profile>/manifest.json"
    )
    p_check = sub.add_parser(
        "check-profile", help="fail listing every unset path variable of a profile, or a bad --set"
    )
    p_check.add_argument("profile")
    p_check.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p_check_run = sub.add_parser("check-run", help="fail unless every named stage finished (make smoke-full)")
    p_check_run.add_argument("profile")
    p_check_run.add_argument("stages", nargs="+")
    p_check_run.add_argument(
        "--expect", nargs="*", default=[], help="files (globs) under the results folder that must exist"
    )
    sub.add_parser("magnify", help="magnify a folder of frames or a video (see --help of the subcommand)")
    p_export = sub.add_parser("export-notebooks", help="executed notebooks as Markdown pages (make paper)")
    p_export.add_argument("results", help="a profile's results folder, e.g. results/default")
    p_lab = sub.add_parser("lab-notebooks", help="a finished run's notebooks with its parameters (make lab)")
    p_lab.add_argument("profile")
    args = parser.parse_args(argv)

    try:
        if args.command == "export-notebooks":
            from pathlib import Path

            from magplus_lib.harness.notebook_export import export_all

            pages = export_all(Path(args.results))
            print(f"{len(pages)} notebook pages in {Path(args.results) / 'notebooks'}")
            return 0
        if args.command == "lab-notebooks":
            from magplus_lib.harness.lab import prepare

            written, kept = prepare(args.profile)
            where = (written or kept)[0].parent
            print(f"{len(written)} notebooks written, {len(kept)} kept as they were, in {where}")
            if kept:
                print("(a kept copy may hold your edits; delete one to get it fresh)")
            return 0
        if args.command == "adopt-cache":
            from magplus_lib.harness.cache_runs import adopt

            print(f"cached {args.stage} in {adopt(args.stage, args.profile, args.manifest)}")
            return 0
        if args.command == "verify-cache":
            from magplus_lib.harness.cache_runs import verify_cached_stage

            problems = verify_cached_stage(args.stage, args.profile)
            for line in problems:
                print(f"error: {line}", file=sys.stderr)
            return 1 if problems else 0
        if args.command == "check-run":
            lines = runner.check_run(args.profile, args.stages, args.expect)
            for line in lines:
                print(line if line.startswith("warning:") else f"error: {line}", file=sys.stderr)
            failed = [line for line in lines if not line.startswith("warning:")]
            print(f"{args.profile}: {len(args.stages) - len(failed)} of {len(args.stages)} stages finished")
            return 1 if failed else 0
        if args.command == "check-profile":
            from magplus_lib.harness.profile_check import problems

            # unset variables, SET's values, then the user's files, each through a stage's loader
            found = problems(args.profile, dict(settings_mod.parse_assignment(p) for p in args.set))
            for line in found:
                print(f"error: {line}", file=sys.stderr)
            if found:
                print(f"profile {args.profile}: {len(found)} problem(s) with its paths", file=sys.stderr)
            return 2 if found else 0
        overrides = dict(settings_mod.parse_assignment(p) for p in args.param)
        settings = dict(settings_mod.parse_assignment(p) for p in args.set)
        if args.command == "params":
            runner.write_params_file(
                args.notebook, args.profile, args.out, tag=args.tag, overrides=overrides, settings=settings
            )
            return 0
        stems = args.cache.split()
        fingerprint = None
        if stems and args.cache_mode in ("write", "rekey", "extend", "attest"):
            from magplus_lib.harness.cache_runs import fingerprinter

            fingerprint = fingerprinter(args.notebook, args.profile, args.tag, overrides, stems, settings)
        path = runner.run_notebook(
            args.notebook,
            args.profile,
            tag=args.tag,
            overrides=overrides,
            after=args.after.split(),
            cache_stems=stems,
            cache_mode=args.cache_mode,
            fingerprint=fingerprint,
            settings=settings,
        )
        print(f"wrote {path}")
        return 0
    except runner.NotebookFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ProfileError, cache.CacheError, ExportError, OSError) as exc:
        # A bad profile, setting, cache entry or file: one message, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
