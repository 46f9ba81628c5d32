"""Self-supervised training of the magnifier (FlowMag's objective), resumable and distributed.

Loss (paper Eqs. 1-3): with F the frozen flow estimator, G = G(I0, It, alpha),
    L_mag   = | alpha * F(I0, It) - F(I0, G) |_1            (target flow under no_grad)
    L_color = | warp(It, F(I0, It)) - warp(G, F(I0, G)) |_1
    L       = w_mag * L_mag + w_color * L_color              (1.0 and 10.0)
Flows in L_mag are in pixels of a `loss_reference_size` frame when one is set (FlowMag's 512): the paper's
weights were set at 512 px, where a flow is 512 / size times as many pixels as in a `size` crop, while
L_color (intensities) does not depend on the resolution.
alpha is log2-uniform in [alpha_min, alpha_max] ([1, 16] MagPlus, [1/16, 1] DeMagPlus).

Everything random in a run (data order, augmentation, alphas) is drawn from one explicit torch.Generator
whose state, together with torch/NumPy/Python global RNG states, the optimizer state and the step, is
saved with every checkpoint, so a resumed run is bit-identical to an uninterrupted one on the CPU.
Under torchrun every rank draws the same global batch and keeps its own slice; BatchNorm statistics
are synchronised across ranks, so N processes with batch B train exactly like one with batch N*B.

With `exact_pairs` (photograph pairs with a known field, `texture_pairs.ExactTexturePairs`) every step
also draws a batch of them and adds cfg.exact_weight * |G(I0, I1, alpha) - exact frame|_1, the supervised
target of Oh et al. (2018); both batches go through the generator in one pass.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from magplus_lib.harness.atomicio import write_text
from magplus_lib.harness.runtime import autocast
from magplus_lib.harness.train_loop import (
    OptimizerStateMissing,
    load_optimizer,
    optimizer_path,
    run_steps,
    save_optimizer,
)
from magplus_lib.magnifier.flow import warp
from magplus_lib.magnifier.model import MagUNet
from magplus_lib.magnifier.train_config import AugmentConfig, TrainConfig
from magplus_lib.magnifier.weights import load_magnifier, read_side, save_magnifier, side_path

# ----------------------------------------------------------------------------------------------------
# Sampling and augmentation
# ----------------------------------------------------------------------------------------------------


def sample_alphas(n: int, alpha_min: float, alpha_max: float, generator: torch.Generator) -> torch.Tensor:
    """n factors with log2(alpha) uniform in [log2 alpha_min, log2 alpha_max]."""
    if not 0 < alpha_min <= alpha_max:
        raise ValueError(f"alpha range must satisfy 0 < min <= max, got [{alpha_min}, {alpha_max}]")
    lo, hi = math.log2(alpha_min), math.log2(alpha_max)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.pow(2.0, lo + (hi - lo) * u).float()


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def augment_pair(
    img0: torch.Tensor, img1: torch.Tensor, size: int, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random transform applied to both (3, H, W) frames: resized crop to size x size, flips,
    rotation and colour jitter (brightness, contrast, saturation, hue in random order)."""
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    pair = torch.stack([img0, img1]).float()
    g = generator
    if not cfg.enabled:
        if pair.shape[-2:] != (size, size):
            pair = F.interpolate(
                pair, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return pair[0].clamp(0, 1), pair[1].clamp(0, 1)
    h, w = pair.shape[-2:]
    area = h * w
    top, left, ch, cw = 0, 0, h, w
    for _ in range(10):
        target = area * _uniform(g, cfg.scale_min, cfg.scale_max)
        ratio = math.exp(_uniform(g, math.log(3 / 4), math.log(4 / 3)))
        cw_try = int(round(math.sqrt(target * ratio)))
        ch_try = int(round(math.sqrt(target / ratio)))
        if 0 < cw_try <= w and 0 < ch_try <= h:
            ch, cw = ch_try, cw_try
            top = int(torch.randint(0, h - ch + 1, (), generator=g))
            left = int(torch.randint(0, w - cw + 1, (), generator=g))
            break
    pair = TF.resized_crop(pair, top, left, ch, cw, [size, size], antialias=True)
    if cfg.hflip and float(torch.rand((), generator=g)) < 0.5:
        pair = pair.flip(-1)
    if cfg.vflip and float(torch.rand((), generator=g)) < 0.5:
        pair = pair.flip(-2)
    if cfg.rotation > 0:
        angle = _uniform(g, -cfg.rotation, cfg.rotation)
        pair = TF.rotate(pair, angle, interpolation=InterpolationMode.BILINEAR)
    order = torch.randperm(4, generator=g).tolist()
    factors = [
        _uniform(g, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness),
        _uniform(g, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast),
        _uniform(g, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation),
        _uniform(g, -cfg.hue, cfg.hue),
    ]
    for op in order:
        f = factors[op]
        if op == 0 and cfg.brightness > 0:
            pair = (pair * f).clamp(0, 1)
        elif op == 1 and cfg.contrast > 0:
            # One mean (of the first frame) for both frames, so the pair gets the very same mapping.
            mean = _gray(pair[:1]).mean()
            pair = ((pair - mean) * f + mean).clamp(0, 1)
        elif op == 2 and cfg.saturation > 0:
            gray = _gray(pair)
            pair = ((pair - gray) * f + gray).clamp(0, 1)
        elif op == 3 and cfg.hue > 0:
            pair = TF.adjust_hue(pair, f)
    return pair[0].contiguous(), pair[1].contiguous()


# ----------------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------------


def magnification_losses(
    flow_net: nn.Module,
    generated: torch.Tensor,
    img0: torch.Tensor,
    img1: torch.Tensor,
    alpha: torch.Tensor,
    w_mag: float = 1.0,
    w_color: float = 10.0,
    flow_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, L_mag, L_color) for a batch; gradients flow only into `generated`.

    `flow_scale` converts the estimator's pixels into the pixels L_mag is measured in
    (TrainConfig.flow_scale).

    The flow estimator runs in float32 even under bf16 autocast: its small increments would be lost.
    """
    generated = generated.float()
    with torch.autocast(device_type=generated.device.type, enabled=False):
        with torch.no_grad():
            flow_src = flow_net(img0.float(), img1.float())
            target_view = warp(img1.float(), flow_src)
        flow_gen = flow_net(img0.float(), generated)
        l_mag = flow_scale * (alpha.view(-1, 1, 1, 1).to(flow_src) * flow_src - flow_gen).abs().mean()
        l_color = (target_view - warp(generated, flow_gen)).abs().mean()
    return w_mag * l_mag + w_color * l_color, l_mag, l_color


# ----------------------------------------------------------------------------------------------------
# Distributed helpers
# ----------------------------------------------------------------------------------------------------


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are all-reduced over the process group.

    torch's SyncBatchNorm refuses CPU tensors; this one works with gloo. It keeps BatchNorm2d's
    parameter and buffer names, so checkpoints are unchanged. Outside a process group it is plain BN.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        n = x.numel() // x.shape[1] * dist.get_world_size()
        mean = all_reduce(x.sum(dim=(0, 2, 3))) / n
        centred = x - mean.view(1, -1, 1, 1)
        var = all_reduce((centred * centred).sum(dim=(0, 2, 3))) / n
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _convert_bn_for_cpu_sync(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = AllReduceBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            # Share the very parameter and buffer objects, as torch's convert_sync_batchnorm does.
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            setattr(module, name, new)
        else:
            _convert_bn_for_cpu_sync(child)
    return module


def distributed_context(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initialises the process group under torchrun (WORLD_SIZE > 1):
    NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


# ----------------------------------------------------------------------------------------------------
# Checkpoint state
# ----------------------------------------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _from_b64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_snapshot(generator: torch.Generator) -> dict:
    """JSON-able states of the run's generator and of torch / NumPy / Python global RNGs."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "generator": _b64(generator.get_state()),
        "torch": _b64(torch.get_rng_state()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def rng_restore(snapshot: dict, generator: torch.Generator) -> None:
    generator.set_state(_from_b64(snapshot["generator"]))
    torch.set_rng_state(_from_b64(snapshot["torch"]))
    n = snapshot["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = snapshot["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


# ----------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------

LOG_COLUMNS = ["step", "loss", "loss_mag", "loss_color", "alpha_mean", "seconds"]
EXACT_LOG_COLUMNS = [*LOG_COLUMNS[:4], "loss_exact", *LOG_COLUMNS[4:]]


def _write_log(path: Path | None, rows: list[dict], columns: list[str] = LOG_COLUMNS) -> None:
    if path is None:
        return
    write_text(path, pd.DataFrame(rows, columns=columns).to_csv(index=False))


def _read_log(path: Path | None, upto: int) -> list[dict]:
    if path is None or not Path(path).is_file():
        return []
    df = pd.read_csv(path)
    return df[df["step"] <= upto].to_dict("records")


def set_train_mode(model: nn.Module, freeze_batchnorm: bool) -> None:
    """Training mode, with every BatchNorm layer in eval mode when `freeze_batchnorm` (see TrainConfig)."""
    model.train()
    if freeze_batchnorm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_magnifier(
    model: MagUNet,
    dataset,
    flow_net: nn.Module,
    cfg: TrainConfig,
    checkpoint_path: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    resume: bool = True,
    meta: dict | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    init_id: str | None = None,
    exact_pairs=None,
) -> pd.DataFrame:
    """Train `model` in place on `dataset` (any indexable of (I0, It) float (3, H, W) pairs in [0, 1]).

    Checkpoints (weights .safetensors, optimizer .optim.safetensors, JSON side file with step, RNG
    states, data position and `meta`) are written atomically every `cfg.checkpoint_every` steps and at
    the end. With `resume`, an unfinished checkpoint at `checkpoint_path` is continued and a finished
    one is loaded without training. A finished run asked for more steps (and nothing else changed) is
    continued: nothing in a step depends on the total, so the result equals an uninterrupted longer run.
    `init_id` (e.g. `state_digest` of the weights a stage starts from) is stored with the checkpoint; a
    checkpoint that was trained from another initialisation is stale and is trained again from `model`.
    Returns the loss log (also written to `log_path` as CSV). `on_step(step, row)` is called after every
    step (tests use it to interrupt a run). `exact_pairs` (indexable of (I0, I1, alpha, exact frame)) adds
    the exact target with weight `cfg.exact_weight`; both must be given or neither.
    """
    checkpoint_path = Path(checkpoint_path)
    log_path = Path(log_path) if log_path is not None else None
    device = torch.device(device)
    rank, world, device = distributed_context(device)
    if len(dataset) == 0:
        raise ValueError("train_magnifier: the training dataset is empty")
    if (exact_pairs is not None and len(exact_pairs) > 0) != (cfg.exact_weight > 0):
        raise ValueError(
            f"train_magnifier: exact_weight {cfg.exact_weight} needs exact pairs, and exact pairs need "
            f"exact_weight > 0 (got {0 if exact_pairs is None else len(exact_pairs)} pairs)"
        )
    columns = EXACT_LOG_COLUMNS if cfg.exact_weight > 0 else LOG_COLUMNS
    model.to(device)
    if world > 1:
        # Synchronised BatchNorm before the optimizer is built, so it holds the final parameters.
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            _convert_bn_for_cpu_sync(model)
    flow_net.to(device).eval().requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    start, rows = 0, []

    side = read_side(checkpoint_path) if resume and checkpoint_path.is_file() else {}
    arch = type(getattr(model, "module", model)).__name__
    if side.get("training") and side.get("architecture", "MagUNet") != arch:
        if rank == 0:
            print(
                f"{checkpoint_path}: a {side.get('architecture')} checkpoint; training a {arch} from step 0"
            )
        side = {}
    if side.get("training") and init_id is not None and side["training"].get("init") != init_id:
        # e.g. the pretraining changed since this fine-tune ran: its weights descend from other weights
        if rank == 0:
            print(
                f"{checkpoint_path}: trained from another initialisation; training again from the given one"
            )
        side = {}
    if side.get("training"):
        state = load_magnifier(checkpoint_path, "cpu").state_dict()
        model.load_state_dict(state)
        tr = side["training"]
        wanted = {**json.loads(json.dumps(dataclasses.asdict(cfg))), "global_batch": cfg.batch_size * world}
        # a side file written before a setting existed was trained with that setting's default
        defaults = json.loads(json.dumps(dataclasses.asdict(type(cfg)())))
        stored = {**defaults, **tr.get("config", {}), "global_batch": tr.get("global_batch")}
        if int(tr["step"]) <= cfg.steps:  # more steps than a finished run: continue it
            stored["steps"] = cfg.steps
        if stored != wanted:
            changed = sorted(k for k in set(wanted) | set(stored) if wanted.get(k) != stored.get(k))
            raise ValueError(
                f"{checkpoint_path} was written by a run with other settings ({', '.join(changed)} differ: "
                f"{ {k: stored.get(k) for k in changed} } vs now { {k: wanted.get(k) for k in changed} }). "
                "Delete the checkpoint (and its .json / .optim.safetensors) to retrain."
            )
        start = int(tr["step"])
        rows = _read_log(log_path, start)
        if start >= cfg.steps:
            model.eval()
            return pd.DataFrame(rows, columns=columns)
        try:
            load_optimizer(opt, optimizer_path(checkpoint_path), start)
        except OptimizerStateMissing as err:
            raise OptimizerStateMissing(
                f"{err}: {checkpoint_path} stopped at step {start} of {cfg.steps}. Delete the checkpoint "
                "(and its .json) to train from step 0."
            ) from None
        rng_restore(tr["rng"], generator)

    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    n = len(dataset)
    global_batch = cfg.batch_size * world

    def save(step: int, complete: bool) -> None:
        if rank == 0:
            groups = save_optimizer(opt, optimizer_path(checkpoint_path), step)
            training = {
                "step": step,
                "steps": cfg.steps,
                "complete": complete,
                "global_batch": global_batch,
                "world_size": world,
                "optimizer": groups,
                "rng": rng_snapshot(generator),
                "data": {
                    "seed": cfg.seed,
                    "epoch": step * global_batch // n,
                    "position": step * global_batch % n,
                },
                "config": dataclasses.asdict(cfg),
                "init": init_id,
            }
            save_magnifier(model, checkpoint_path, {**(meta or {}), "training": training})
            _write_log(log_path, rows, columns)
        if world > 1:
            dist.barrier()

    t0 = time.perf_counter()

    def one_step(step: int) -> dict:
        # The global batch: identical on every rank, drawn from the run's own generator.
        first = step * global_batch
        idx = [int(_epoch_order(n, cfg.seed, (first + i) // n)[(first + i) % n]) for i in range(global_batch)]
        pairs = [augment_pair(*dataset[i], cfg.size, cfg.augment, generator) for i in idx]
        alphas = sample_alphas(global_batch, cfg.alpha_min, cfg.alpha_max, generator)
        mine = slice(rank * cfg.batch_size, (rank + 1) * cfg.batch_size)
        img0 = torch.stack([p[0] for p in pairs[mine]]).to(device)
        img1 = torch.stack([p[1] for p in pairs[mine]]).to(device)
        alpha = alphas[mine].to(device)
        inputs = [img0, img1, alpha]
        if exact_pairs is not None:
            picks = torch.randint(len(exact_pairs), (global_batch,), generator=generator).tolist()
            items = [exact_pairs[i] for i in picks[mine]]
            e0, e1, e_true = (torch.stack([it[k] for it in items]).to(device) for k in (0, 1, 3))
            e_alpha = torch.tensor([float(it[2]) for it in items], dtype=torch.float32, device=device)
            inputs = [torch.cat(pair) for pair in zip(inputs, (e0, e1, e_alpha))]
        # every step: a callback (e.g. magnify_sequence) may have left the model in eval or train mode
        set_train_mode(train_model, cfg.freeze_batchnorm)
        with autocast(device):
            generated = train_model(*inputs)
        n_generic = img0.shape[0]
        loss, l_mag, l_color = magnification_losses(
            flow_net, generated[:n_generic], img0, img1, alpha, cfg.w_mag, cfg.w_color, cfg.flow_scale
        )
        terms = [loss.detach(), l_mag.detach(), l_color.detach()]
        if exact_pairs is not None:
            l_exact = (generated[n_generic:].float() - e_true).abs().mean()
            loss = loss + cfg.exact_weight * l_exact
            terms = [loss.detach(), *terms[1:], l_exact.detach()]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        vals = torch.stack(terms).float()
        if world > 1:
            dist.all_reduce(vals)
            vals /= world
        row = {
            "step": step + 1,
            "loss": float(vals[0]),
            "loss_mag": float(vals[1]),
            "loss_color": float(vals[2]),
            **({"loss_exact": float(vals[3])} if exact_pairs is not None else {}),
            "alpha_mean": float(alphas.mean()),
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)  # before the checkpoint of this step, which writes the log
        return row

    run_steps(
        start,
        cfg.steps,
        one_step,
        desc=f"train {checkpoint_path.stem}",
        progress=progress and rank == 0,
        checkpoint=lambda step: save(step, step == cfg.steps),
        checkpoint_at=lambda step: (
            step == cfg.steps or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0)
        ),
        on_step=on_step,
    )
    if start >= cfg.steps:  # steps = 0: the initial weights are the result (e.g. FlowMag's, converted)
        save(cfg.steps, True)
    model.eval()
    return pd.DataFrame(rows, columns=columns)


def state_digest(model: nn.Module) -> str:
    """sha256 of a model's parameters and buffers (names, shapes, values): the `init_id` of a stage."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().double().contiguous().numpy().tobytes())  # any dtype, bf16 included
    return h.hexdigest()


def checkpoint_complete(path: str | os.PathLike) -> bool:
    """True when `path` holds a finished training run (its side file says so)."""
    path = Path(path)
    if not path.is_file() or not side_path(path).is_file():
        return False
    tr = read_side(path).get("training", {})
    return bool(tr.get("complete"))


def side_json(path: str | os.PathLike) -> dict:
    return json.loads(side_path(path).read_text())
