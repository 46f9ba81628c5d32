"""Runs a cache entry needs besides the stage itself, each in a scratch copy of the results folder:

- `fingerprinter`: the stage's first `cache.FINGERPRINT_STEPS` steps (every run-length setting capped),
  digested; `make cache` records it and `make cache-rekey` compares it under changed code;
- `verify_cached_stage`: the whole stage retrained and compared with its entry (`make verify-cache`);
- `adopt`: an entry for checkpoints trained by another checkout of the same code (a second clone, a
  GPU machine), its provenance taken from that checkout's manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from magplus_lib.harness import cache, provenance
from magplus_lib.harness.profiles import profile_name, results_dir
from magplus_lib.harness.runner import RUNNER_PARAMETERS, output_name, resolve_parameters, run_notebook

# Wall-time records, which differ between two runs of the same training.
_VOLATILE = {"seconds", "time_s", "cpu_s"}


@contextlib.contextmanager
def _results_root(root: Path) -> Iterator[None]:
    """Point results_dir() (and so the kernels started meanwhile) at another results root; the kernels'
    MPLCONFIGDIR and IPYTHONDIR, which the runner puts under that root, are put back afterwards too (the
    scratch root is deleted)."""
    names = ("MAGPLUS_RESULTS", "MPLCONFIGDIR", "IPYTHONDIR")
    old = {name: os.environ.get(name) for name in names}
    os.environ["MAGPLUS_RESULTS"] = str(root)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def scratch_results(profile: str, results: Path, exclude: Iterable[str]) -> Any:
    """A temporary results root holding `results`' corpora (linked), splits and checkpoints (copied),
    without the files in `exclude`; yields the root to use as MAGPLUS_RESULTS."""
    root = Path(tempfile.mkdtemp(dir=results.parent, prefix=f".scratch-{profile}-"))
    try:
        dst = root / profile
        dst.mkdir()
        skip = set(exclude)
        if (results / "data").is_dir():  # corpora and crop caches: read, and only ever rewritten alike
            (dst / "data").symlink_to((results / "data").resolve())
        for name in ("splits", "checkpoints", "logs", "keys"):
            src = results / name
            if not src.is_dir():
                continue
            for p in src.rglob("*"):
                rel = str(p.relative_to(results))
                if p.is_file() and rel not in skip and not p.name.endswith(".optim.safetensors"):
                    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(p, dst / rel)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fingerprinter(
    notebook: str | os.PathLike,
    profile: str,
    tag: str | None,
    overrides: dict[str, Any] | None,
    stems: list[str],
    settings: dict[str, Any] | None = None,
) -> Callable[..., str]:
    """A function that replays the stage's first steps in a scratch results folder (the same corpora
    and upstream checkpoints) and returns the digest of the weights they train."""

    def fingerprint(trained: bool = False) -> str:
        """`trained`: the stage has just trained in results/ with this code; when no run length was
        capped, its weights are the replay's, so they are digested without running it again."""
        params = resolve_parameters(notebook, profile, overrides, settings=settings)
        capped = cache.capped_steps(params)
        shorter = {k: v for k, v in capped.items() if v != params[k] and k not in RUNNER_PARAMETERS}
        kept = {k: v for k, v in (overrides or {}).items() if k.split(".")[0] not in shorter}
        out_dir = results_dir(profile_name(profile))
        if trained and not shorter:
            return cache.weights_digest(
                [out_dir / "checkpoints" / f"{s}.safetensors" for s in cache.expand_stems(stems, out_dir)]
            )
        with scratch_results(out_dir.name, out_dir, cache.stage_files(stems, out_dir)) as root:
            with _results_root(root):
                run_notebook(notebook, profile, tag, {**kept, **shorter}, progress=False, settings=settings)
            new = root / out_dir.name
            digest = cache.weights_digest(
                [new / "checkpoints" / f"{s}.safetensors" for s in cache.expand_stems(stems, new)]
            )
        steps = cache.FINGERPRINT_STEPS
        print(f"fingerprint of {output_name(notebook, tag)} after {steps} steps: {digest[:16]}")
        return digest

    return fingerprint


def _located(value: Any) -> Any:
    """Paths of checkpoints in a side file (e.g. a fine-tune's `init`), relative to the results folder."""
    if isinstance(value, dict):
        return {k: _located(v) for k, v in value.items()}
    if isinstance(value, str) and "/checkpoints/" in value:
        return value[value.rindex("/checkpoints/") + 1 :]
    return value


def _comparable(path: Path) -> Any:
    """A side file or loss log without its wall-time entries and with results-relative paths."""
    if path.suffix == ".json":
        return {k: _located(v) for k, v in json.loads(path.read_text()).items() if k not in _VOLATILE}
    import pandas as pd

    df = pd.read_csv(path)
    return df.drop(columns=[c for c in df.columns if c in _VOLATILE]).to_dict("list")


def _entry(stage: str, profile: str) -> dict[str, Any]:
    prov = cache.read_provenance(profile, stage)
    if prov is None:
        raise cache.CacheError(f"no cache entry {cache.entry_dir(profile, stage)}")
    cache.verify_entry(profile, stage, prov)
    return prov


def cheapest_entry(profile: str) -> str:
    """The cached stage of `profile` that took the least time to train."""
    entries = sorted(cache.cache_root().joinpath(profile).glob("*/provenance.json"))
    if not entries:
        raise cache.CacheError(f"no cache entries in {cache.cache_root() / profile}")
    cost = {p.parent.name: json.loads(p.read_text())["trained"].get("seconds", float("inf")) for p in entries}
    return min(cost, key=cost.get)


def verify_cached_stage(stage: str | None, profile: str) -> list[str]:
    """Retrain a cached stage (default: the cheapest) in a scratch results folder (the corpora and
    upstream checkpoints of results/<profile>, the notebook called as make calls it) and compare it with
    its cache entry: tensors bit for bit, side files and loss logs apart from wall times. Returns the
    differences."""
    prof = profile_name(profile)
    stage = stage or cheapest_entry(prof)
    prov = _entry(stage, prof)
    print(f"retraining {stage} (it took {prov['trained'].get('seconds')} s when it was cached)", flush=True)
    inv, out_dir, entry = prov["invocation"], results_dir(prof), cache.entry_dir(prof, stage)
    problems = []
    t0 = time.perf_counter()
    with scratch_results(prof, out_dir, cache.stage_files(inv["stems"], out_dir)) as root:
        with _results_root(root):
            run_notebook(
                inv["notebook"],
                profile,
                inv["tag"],
                inv["overrides"],
                after=inv["after"],
                cache_stems=inv["stems"],
                cache_mode="off",
                settings=inv.get("settings"),
            )
        new = root / prof
        key = cache.read_state(new, stage)["key"]
        if key != prov["key"]:
            problems.append(
                f"{stage}: the current code or settings give key {key[:12]}, the entry {prov['key'][:12]} "
                "(make cache-rekey re-keys a behaviour-neutral change; make cache retrains)"
            )
        for rel in sorted(prov["files"]):
            if not (new / rel).is_file():
                problems.append(f"{stage}: the retrained run wrote no {rel}")
            elif rel.endswith(".safetensors"):
                if cache.weights_digest([new / rel]) != cache.weights_digest([entry / rel]):
                    problems.append(f"{stage}: {rel} differs from the cached tensors")
            elif _comparable(new / rel) != _comparable(entry / rel):
                problems.append(f"{stage}: {rel} differs from the cached file (wall times aside)")
    if not problems:
        print(
            f"verified {stage}: retrained in {time.perf_counter() - t0:.0f} s; its {len(prov['files'])} "
            f"files equal the entry trained at {str(prov['trained'].get('commit'))[:12]} (tensors bit for "
            "bit, side files and logs apart from wall times)"
        )
    return problems


def adopt(stage: str, profile: str, trained_manifest: str | os.PathLike) -> Path:
    """Cache the checkpoints a stage left in results/<profile> although another checkout trained them.

    The stage must have run here (its key state records the key under this checkout's code, and the
    trained files were found finished); `trained_manifest` is the other checkout's manifest, whose last
    successful run of the stage gives the provenance (commit, seconds, parameters). Its parameters must
    equal this run's. The fingerprint is replayed here."""
    prof = profile_name(profile)
    out_dir = results_dir(prof)
    state = cache.read_state(out_dir, stage)
    if state is None:
        raise cache.CacheError(f"{stage} has not run in {out_dir}: run it (make) before adopting its files")
    runs = [
        r
        for r in json.loads(Path(trained_manifest).read_text())["runs"]
        if r["name"] == stage and r["status"] == "ok"
    ]
    if not runs:
        raise cache.CacheError(f"{trained_manifest} records no successful run of {stage}")
    run = runs[-1]
    theirs = {k: v for k, v in run["parameters"].items() if k != "results_dir"}
    if theirs != state["parts"]["params"]:
        changed = cache.describe_change({"params": theirs}, {"params": state["parts"]["params"]})
        raise cache.CacheError(f"{trained_manifest}: {stage} was trained with other parameters ({changed})")
    invocation = state["invocation"]
    trained = {
        "commit": run["git_commit"],
        "command": f"make (stage {stage}) in another checkout of {run['git_commit'][:12]}",
        "seconds": run["seconds"],
        "date": run["end"],
        "versions": run.get("versions"),
        # the manifest does not say which machine ran it: this is the machine that adopts the files
        "adopted": {
            "manifest": str(trained_manifest),
            "at_commit": provenance.git_commit(),
            "machine": provenance.machine(),
        },
    }
    inv = invocation
    fp = fingerprinter(
        inv["notebook"], profile, inv["tag"], inv["overrides"], inv["stems"], inv["settings"]
    )()
    files = [rel for rel in state["files"] if (out_dir / rel).is_file()]
    return cache.write_entry(
        prof,
        stage,
        out_dir,
        files,
        state["parts"],
        invocation,
        trained,
        {"steps": cache.FINGERPRINT_STEPS, "sha256": fp, "cpu": provenance.machine()["cpu"]},
    )
