"""The training-loop skeleton every trainer of the study shares, and its optimizer-state file.

A trainer supplies one function that takes a step (draw a batch, compute the loss, update) and returns
that step's log row; `run_steps` owns the rest: the step range (from a resumed step to the total), the
progress bar, when to checkpoint and the per-step callback tests use to interrupt a run. Trainers differ
in what a step is (the magnifier's pair batch, a backbone's driving pair, a MER epoch), not in the loop.

Optimizer state is written in one format beside a checkpoint, `<stem>.optim.safetensors`: one tensor
`state.<param index>.<name>` per entry of `Optimizer.state_dict()["state"]`, with the step it belongs
to and the parameter groups in the file's metadata. It is never cached (committed entries hold finished
runs only), so a run restored from the cache cannot continue an unfinished phase: `load_optimizer`
raises `OptimizerStateMissing`, and a trainer decides whether that means "train again from step 0".
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from magplus_lib.harness.checkpoints import save_safetensors


class OptimizerStateMissing(FileNotFoundError):
    """A checkpoint's optimizer file is not there (an unfinished run restored without it)."""


def optimizer_path(checkpoint: str | os.PathLike) -> Path:
    """`<dir>/<stem>.optim.safetensors` beside `checkpoint`."""
    p = Path(checkpoint)
    return p.with_name(p.stem + ".optim.safetensors")


def save_optimizer(opt: torch.optim.Optimizer, path: str | os.PathLike, step: int) -> dict:
    """Write `opt`'s state to `path` (atomically); returns its parameter groups (JSON-able)."""
    sd = opt.state_dict()
    tensors = {
        f"state.{idx}.{name}": torch.as_tensor(val).detach().cpu().contiguous()
        for idx, st in sd["state"].items()
        for name, val in st.items()
    }
    groups = {"param_groups": sd["param_groups"]}
    save_safetensors(Path(path), tensors, metadata={"step": str(step), "groups": json.dumps(groups)})
    return groups


def load_optimizer(opt: torch.optim.Optimizer, path: str | os.PathLike, step: int) -> None:
    """Load the state `save_optimizer` wrote at `step` into `opt`.

    Raises OptimizerStateMissing when the file is not there and ValueError when it belongs to another
    step than the checkpoint (a write interrupted between the two files).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise OptimizerStateMissing(f"optimizer state {path} is not there; the run cannot be continued")
    state: dict = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if int(meta.get("step", -1)) != int(step):
            raise ValueError(
                f"{path} holds the optimizer of step {meta.get('step')}, its checkpoint is at step {step} "
                "(an interrupted write?)"
            )
        for key in f.keys():
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = f.get_tensor(key)
    groups = (
        json.loads(meta["groups"]) if "groups" in meta else {"param_groups": opt.state_dict()["param_groups"]}
    )
    opt.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


def run_steps(
    start: int,
    stop: int,
    step_fn: Callable[[int], dict],
    *,
    desc: str,
    progress: bool = True,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_at: Callable[[int], bool] = lambda step: False,
    on_step: Callable[[int, dict], None] | None = None,
    postfix: str | None = "loss",
) -> list[dict]:
    """Run `step_fn(step)` for step = start .. stop-1; returns the rows it returned.

    After step s (1-based: s = step + 1), `checkpoint(s)` is called when `checkpoint_at(s)`, then
    `on_step(s, row)`. The bar starts at `start` of `stop`, so a resumed run shows where it is.
    """
    from tqdm.auto import tqdm

    rows: list[dict] = []
    with tqdm(total=stop, initial=start, desc=desc, disable=not progress, leave=False) as bar:
        for step in range(start, stop):
            row = step_fn(step)
            rows.append(row)
            bar.update(1)
            if postfix is not None and postfix in row:
                bar.set_postfix({postfix: f"{float(row[postfix]):.4f}"})
            if checkpoint is not None and checkpoint_at(step + 1):
                checkpoint(step + 1)
            if on_step is not None:
                on_step(step + 1, row)
    return rows
