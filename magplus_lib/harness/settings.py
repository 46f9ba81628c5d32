"""Changes to a profile from the command line (`-p section.key=value`, make's `SET=`): parsed, merged
into the profile key by key, and checked against the config dataclasses before anything runs.

A change names a whole parameter (`seed=1`), one key of a section (`pretrain.steps=2`) or a mapping
merged into a section (`pretrain={steps: 2}` changes `steps` and keeps every other pretraining
setting). Each changed value must have the type its dataclass field declares (or, where no dataclass
describes it, the type of the value it replaces); every bad value is listed in one error.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import types
import typing
from typing import Any

import yaml

from magplus_lib.harness.profiles import ProfileError

# The dataclass that reads each profile section (module:class). Imported only when a change touches
# the section, since the modules import torch.
SECTION_SCHEMAS = {
    "data": "magplus_lib.data.datasets:DataConfig",
    "synthme": "magplus_lib.data.synthme:SynthMEConfig",
    "flow": "magplus_lib.magnifier.flow:FlowConfig",
    "magnifier": "magplus_lib.magnifier.model:MagnifierConfig",
    "pretrain": "magplus_lib.magnifier.train_config:StageConfig",
    "finetune": "magplus_lib.magnifier.train_config:StageConfig",
    "backbones": "magplus_lib.backbones.registry:BackbonesConfig",
    "evaluator": "magplus_lib.evaluation.mer:MERConfig",
    "sweep": "magplus_lib.evaluation.sweep:SweepConfig",
    "generation": "magplus_lib.evaluation.generation:GenerationConfig",
}
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)$")
_UNKNOWN = object()


def parse_assignment(text: str) -> tuple[str, Any]:
    """'key=value' with the value read as YAML (3 -> int, [1, 2] -> list, samm -> str, 1e-3 -> float)."""
    if "=" not in text:
        raise ProfileError(f"setting '{text}' is not of the form name=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ProfileError(f"setting '{text}': '{key}' is not a name or section.key")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ProfileError(f"setting '{text}': the value is not valid YAML ({first})") from None
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    return key, value


def _schema(section: str) -> type | None:
    spec = SECTION_SCHEMAS.get(section)
    if spec is None:
        return None
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _arms(tp: Any) -> tuple[Any, ...]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return (tp,)


def _conforms(value: Any, tp: Any) -> bool:
    """Whether a YAML value fits the annotation `tp` (ints fit floats; bools fit only bools)."""
    if tp is Any or tp is _UNKNOWN:
        return True
    arms = _arms(tp)
    if len(arms) > 1:
        return any(_conforms(value, a) for a in arms)
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp) or tp
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args))
        return all(_conforms(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(origin):
        return isinstance(value, dict)
    return True


def _describe(tp: Any) -> str:
    text = str(tp) if not isinstance(tp, type) else tp.__name__
    return text.replace("typing.", "").replace("NoneType", "None")


def _kind(value: Any) -> str:
    for name, kinds in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if isinstance(value, kinds):
            return name
    return "list" if isinstance(value, list | tuple) else "mapping" if isinstance(value, dict) else "null"


def _like(value: Any, old: Any) -> bool:
    """Without a dataclass field to go by: the value must be of the kind of the one it replaces."""
    if old is None or old is _UNKNOWN:
        return True
    if isinstance(old, float) and not isinstance(old, bool):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return _kind(value) == _kind(old)


def _field_type(tp: Any, key: str) -> tuple[Any, list[str] | None]:
    """(annotation of `key` inside a value of type `tp`, valid keys when `key` is not one of them)."""
    for arm in _arms(tp):
        if dataclasses.is_dataclass(arm):
            hints = _hints(arm)
            if key in hints:
                return hints[key], None
            return _UNKNOWN, sorted(f.name for f in dataclasses.fields(arm))
    return _UNKNOWN, None


def _merge(old: Any, value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    """`value` checked against `tp` (or `old`'s kind) and, when both are mappings, merged into `old`."""
    if isinstance(value, dict) and isinstance(old, dict):
        merged = dict(old)
        for key, sub in value.items():
            sub_tp, valid = _field_type(tp, str(key))
            if valid is not None:
                problems.append(f"{where}.{key}: unknown setting; valid settings are {valid}")
                continue
            merged[key] = _merge(old.get(key, _UNKNOWN), sub, sub_tp, f"{where}.{key}", problems)
        return merged
    ok = _conforms(value, tp) if tp is not _UNKNOWN else _like(value, old)
    if not ok:
        expected = _describe(tp) if tp is not _UNKNOWN else f"{_kind(old)}, like the profile's {old!r}"
        problems.append(f"{where}={value!r}: expected {expected}, got {_kind(value)}")
    return value


def apply(mapping: dict[str, Any], changes: dict[str, Any], what: str) -> dict[str, Any]:
    """A copy of `mapping` with every change merged in; one ProfileError lists every bad change.

    `what` says where the names come from, for the error (e.g. "profile ci").
    """
    out = dict(mapping)
    problems: list[str] = []
    for key, value in changes.items():
        top, *path = key.split(".")
        if top not in out:
            problems.append(f"unknown parameter '{top}' in {key} ({what} has {sorted(out)})")
            continue
        tp = _schema(top) if path or isinstance(value, dict) else _UNKNOWN
        if tp is None:
            tp = _UNKNOWN
        # Walk down to the changed key, building the nested mappings the change goes into.
        node_value, node_tp, where = out[top], tp, top
        chain: list[tuple[Any, str]] = []
        for part in path:
            if node_value is not _UNKNOWN and node_value is not None and not isinstance(node_value, dict):
                problems.append(f"{key}: {where} is not a section (it is {_kind(node_value)} {node_value!r})")
                break
            chain.append((node_value, part))
            node_tp, valid = _field_type(node_tp, part)
            if valid is not None:
                problems.append(f"{key}: unknown setting '{part}' in {where}; valid settings are {valid}")
                break
            node_value = (node_value or {}).get(part, _UNKNOWN) if isinstance(node_value, dict) else _UNKNOWN
            where = f"{where}.{part}"
        else:
            new = _merge(node_value, value, node_tp, key, problems)
            for parent, part in reversed(chain):
                new = {**(parent if isinstance(parent, dict) else {}), part: new}
            out[top] = new
    if problems:
        raise ProfileError("bad settings:\n  " + "\n  ".join(problems))
    return out
