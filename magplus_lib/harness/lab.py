"""Notebooks to step through in JupyterLab, each with the parameters a finished run gave it.

A notebook's own parameters cell holds tiny `ci` defaults, and JupyterLab starts a kernel in the
notebook's folder, not at the repository root where `make` runs it: opened as it is, a notebook looks
for `results/ci` under `notebooks/` and stops. `prepare` writes, for the last finished run of every
stage in `results/<profile>/manifest.json`, a copy `results/<profile>/lab/<stage>.ipynb` with that
run's parameters injected after the parameters cell (papermill's `prepare_only`: nothing executes)
and `results_dir` made absolute, so that it runs top to bottom against that profile's artefacts from
any working directory. A copy that exists is kept, since it may hold the reader's edits (an alpha
grid being tried); delete it to get a fresh one.
"""

from __future__ import annotations

import json
from pathlib import Path

from magplus_lib.harness import atomicio
from magplus_lib.harness.profiles import REPO_ROOT, ProfileError, profile_name, results_dir
from magplus_lib.harness.runner import KERNEL_NAME, read_notebook


def finished_runs(results: Path) -> dict[str, dict]:
    """stage name -> the manifest entry of its last run, for the stages whose last run finished ok."""
    manifest = Path(results) / "manifest.json"
    try:
        runs = json.loads(manifest.read_text()).get("runs", [])
    except FileNotFoundError:
        runs = []
    except (OSError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{manifest}: unreadable manifest ({exc})") from None
    last: dict[str, dict] = {}
    for run in runs:
        last[run["name"]] = run
    return {name: run for name, run in last.items() if run.get("status") == "ok"}


def lab_parameters(run: dict) -> dict:
    """The run's parameters with `results_dir` absolute (the kernel may start anywhere)."""
    params = dict(run["parameters"])
    where = Path(params["results_dir"])
    params["results_dir"] = str(where if where.is_absolute() else (REPO_ROOT / where).resolve())
    return params


def prepare(profile: str) -> tuple[list[Path], list[Path]]:
    """(written, kept): the lab copies of every finished stage of `profile`."""
    import papermill as pm

    results = results_dir(profile_name(profile))
    runs = finished_runs(results)
    if not runs:
        raise ProfileError(
            f"{results}/manifest.json: no finished run of profile {profile!r}; run "
            f"`make paper PROFILE={profile}` first"
        )
    written, kept = [], []
    for name, run in sorted(runs.items()):
        target = results / "lab" / f"{name}.ipynb"
        if target.exists():
            kept.append(target)
            continue
        source = REPO_ROOT / run["notebook"]
        if not source.is_file():
            raise ProfileError(f"{source}: notebook of stage {name} (in {results}/manifest.json) is missing")
        nb = read_notebook(source)
        with atomicio.atomic_path(target) as tmp:
            pm.execute_notebook(
                nb,
                str(tmp),
                parameters=lab_parameters(run),
                kernel_name=KERNEL_NAME,
                prepare_only=True,
                progress_bar=False,
            )
        written.append(target)
    return written, kept
