"""Restore-or-retrain: a committed cache of the trained checkpoints of a profile's training stages.

A stage that trains (`01_pretrain-*`, `02_finetune-*`, `03_backbones`) declares the checkpoint stems it
owns (`checkpoints/<stem>.safetensors`, its `.json` side file and `logs/<stem>.csv`; optimizer states
are never cached). Its **key** is the sha256 of exactly what determines those files, computed before
the stage runs:

- `params`: the notebook's resolved parameters (without `results_dir`, which is only a location);
- `code`: the sha256 of the notebook and of every library module it imports (the make `.d` list);
- `versions`: Python and the pinned packages' versions;
- `upstream`: the keys of the stages it runs after (a Merkle chain, so a changed corpus setting or a
  retrained pretraining changes every key downstream of it).

`cache/<profile>/<stage>/` holds the files and `provenance.json` (the key and its parts, the commit,
command, wall time and machine of the run that trained them, each file's sha256 and size, and a
short-trajectory fingerprint). The runner (`runner.run_notebook`) asks `prepare` before a stage runs:

- `restore` (make paper): a matching entry is verified (sha256) and copied into results/, so the
  notebook finds finished checkpoints and only evaluates; a mismatch says which part changed and
  the stage trains;
- `scratch` (FROM_SCRATCH=1): nothing comes from the cache, and files a restore put there are removed;
- `write` (make cache): like restore, and a stage that trained writes its entry;
- `rekey` (make cache-rekey): a stale entry is replayed for `FINGERPRINT_STEPS` steps under the current
  code and settings; it is re-keyed only when the weights' digest reproduces bit for bit, else the
  stage retrains and its entry is rewritten. A changed run length (`steps`, `inverse_steps`) always
  retrains: the replay is capped below it, so it cannot see it. Any other changed setting is judged
  by the replay (an evaluation setting leaves it alone; a training setting changes it);
- `attest` (make cache-attest): an entry whose key matches is replayed for `FINGERPRINT_STEPS` steps
  on this machine and the digest is recorded as its fingerprint for this CPU model (`attested`), then
  restored. Float kernels differ between CPU models, so a fingerprint only compares on the CPU model that
  replayed it: attest an entry on a new kind of machine *before* changing code, then rekey there;
- `extend` (make cache-extend): like write, but a stale entry whose key differs only in the stage's
  parameters (same code, notebook, versions and upstream) is restored before the stage runs, and each
  trainer's own checkpoint check decides what it keeps: an unchanged model is reused, one whose new
  settings add a phase after its finished run (fomm's cross-identity phase, which has its own optimizer
  and random stream) continues from it exactly, any other retrains from step 0. The entry written
  records the one it extended (`trained.extends`). Land code changes first (rekey), then extend.

The state of each stage's outputs in results/ (key, origin, files) is kept in
`results/<profile>/keys/<stage>.json`; outputs left by a run with another key are removed before the
stage runs, so a changed setting or code always retrains instead of silently reusing stale weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magplus_lib.harness import atomicio, provenance
from magplus_lib.harness.profiles import REPO_ROOT

MODES = ("off", "restore", "scratch", "write", "rekey", "extend", "attest")
# Steps replayed for an entry's fingerprint: enough that every loss term, the optimizer's moments and
# BatchNorm's running statistics have moved the weights, few enough to replay a stage in about a minute.
FINGERPRINT_STEPS = 24
# Parameters that set a run's length: capped to FINGERPRINT_STEPS wherever they appear in a stage's
# parameters (pretrain/finetune sections, each backbone's train section).
_STEP_KEYS = ("steps", "inverse_steps")
# A location, not a setting: the same run in another folder trains the same weights.
_LOCATION_PARAMS = ("results_dir",)


class CacheError(RuntimeError):
    """A cache entry that cannot be used: a file missing, corrupted or of another size."""


def cache_root() -> Path:
    """cache/ at the repository root, or $MAGPLUS_CACHE (tests point it at a temporary folder)."""
    return Path(os.environ.get("MAGPLUS_CACHE", REPO_ROOT / "cache"))


def entry_dir(profile: str, stage: str) -> Path:
    return cache_root() / profile / stage


def state_path(results: Path, stage: str) -> Path:
    return Path(results) / "keys" / f"{stage}.json"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_glob(stem: str) -> bool:
    return any(c in stem for c in "*?[")


def expand_stems(stems: Iterable[str], results: Path) -> list[str]:
    """Stems with glob patterns (`backbone_*`: whatever backbones a profile trains) replaced by the
    checkpoints present in `results`."""
    out = []
    for stem in stems:
        if _is_glob(stem):
            out += sorted(
                p.name[: -len(".safetensors")]
                for p in (results / "checkpoints").glob(f"{stem}.safetensors")
                if not p.name.endswith(".optim.safetensors")
            )
        else:
            out.append(stem)
    return out


def stage_files(stems: Iterable[str], results: Path) -> list[str]:
    """The results-relative files a stage with these checkpoint stems owns (candidates; some may not
    exist, e.g. a stage whose trainer writes no log)."""
    out = []
    for stem in expand_stems(stems, results):
        out += [f"checkpoints/{stem}.safetensors", f"checkpoints/{stem}.json", f"logs/{stem}.csv"]
    return out


# ----------------------------------------------------------------------------------------------------
# Keys


def key_parts(
    notebook: str | os.PathLike,
    params: dict[str, Any],
    code_files: Iterable[str | os.PathLike],
    upstream_keys: dict[str, str],
    versions: dict[str, str],
) -> dict[str, Any]:
    """What determines a stage's outputs (see the module docstring)."""
    code = {}
    for p in [Path(notebook), *map(Path, code_files)]:
        p = p if p.is_absolute() else REPO_ROOT / p
        code[os.path.relpath(p, REPO_ROOT)] = file_sha256(p)
    return {
        "params": {k: v for k, v in params.items() if k not in _LOCATION_PARAMS},
        "code": dict(sorted(code.items())),
        "versions": {"python": platform.python_version(), **versions},
        "upstream": dict(sorted(upstream_keys.items())),
    }


def key_of(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _diff_mapping(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names whose values differ between two nested mappings."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff_mapping(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [prefix]


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per part of the key that changed, naming what changed in it."""
    lines = []
    for part in ("params", "code", "versions", "upstream"):
        names = _diff_mapping(old.get(part, {}), new.get(part, {}))
        if names:
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            lines.append(f"{part}: {shown}")
    return lines


def changed_parts(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    return {p for p in ("params", "code", "versions", "upstream") if old.get(p) != new.get(p)}


def changed_settings(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted paths of the leaf settings that differ between two parameter mappings (added, removed or
    changed)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            path = f"{where}.{k}" if where else str(k)
            missing = object()
            out += changed_settings(old.get(k, missing), new.get(k, missing), path)
        return out
    return [] if old == new else [where]


def run_length_changed(old_params: dict[str, Any], new_params: dict[str, Any]) -> list[str]:
    """The changed settings that a short replay cannot see: run lengths (the fingerprint caps them).

    Any other changed setting either alters the first steps (the fingerprint then differs and the
    entry is retrained) or does not touch training at all (an evaluation setting): both are safe to
    judge by the fingerprint."""
    return [p for p in changed_settings(old_params, new_params) if p.rsplit(".", 1)[-1] in _STEP_KEYS]


# ----------------------------------------------------------------------------------------------------
# Entries


def read_provenance(profile: str, stage: str) -> dict[str, Any] | None:
    path = entry_dir(profile, stage) / "provenance.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CacheError(f"cache entry {path} is not valid JSON ({exc}); restore it with git") from exc


def verify_entry(profile: str, stage: str, prov: dict[str, Any]) -> None:
    """Every file of the entry present with its recorded size and sha256, else CacheError naming it."""
    root = entry_dir(profile, stage)
    for rel, rec in sorted(prov["files"].items()):
        path = root / rel
        if not path.is_file():
            raise CacheError(f"cache file {path} is missing (entry {profile}/{stage}); restore it with git")
        size = path.stat().st_size
        if size != rec["bytes"]:
            raise CacheError(
                f"cache file {path} has {size} bytes where its provenance records {rec['bytes']} "
                "(truncated or replaced); refusing to load it"
            )
        if file_sha256(path) != rec["sha256"]:
            raise CacheError(
                f"cache file {path} does not match its recorded sha256 (corrupted); refusing to load it"
            )


def restore_entry(profile: str, stage: str, prov: dict[str, Any], results: Path) -> list[str]:
    """Verify the entry, then copy its files into `results` (each through a temporary file)."""
    verify_entry(profile, stage, prov)
    root = entry_dir(profile, stage)
    for rel in sorted(prov["files"]):
        target = Path(results) / rel
        if target.is_file() and file_sha256(target) == prov["files"][rel]["sha256"]:
            continue
        with atomicio.atomic_path(target) as tmp:
            shutil.copyfile(root / rel, tmp)
    return sorted(prov["files"])


def write_entry(
    profile: str,
    stage: str,
    results: Path,
    files: Iterable[str],
    parts: dict[str, Any],
    invocation: dict[str, Any],
    trained: dict[str, Any],
    fingerprint: dict[str, Any] | None,
) -> Path:
    """Write cache/<profile>/<stage>/ whole: files and provenance into a temporary folder, then rename."""
    final = entry_dir(profile, stage)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{stage}."))
    try:
        records = {}
        for rel in sorted(files):
            src = Path(results) / rel
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
            records[rel] = {"sha256": file_sha256(tmp / rel), "bytes": (tmp / rel).stat().st_size}
        prov = {
            "stage": stage,
            "profile": profile,
            "key": key_of(parts),
            "parts": parts,
            "invocation": invocation,
            "files": records,
            "trained": trained,
            "fingerprint": fingerprint,
            "rekeyed": [],
        }
        atomicio.write_json(tmp / "provenance.json", prov)
        os.chmod(tmp, 0o777 & ~atomicio._UMASK)
        old = final.with_name(f".{stage}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def fingerprint_cpu(prov: dict[str, Any]) -> str | None:
    """The CPU model that replayed an entry's own fingerprint (None for entries that do not say)."""
    fp, tr = prov.get("fingerprint") or {}, prov.get("trained") or {}
    return fp.get("cpu") or ((tr.get("adopted") or tr).get("machine") or {}).get("cpu")


def recorded_fingerprint(prov: dict[str, Any], cpu: str) -> str | None:
    """The entry's fingerprint replayed on CPU model `cpu`: its own or an attested one, else None."""
    own = (prov.get("fingerprint") or {}).get("sha256")
    if own and fingerprint_cpu(prov) in (None, cpu):
        return own
    return next((a["sha256"] for a in prov.get("attested", []) if a["cpu"] == cpu), None)


def fingerprint_cpus(prov: dict[str, Any]) -> list[str]:
    cpus = [fingerprint_cpu(prov) or "an unrecorded CPU"] if prov.get("fingerprint") else []
    return cpus + [a["cpu"] for a in prov.get("attested", [])]


def attest_entry(profile: str, stage: str, prov: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Add this CPU model's replay of an entry's fingerprint (under the entry's own key) to its provenance."""
    new = copy.deepcopy(prov)
    new["attested"] = [*prov.get("attested", []), record]
    atomicio.write_json(entry_dir(profile, stage) / "provenance.json", new)
    return new


def rekey_entry(profile: str, stage: str, prov: dict[str, Any], parts: dict[str, Any], note: dict) -> None:
    """Record new key parts for an entry whose files stay as they are (after its fingerprint reproduced)."""
    new = copy.deepcopy(prov)
    record = {**note, "old_key": prov["key"], "changed": describe_change(prov["parts"], parts)}
    new["rekeyed"] = [*prov.get("rekeyed", []), record]
    new["parts"], new["key"] = parts, key_of(parts)
    atomicio.write_json(entry_dir(profile, stage) / "provenance.json", new)


# ----------------------------------------------------------------------------------------------------
# Fingerprints: the weights after the first FINGERPRINT_STEPS steps


def capped_steps(params: Any, steps: int = FINGERPRINT_STEPS) -> Any:
    """A copy of `params` with every run-length setting capped at `steps`."""
    if isinstance(params, dict):
        return {
            k: min(v, steps) if k in _STEP_KEYS and isinstance(v, int) else capped_steps(v, steps)
            for k, v in params.items()
        }
    if isinstance(params, list):
        return [capped_steps(v, steps) for v in params]
    return params


def weights_digest(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 over the tensors (names, dtypes, shapes, bytes) of safetensors files, in name order.

    Tensors rather than file bytes: the files' header metadata may be serialised in another order."""
    import torch
    from safetensors import safe_open

    h = hashlib.sha256()
    for path in sorted(map(str, paths)):
        with safe_open(path, framework="pt") as f:
            for name in sorted(f.keys()):
                t = f.get_tensor(name).contiguous()
                h.update(f"{Path(path).name}:{name}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# The runner's side


@dataclass
class StageCache:
    """What the runner needs to know about one stage run with respect to the cache."""

    profile: str
    stage: str
    results: Path
    stems: list[str]
    mode: str
    parts: dict[str, Any]
    invocation: dict[str, Any]
    status: str = "executed"  # "restored" | "executed" (no entry, stale entry, scratch) | "rekeyed"
    extends: dict[str, Any] | None = None  # extend mode: the entry this run continued from
    message: str = ""
    provenance: dict[str, Any] | None = None
    lines: list[str] = field(default_factory=list)
    trained: dict[str, Any] | None = None  # who trained the files in results/ (commit, seconds, ...)

    @property
    def key(self) -> str:
        return key_of(self.parts)

    def manifest_record(self) -> dict[str, Any]:
        rec = {"status": self.status, "key": self.key, "mode": self.mode}
        if self.provenance and self.status in ("restored", "rekeyed"):
            rec["trained"] = self.provenance.get("trained")
        if self.lines:
            rec["changed"] = self.lines
        return rec


def read_state(results: Path, stage: str) -> dict[str, Any] | None:
    p = state_path(results, stage)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def upstream_keys(results: Path, upstream: Iterable[str]) -> dict[str, str]:
    """The keys the upstream stages ran with; "unknown" for one without a state (never matches)."""
    out = {}
    for name in upstream:
        st = read_state(results, name)
        out[name] = st["key"] if st else "unknown"
    return out


def _remove(results: Path, rels: Iterable[str]) -> None:
    for rel in rels:
        (Path(results) / rel).unlink(missing_ok=True)
        if rel.endswith(".safetensors"):  # the trainer's optimizer state beside it is stale as well
            (Path(results) / rel.replace(".safetensors", ".optim.safetensors")).unlink(missing_ok=True)


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def prepare(
    profile: str,
    stage: str,
    results: Path,
    mode: str,
    parts: dict[str, Any],
    invocation: dict[str, Any],
    fingerprint: Callable[..., str] | None = None,
) -> StageCache:
    """Before a stage runs: clear stale outputs, restore (or re-key and restore) a matching entry.

    `invocation` is how the runner was called for it (notebook, tag, overrides, after, stems): kept in
    the provenance so that `verify-cache` retrains the stage exactly as make does."""
    if mode not in MODES:
        raise ValueError(f"cache mode must be one of {MODES}, got {mode!r}")
    stems = invocation["stems"]
    sc = StageCache(profile, stage, Path(results), list(stems), mode, parts, invocation)
    prev = read_state(results, stage)
    same = prev is not None and prev["key"] == sc.key
    if prev and not same:  # outputs of a run with other settings or code
        _remove(results, prev.get("files", []))
    if same and prev.get("origin") == "executed":  # trained here before: the trainer will reuse them
        sc.trained = prev.get("trained")
    interrupted = same and prev.get("origin") == "executing"  # the trainer resumes its checkpoint
    if mode == "scratch" and not interrupted:
        _remove(results, stage_files(stems, sc.results))  # nothing restored or trained before is kept
        sc.trained = None
    if mode not in ("off", "scratch") and stems:
        _consult_entry(sc, fingerprint)
        if mode in ("write", "rekey") and sc.status == "executed" and not (sc.trained or interrupted):
            # Train for real: a finished checkpoint of unknown origin would otherwise be reused untrained.
            _remove(results, stage_files(stems, sc.results))
    _write_state(sc, "restored" if sc.status in ("restored", "rekeyed") else "executing")
    return sc


def _consult_entry(sc: StageCache, fingerprint: Callable[..., str] | None) -> None:
    profile, stage, parts = sc.profile, sc.stage, sc.parts
    prov = read_provenance(profile, stage)
    if prov is None:
        if (cache_root() / profile).is_dir():  # a profile without any cache (ci, full) trains silently
            sc.message = f"{stage}: no cache entry in {entry_dir(profile, stage)}; training"
        return
    if prov["key"] != sc.key:
        sc.lines = describe_change(prov["parts"], parts)
        if sc.mode == "extend":
            changed = changed_parts(prov["parts"], parts)
            if changed != {"params"}:
                raise CacheError(
                    f"cannot extend {stage}: its {', '.join(sorted(changed - {'params'}))} changed too "
                    f"({'; '.join(sc.lines)}); land such changes first with make cache-rekey"
                )
            restore_entry(profile, stage, prov, sc.results)
            sc.extends = {"key": prov["key"], "trained": prov.get("trained"), "changed": sc.lines}
            sc.message = (
                f"extending {stage} from its entry {prov['key'][:12]} ({'; '.join(sc.lines)}): "
                "each trainer reuses or continues what its settings allow"
            )
            return
        if sc.mode == "attest":
            raise CacheError(
                f"cannot attest {stage}: this checkout's key differs from the entry's "
                f"({'; '.join(sc.lines)}); "
                "a fingerprint is attested under the code and settings that trained the entry (check out "
                f"the commit of its last re-key or training, {_last_commit(prov)[:12]}, and attest there)"
            )
        lengths = run_length_changed(prov["parts"].get("params", {}), parts.get("params", {}))
        cpu = provenance.machine()["cpu"]
        recorded = recorded_fingerprint(prov, cpu)
        if sc.mode == "rekey" and not lengths and fingerprint and recorded is None:
            sc.lines.append(
                f"no fingerprint of it was replayed on this CPU model ({cpu}; it has fingerprints from "
                f"{', '.join(fingerprint_cpus(prov)) or 'none'}): a replay here cannot be compared. Attest "
                "the entry here (make cache-attest) at the code that trained it, then rekey"
            )
        elif sc.mode == "rekey" and not lengths and fingerprint:
            replayed = fingerprint()
            if replayed != recorded:
                sc.lines.append(f"{FINGERPRINT_STEPS}-step fingerprint differs: the change alters training")
            else:
                note = {
                    "commit": provenance.git_commit(),
                    "date": provenance.utc_now(),
                    "fingerprint": replayed,
                }
                rekey_entry(profile, stage, prov, parts, note)
                prov = read_provenance(profile, stage)
                restore_entry(profile, stage, prov, sc.results)
                sc.status, sc.provenance = "rekeyed", prov
                sc.message = (
                    f"re-keyed {stage}: its {FINGERPRINT_STEPS}-step fingerprint reproduces under the "
                    f"changed {'; '.join(sc.lines)}"
                )
                return
        expected = _minutes(prov.get("trained", {}).get("seconds"))
        why = "; ".join(sc.lines)
        if lengths:
            why += f"; run length changed ({', '.join(lengths)}): a short replay cannot check it"
        sc.message = (
            f"cache entry {stage} is stale ({why}); training it again (it took {expected} when it was cached)"
        )
        return
    attested = ""
    if sc.mode == "attest" and fingerprint:
        cpu = provenance.machine()["cpu"]
        if recorded_fingerprint(prov, cpu) is None:
            record = {"cpu": cpu, "sha256": fingerprint(), "steps": FINGERPRINT_STEPS}
            prov = attest_entry(
                profile,
                stage,
                prov,
                {**record, "commit": provenance.git_commit(), "date": provenance.utc_now()},
            )
            attested = f"; attested its fingerprint on {cpu}: {record['sha256'][:8]}"
        else:
            attested = f"; it already has a fingerprint replayed on {cpu}"
    restore_entry(profile, stage, prov, sc.results)
    sc.status, sc.provenance = "restored", prov
    tr = prov.get("trained", {})
    names = ", ".join(sorted(Path(r).stem for r in prov["files"] if r.endswith(".safetensors")))
    sc.message = (
        f"restored {stage} ({names}), trained at {str(tr.get('commit', '?'))[:12]} "
        f"in {tr.get('seconds', float('nan')):.0f} s{attested}"
    )


def _last_commit(prov: dict[str, Any]) -> str:
    """The commit whose code matches the entry's key: its last re-key's, else its training's."""
    rekeyed = prov.get("rekeyed") or []
    return str((rekeyed[-1] if rekeyed else prov.get("trained") or {}).get("commit", "unknown"))


def _write_state(sc: StageCache, origin: str) -> list[str]:
    present = [rel for rel in stage_files(sc.stems, sc.results) if (sc.results / rel).is_file()]
    atomicio.write_json(
        state_path(sc.results, sc.stage),
        {
            "stage": sc.stage,
            "key": sc.key,
            "origin": origin,
            "files": present,
            "parts": sc.parts,
            "invocation": sc.invocation,
            "trained": sc.trained,
        },
    )
    return present


def finish(sc: StageCache, seconds: float, command: str, fingerprint: Callable[..., str] | None) -> None:
    """After a stage ran: record its outputs' state; in write/rekey mode, cache what it trained."""
    if sc.status in ("restored", "rekeyed"):
        _write_state(sc, "restored")
        return
    if sc.trained is None:  # trained in this run (or resumed): this run is its provenance
        sc.trained = {
            "commit": provenance.git_commit(),
            "command": command,
            "seconds": round(seconds, 1),
            "date": provenance.utc_now(),
            "machine": provenance.machine(),
        }
        if sc.extends:
            sc.trained["extends"] = sc.extends
    present = _write_state(sc, "executed")
    if sc.mode not in ("write", "rekey", "extend") or not sc.stems:
        return
    missing = [s for s in sc.stems if not _is_glob(s) and f"checkpoints/{s}.safetensors" not in present]
    if missing or not present:
        raise CacheError(f"stage {sc.stage} did not write the checkpoints it declares: {missing or sc.stems}")
    fp = None
    if fingerprint:
        fp = {
            "steps": FINGERPRINT_STEPS,
            "sha256": fingerprint(trained=True),
            "cpu": provenance.machine()["cpu"],
        }
    path = write_entry(sc.profile, sc.stage, sc.results, present, sc.parts, sc.invocation, sc.trained, fp)
    print(f"cached {sc.stage} in {path}")
