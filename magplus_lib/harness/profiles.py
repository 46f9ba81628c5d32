"""Profiles: one YAML file per study setting (`ci`, `default`, `full`) holding every notebook parameter.

A profile's top-level keys are notebook parameter names; a notebook receives the keys its `parameters`
cell declares. Values may be nested mappings, which library code turns into dataclasses with
`from_dict` (so a misspelt key is an error, not a silently ignored setting).

Paths to user-supplied data and weights are written as ``${VAR}``; `load_profile` expands them from
the environment and, when any is unset, raises one `MissingPathsError` that lists every missing
variable with what it should point to (the profile's `env_help` mapping).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIR = REPO_ROOT / "notebooks" / "profiles"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

T = TypeVar("T")


class ProfileError(ValueError):
    """A profile that cannot be used: unknown name, bad YAML, unknown keys."""


class MissingPathsError(ProfileError):
    """One or more ${VAR} paths are unset; the message lists all of them."""

    def __init__(self, profile: str, missing: dict[str, str]):
        self.missing = missing
        lines = [f"profile '{profile}' needs these environment variables, which are not set:"]
        for var, help_text in missing.items():
            lines.append(f"  {var:<22} {help_text}")
        lines.append(f"Example: make paper PROFILE={profile} " + " ".join(f"{v}=/path/..." for v in missing))
        super().__init__("\n".join(lines))


def profile_path(name: str | os.PathLike) -> Path:
    """A profile name (`ci`) or a path to a YAML file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        candidate = p
    else:
        candidate = PROFILES_DIR / f"{name}.yaml"
    if not candidate.is_file():
        known = sorted(q.stem for q in PROFILES_DIR.glob("*.yaml"))
        raise ProfileError(
            f"unknown profile '{name}': no file {candidate} (known profiles: {', '.join(known)})"
        )
    return candidate


def _collect_vars(obj: Any, found: set[str]) -> None:
    if isinstance(obj, str):
        found.update(_VAR.findall(obj))
    elif isinstance(obj, dict):
        for v in obj.values():
            _collect_vars(v, found)
    elif isinstance(obj, list):
        for v in obj:
            _collect_vars(v, found)


def _expand(obj: Any, env: dict[str, str]) -> Any:
    """${VAR} replaced by env's value; a VAR env lacks stays as it is written (only in sections the run
    does not use: `load_profile` refuses the others, and a backbone refuses a ${VAR} it is given)."""
    if isinstance(obj, str):
        whole = _VAR.fullmatch(obj)
        if whole and not env.get(whole.group(1)):
            return obj
        if whole and not whole.group(1).endswith("_CMD"):
            # A path the user gave, e.g. SAMM_ROOT=../data/SAMM: relative to where they typed it, not to
            # the results folder the profile's own relative folders live in. (A *_CMD is a shell command.)
            value = env[whole.group(1)]
            return value if os.path.isabs(value) else os.path.abspath(value)
        return _VAR.sub(lambda m: env.get(m.group(1)) or m.group(0), obj)
    if isinstance(obj, dict):
        return {k: _expand(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand(v, env) for v in obj]
    return obj


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s values: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_profile(name: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw profile (no variable expansion). A profile with `extends: <profile>` is that profile
    with its own settings merged in (e.g. the full profile's code path at smaller sizes); it keeps its
    own name (its `name:` or its file's stem)."""
    path = profile_path(name)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a mapping of parameter names to values")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if path.resolve() in _seen:
        raise ProfileError(f"{path}: `extends` loops back to it")
    base_name = parent if Path(str(parent)).suffix not in (".yaml", ".yml") else path.parent / parent
    base = read_profile(base_name, (*_seen, path.resolve()))
    return {**_merged(base, data), "name": data.get("name", path.stem)}


# Sections of `backbones:` that configure the study, not one backbone.
BACKBONE_SETTINGS = ("train", "training_set", "eval", "competence")


def _unused_sections(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(section, key) of the profile that this run does not use, so their ${VAR}s are not required: the
    backbones missing from `backbones_list` and the data roots of datasets missing from `datasets`
    (one absent checkout must not stop the others' results)."""
    listed = set(data.get("backbones_list") or [])
    backbones = data.get("backbones") or {}
    out = [("backbones", k) for k in backbones if k not in BACKBONE_SETTINGS and k not in listed]
    datasets = set(data.get("datasets") or [])
    roots = (data.get("data") or {}).get("roots") or {}
    out += [("data.roots", k) for k in roots if k in ("samm", "casme3", "casme2") and k not in datasets]
    return out


def _used_part(data: dict[str, Any]) -> dict[str, Any]:
    """The profile without env_help and without `_unused_sections`."""
    used = {k: v for k, v in data.items() if k != "env_help"}
    skip = _unused_sections(data)
    if any(sec == "backbones" for sec, _ in skip):
        used["backbones"] = {k: v for k, v in used["backbones"].items() if ("backbones", k) not in skip}
    if any(sec == "data.roots" for sec, _ in skip):
        roots = {k: v for k, v in used["data"]["roots"].items() if ("data.roots", k) not in skip}
        used["data"] = {**used["data"], "roots": roots}
    return used


def missing_variables(name: str | os.PathLike, env: dict[str, str] | None = None) -> dict[str, str]:
    """{VAR: help} for every ${VAR} that the parts of the profile this run uses need and `env` leaves
    unset or empty (see `_unused_sections`)."""
    env = dict(os.environ if env is None else env)
    data = read_profile(name)
    used: set[str] = set()
    _collect_vars(_used_part(data), used)
    helps = data.get("env_help", {}) or {}
    return {
        v: helps.get(v, "(no description in the profile's env_help)") for v in sorted(used) if not env.get(v)
    }


def load_profile(name: str | os.PathLike, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The profile with ${VAR} expanded; raises MissingPathsError listing every unset variable."""
    env = dict(os.environ if env is None else env)
    missing = missing_variables(name, env)
    if missing:
        raise MissingPathsError(profile_name(name), missing)
    data = read_profile(name)
    data.pop("env_help", None)
    data = _expand(data, env)
    data["profile"] = profile_name(name)
    return data


def profile_name(name: str | os.PathLike) -> str:
    """The name a profile's results are filed under: its `name:` field, else its file's stem.

    A user's profile file may not take a shipped profile's name (its results would silently mix with
    the shipped profile's in results/<name>)."""
    path = profile_path(name)
    own = read_profile(path).get("name", path.stem)
    if not isinstance(own, str) or not _NAME.match(own):
        raise ProfileError(f"{path}: name {own!r} must be letters, digits, '-' or '_'")
    shipped = PROFILES_DIR / f"{own}.yaml"
    if shipped.is_file() and shipped.resolve() != path.resolve():
        raise ProfileError(
            f"{path}: its name '{own}' is a shipped profile's ({shipped}); its results would mix with "
            f"that profile's in results/{own}. Give it its own `name:` field."
        )
    return own


def results_root() -> Path:
    """results/ at the repository root, or $MAGPLUS_RESULTS, whatever the working directory."""
    env = os.environ.get("MAGPLUS_RESULTS")
    return Path(env).resolve() if env else REPO_ROOT / "results"


def results_dir(profile: str) -> Path:
    """The absolute results folder of a profile name (tests point $MAGPLUS_RESULTS at a temporary one)."""
    return results_root() / profile


def notebook_path(path: str | os.PathLike) -> str:
    """A path as a notebook is given it: relative to the repository root (the kernels' working
    directory) when inside it, so executed notebooks and manifests do not name this machine's folders."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from a profile mapping; unknown keys are an error naming the valid ones."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ProfileError(
            f"{where or cls.__name__}: unknown setting(s) {unknown}; valid settings are {sorted(names)}"
        )
    return cls(**data)
