"""Run a jupytext percent-format notebook headless with papermill, on a profile's parameters.

`run_notebook` converts `notebooks/NN_name.py` to a notebook node in memory, injects the profile's
values for the names its `parameters` cell declares (plus `profile` and `results_dir`), executes it on
the `magplus` kernel with the repository root as working directory, writes the executed notebook to
`results/<profile>/executed/<name>.ipynb` through a temporary file, and appends a manifest entry.

A failing cell raises `NotebookFailed` naming the notebook, the cell and the error; the half-executed
notebook is kept as `<name>.FAILED.ipynb` so that it can never be taken for a finished one.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from magplus_lib.harness import atomicio, cache, locks, provenance
from magplus_lib.harness import settings as settings_mod
from magplus_lib.harness.profiles import (
    REPO_ROOT,
    ProfileError,
    load_profile,
    notebook_path,
    profile_name,
    results_dir,
    results_root,
)

KERNEL_NAME = "magplus"
# Names every notebook receives from the runner rather than from the profile.
RUNNER_PARAMETERS = ("profile", "results_dir")
_PARAM_CELL = re.compile(r"^# %%.*tags=\[[^\]]*[\"']parameters[\"']", re.MULTILINE)
_NEXT_CELL = re.compile(r"^# %%", re.MULTILINE)
_VERSIONED = (
    "torch",
    "torchvision",
    "numpy",
    "opencv-python-headless",
    "pandas",
    "scikit-learn",
    "papermill",
    "jupytext",
    "matplotlib",
    "seaborn",
    "safetensors",
)


class NotebookFailed(RuntimeError):
    """A cell raised; the message names the notebook, the cell and the error."""


def parameters_cell_source(notebook: str | os.PathLike) -> str:
    """The source of the cell tagged `parameters` in a percent-format .py notebook."""
    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {path} does not exist")
    text = path.read_text()
    m = _PARAM_CELL.search(text)
    if m is None:
        raise ProfileError(
            f"{path}: no cell tagged 'parameters' (expected a line '# %% tags=[\"parameters\"]')"
        )
    body_start = text.index("\n", m.start()) + 1
    nxt = _NEXT_CELL.search(text, body_start)
    return text[body_start : nxt.start() if nxt else len(text)]


def declared_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """{name: default} for each simple assignment in the notebook's parameters cell."""
    src = parameters_cell_source(notebook)
    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        raise ProfileError(f"{notebook}: parameters cell is not valid Python: {exc}") from exc
    names: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    try:
                        names[t.id] = ast.literal_eval(node.value) if node.value is not None else None
                    except ValueError:
                        names[t.id] = None
    return names


def output_name(notebook: str | os.PathLike, tag: str | None = None) -> str:
    stem = Path(notebook).stem
    return f"{stem}-{tag}" if tag else stem


def resolve_parameters(
    notebook: str | os.PathLike,
    profile: str,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters the runner injects: profile values for declared names, then overrides, in order.

    `settings` change the profile itself (make's SET, e.g. `pretrain.steps`: one setting of a section,
    the rest kept) before the notebook takes the names it declares; each must name a profile entry.
    `overrides` (`-p`) change this notebook's parameters (`name`, `section.key` or a mapping merged
    into a section); one naming a parameter the notebook does not declare is an error (papermill would
    only warn and run with the default, silently ignoring what the user asked for). Both are merged
    and type-checked by settings.apply.
    """
    declared = declared_parameters(notebook)
    missing_runner = [n for n in RUNNER_PARAMETERS if n not in declared]
    if missing_runner:
        raise ProfileError(f"{notebook}: parameters cell must declare {missing_runner}")
    prof = settings_mod.apply(load_profile(profile, env=env), settings or {}, f"profile {profile}")
    params: dict[str, Any] = {k: prof[k] for k in declared if k in prof}
    params["profile"] = profile_name(profile)
    params["results_dir"] = notebook_path(results_dir(params["profile"]))
    # Overrides are checked against the profile's values, or the notebook's defaults for the names the
    # profile leaves to the notebook; only names the profile gives or the caller sets are injected.
    base = {**declared, **params}
    changed = settings_mod.apply(base, overrides or {}, f"notebook {notebook}'s parameters cell")
    for key in {k.split(".")[0] for k in overrides or {}}:
        params[key] = changed[key]
    return params


def _module_file(dotted: str) -> Path | None:
    """The source file of a magplus_lib module or package (`magplus_lib.data.synthme`), or None."""
    path = REPO_ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """The magplus_lib modules a source file imports (the library imports absolutely only), with the
    packages their import runs (`magplus_lib.data.synthme` also runs `magplus_lib.data`)."""
    try:
        tree = ast.parse(path.read_text())
    except (SyntaxError, OSError):
        return set()
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names if a.name.startswith("magplus_lib."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "magplus_lib":
            mods.add(node.module)
            # `from magplus_lib.data import synthme` imports a submodule
            mods.update(
                f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")
            )
    parents = {".".join(m.split(".")[:k]) for m in mods for k in range(2, m.count(".") + 1)}
    return mods | parents


def _module_dependencies(notebook: Path) -> list[Path]:
    """magplus_lib source files the notebook imports, followed transitively (for make's .d files)."""
    seen: set[Path] = set()
    todo = sorted(_imported_modules(notebook))
    while todo:
        path = _module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(sorted(_imported_modules(path)))
    return sorted(seen)


def write_params_file(
    notebook: str | os.PathLike,
    profile: str,
    out: str | os.PathLike,
    tag: str | None = None,
    overrides: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> bool:
    """Write the resolved parameters (JSON) and a make dependency file, each only if it changed.

    make's stage targets depend on this file, so editing one profile section reruns only the stages
    whose parameters actually changed; the .d file adds the library modules the notebook imports.
    """
    params = resolve_parameters(notebook, profile, overrides, settings=settings)
    out = Path(out)
    changed = atomicio.write_text_if_changed(
        out, json.dumps(params, indent=2, sort_keys=True, default=str) + "\n"
    )
    target = results_dir(profile_name(profile)) / "executed" / f"{output_name(notebook, tag)}.ipynb"
    deps = " ".join(os.path.relpath(p, REPO_ROOT) for p in _module_dependencies(Path(notebook)))
    atomicio.write_text_if_changed(out.with_suffix(".d"), f"{target}: {deps}\n")
    return changed


def _versions() -> dict[str, str]:
    out = {}
    for pkg in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def _lock_sha256() -> str | None:
    """sha256 of requirements.lock, which pins every package version the run computed with."""
    lock = REPO_ROOT / "requirements.lock"
    return cache.file_sha256(lock) if lock.is_file() else None


def _snapshot(root: Path) -> dict[str, float]:
    """mtime of every file under results/<profile>, except executed notebooks and the manifest."""
    snap: dict[str, float] = {}
    if not root.exists():
        return snap
    for dirpath, _dirs, files in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir.parts[:1] in (("executed",), ("params",), ("keys",)):
            continue
        for f in files:
            if rel_dir == Path(".") and f.startswith("manifest.json"):
                continue
            p = Path(dirpath) / f
            with contextlib.suppress(OSError):
                snap[str(p.relative_to(root))] = p.stat().st_mtime
    return snap


def _summarise_outputs(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """Files created or changed by the run; bulky folders (data, generated) are summarised by count."""
    changed = sorted(k for k, m in after.items() if before.get(k) != m)
    bulky: dict[str, int] = {}
    listed = []
    for k in changed:
        top = Path(k).parts[0]
        if top in ("data", "generated"):
            bulky[top] = bulky.get(top, 0) + 1
        else:
            listed.append(k)
    return listed + [f"{top}/ ({n} files)" for top, n in sorted(bulky.items())]


def append_manifest(profile_results: Path, entry: dict[str, Any]) -> None:
    """Append one run to results/<profile>/manifest.json under a lock (make -j may run stages at once)."""
    profile_results.mkdir(parents=True, exist_ok=True)
    manifest = profile_results / "manifest.json"
    with open(profile_results / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs: list[dict[str, Any]] = []
        if manifest.exists():
            try:
                runs = json.loads(manifest.read_text()).get("runs", [])
            except json.JSONDecodeError:
                # Never lose history silently: keep the unreadable file aside and start a new list.
                manifest.rename(manifest.with_suffix(".corrupt.json"))
        runs.append(entry)
        atomicio.write_json(manifest, {"runs": runs})


def _ran_meanwhile(out_dir: Path, name: str, params: dict[str, Any]) -> bool:
    """Whether the manifest's last run of stage `name` succeeded with these parameters."""
    try:
        runs = json.loads((out_dir / "manifest.json").read_text()).get("runs", [])
    except (OSError, json.JSONDecodeError):
        return False
    last = next((r for r in reversed(runs) if r.get("name") == name), None)
    same = json.loads(json.dumps(params, default=str)) == last.get("parameters") if last else False
    return bool(same and last.get("status") == "ok" and (out_dir / "executed" / f"{name}.ipynb").is_file())


def _failure_message(nb_name: str, exc: Exception) -> str:
    cell = getattr(exc, "cell_index", None)
    count = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    source = getattr(exc, "source", "") or ""
    first_line = source.strip().splitlines()[0] if source.strip() else ""
    where = f"cell {cell}" if cell is not None else "an unknown cell"
    if count is not None:
        where += f" (execution count {count})"
    if first_line:
        where += f", starting `{first_line[:80]}`"
    return f"notebook {nb_name} failed in {where}: {ename}: {evalue}"


def _command() -> str:
    """How this process was started, for a cache entry's provenance."""
    if sys.argv and sys.argv[0].endswith("__main__.py"):
        return "python -m magplus_lib " + shlex.join(sys.argv[1:])
    return shlex.join(sys.argv)


def stage_key_parts(
    notebook: Path, params: dict[str, Any], out_dir: Path, after: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """The stage's cache key parts: parameters, notebook + imported modules, versions, upstream keys."""
    return cache.key_parts(
        notebook, params, _module_dependencies(notebook), cache.upstream_keys(out_dir, after), _versions()
    )


def read_notebook(notebook: str | os.PathLike, kernel_name: str = KERNEL_NAME):
    """The jupytext notebook as an nbformat object, set to run on `kernel_name`."""
    import jupytext

    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {
        "name": kernel_name,
        "display_name": "Python (magplus)",
        "language": "python",
    }
    return nb


def run_notebook(
    notebook: str | os.PathLike,
    profile: str,
    tag: str | None = None,
    overrides: dict[str, Any] | None = None,
    kernel_name: str = KERNEL_NAME,
    progress: bool = True,
    after: list[str] | tuple[str, ...] = (),
    cache_stems: list[str] | tuple[str, ...] = (),
    cache_mode: str = "off",
    fingerprint: Callable[..., str] | None = None,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Execute `notebook` on `profile`; return the executed notebook's path (see module docstring).

    `after` names the upstream stages (their keys enter this stage's cache key); `cache_stems` the
    checkpoints this stage trains, restored from or written to the cache according to `cache_mode`
    (see cache.py); `fingerprint` replays its first steps (cache_runs.fingerprinter) for write/rekey.
    """
    import papermill as pm

    notebook = Path(notebook)
    params = resolve_parameters(notebook, profile, overrides, settings=settings)
    prof_name = profile_name(profile)
    out_dir = results_dir(prof_name)
    name = output_name(notebook, tag)
    invocation = {
        "notebook": str(notebook),
        "tag": tag,
        "overrides": overrides or {},
        "settings": settings or {},
        "after": list(after),
        "stems": list(cache_stems),
    }
    with locks.stage_lock(out_dir, name) as waited:
        if waited and _ran_meanwhile(out_dir, name, params):
            print(f"stage {name} was run meanwhile by the process this one waited for; not rerunning it")
            return out_dir / "executed" / f"{name}.ipynb"
        atomicio.remove_stale_temps(out_dir)
        stage_cache = cache.prepare(
            prof_name,
            name,
            out_dir,
            cache_mode,
            stage_key_parts(notebook, params, out_dir, after),
            invocation,
            fingerprint,
        )
        if stage_cache.message:
            print(stage_cache.message, flush=True)
        target = out_dir / "executed" / f"{name}.ipynb"
        failed = target.with_suffix(".FAILED.ipynb")
        target.parent.mkdir(parents=True, exist_ok=True)
        nb = read_notebook(notebook, kernel_name)

        # tqdm reads TQDM_* defaults from the environment (which the kernel inherits): without this every
        # progress tick of a training loop would be stored in the executed notebook.
        os.environ.setdefault("TQDM_MININTERVAL", "15")
        # One intra-op thread per kernel unless the caller says otherwise: make runs two stages at a time,
        # and two 2-thread OpenMP pools on 2 cores slow each other several times over. Fixed here rather
        # than by JOBS, so a stage's numbers do not depend on how many stages run beside it.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        # matplotlib's font cache and IPython's profile go under results/.cache, not the user's home.
        for var, sub in (("MPLCONFIGDIR", "matplotlib"), ("IPYTHONDIR", "ipython")):
            if var not in os.environ:
                os.environ[var] = str(results_root() / ".cache" / sub)
                Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
        before = _snapshot(out_dir)
        started = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        status = "ok"
        error = None
        try:
            with atomicio.atomic_path(target) as tmp:
                try:
                    pm.execute_notebook(
                        nb,
                        str(tmp),
                        parameters=params,
                        kernel_name=kernel_name,
                        cwd=str(REPO_ROOT),
                        progress_bar=progress,
                        report_mode=False,
                    )
                except Exception as exc:
                    status = "failed"
                    error = _failure_message(str(notebook), exc)
                    if tmp.exists():
                        os.replace(tmp, failed)
                    # An older finished notebook no longer matches what was asked for: remove it too.
                    target.unlink(missing_ok=True)
                    raise NotebookFailed(error) from exc
            failed.unlink(missing_ok=True)
            cache.finish(stage_cache, time.perf_counter() - t0, _command(), fingerprint)
        finally:
            entry = {
                "notebook": str(notebook),
                "name": name,
                "profile": prof_name,
                "parameters": params,
                "status": status,
                "error": error,
                "git_commit": provenance.git_commit(),
                "versions": _versions(),
                "requirements_lock_sha256": _lock_sha256(),
                "start": started.isoformat(timespec="seconds"),
                "end": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - t0, 2),
                "executed_notebook": notebook_path(target if status == "ok" else failed),
                "outputs": _summarise_outputs(before, _snapshot(out_dir)),
                "cache": stage_cache.manifest_record(),
            }
            append_manifest(out_dir, entry)
        return target


def check_run(profile: str, stages: list[str], expected: Iterable[str] = ()) -> list[str]:
    """Problems with a finished run of `stages` on `profile`: a stage whose executed notebook is missing
    or whose last manifest entry did not finish ok, and each of `expected` (paths or glob patterns under
    the results folder: what the stages' checks write) that matches no file. Also returns the warnings
    the stages printed (lines starting 'WARNING'), prefixed 'warning:', so that a skipped check is seen."""
    out_dir = results_dir(profile)
    manifest = out_dir / "manifest.json"
    runs = json.loads(manifest.read_text()).get("runs", []) if manifest.is_file() else []
    last = {r["name"]: r for r in runs}
    problems, warnings = [], []
    for stage in stages:
        nb = out_dir / "executed" / f"{stage}.ipynb"
        if not nb.is_file():
            problems.append(f"{stage}: no executed notebook {nb}")
            continue
        if last.get(stage, {}).get("status") != "ok":
            problems.append(f"{stage}: the manifest {manifest} records no finished run")
        for cell in json.loads(nb.read_text()).get("cells", []):
            for output in cell.get("outputs", []):
                text = output.get("text", "")
                for line in (text if isinstance(text, str) else "".join(text)).splitlines():
                    if line.startswith("WARNING") and f"warning: {stage}: {line}" not in warnings:
                        warnings.append(f"warning: {stage}: {line}")
    for pattern in expected:
        if not any(p.is_file() for p in out_dir.glob(pattern)):
            problems.append(f"{out_dir / pattern}: not written (a check that should have run did not)")
    return problems + warnings
