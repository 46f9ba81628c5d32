"""The frozen micro-expression recognition (MER) evaluator of paper 5.1.

Two streams, each a torchvision ResNet-18 trunk: one sees the apex RGB frame, the other the
onset-to-apex Farneback flow (u, v, |flow|) as a 3-channel image. Each trunk's 512-D pooled feature is
projected to a 256-D embedding; the two embeddings are fused by gated concatenation (a sigmoid gate
computed from the concatenation scales it element-wise) and a linear head gives the class logits.
Training uses class-weighted cross-entropy (weights inversely proportional to class frequency) with
label smoothing. The evaluator is trained once on real training-subject clips, then frozen and
applied unchanged to generated clips.

No weights are downloaded: trunks start from random initialisation unless a local ImageNet
ResNet-18 state dict is given (loaded with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from magplus_lib.harness.atomicio import atomic_path, write_json
from magplus_lib.harness.checkpoints import load_state_dict_checked
from magplus_lib.harness.train_loop import run_steps
from magplus_lib.magnifier.flow import farneback_flow

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MERConfig:
    """Evaluator settings (profile section `evaluator:`)."""

    input_size: int = 64  # apex frame and flow resolution fed to both trunks
    embed_dim: int = 256  # per-stream embedding (paper: 256-D)
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    flow_scale: float = 1.0  # flow (pixels at input_size) is multiplied by this before the trunk
    augment: bool = True  # horizontal flip of both streams (flow u negated)
    imagenet_weights: str | None = None  # optional local torchvision resnet18 state dict (.pth)
    # One evaluator per seed: recognition scores are averaged over them and their spread reported, so
    # a table row does not rest on one training run's luck.
    seeds: list = field(default_factory=lambda: [0, 1, 2])


def _trunk() -> nn.Module:
    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    return net


class MERNet(nn.Module):
    """Two-stream ResNet-18 with 256-D projections, gated concatenation fusion and a linear head."""

    def __init__(self, num_classes: int = 3, embed_dim: int = 256, flow_scale: float = 1.0):
        super().__init__()
        self.num_classes, self.embed_dim, self.flow_scale = num_classes, embed_dim, flow_scale
        self.rgb_trunk, self.flow_trunk = _trunk(), _trunk()
        self.rgb_proj = nn.Linear(512, embed_dim)
        self.flow_proj = nn.Linear(512, embed_dim)
        self.gate = nn.Linear(2 * embed_dim, 2 * embed_dim)
        self.head = nn.Linear(2 * embed_dim, num_classes)
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def embed(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        e_rgb = self.rgb_proj(self.rgb_trunk((rgb - self.rgb_mean) / self.rgb_std))
        e_flow = self.flow_proj(self.flow_trunk(flow * self.flow_scale))
        joint = torch.cat([e_rgb, e_flow], dim=1)
        return torch.sigmoid(self.gate(joint)) * joint

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """rgb (B, 3, S, S) in [0, 1], flow (B, 3, S, S) = (u, v, |flow|) in pixels -> logits (B, C)."""
        return self.head(self.embed(rgb, flow))


def load_imagenet_weights(model: MERNet, path: str | Path) -> None:
    """Initialise both trunks from a local torchvision ResNet-18 ImageNet state dict (fc dropped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights file {path} does not exist (expected torchvision's resnet18-f37072fd.pth, "
            "placed there by you; nothing is downloaded)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    for trunk in (model.rgb_trunk, model.flow_trunk):
        expected = {k: v.shape for k, v in trunk.state_dict().items()}
        bad = [k for k in expected if k not in state or tuple(state[k].shape) != tuple(expected[k])]
        if bad:
            raise ValueError(
                f"{path}: not a torchvision ResNet-18 state dict (missing or misshaped: {bad[:5]})"
            )
        trunk.load_state_dict(state, strict=True)


def build_mer(cfg: MERConfig, num_classes: int = 3) -> MERNet:
    model = MERNet(num_classes=num_classes, embed_dim=cfg.embed_dim, flow_scale=cfg.flow_scale)
    if cfg.imagenet_weights:
        load_imagenet_weights(model, cfg.imagenet_weights)
    return model


def mer_inputs(frames, onset_pos: int, apex_pos: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(apex RGB (3, S, S), flow image (3, S, S)) for one clip; positions index `frames` (T, 3, H, W).

    The flow is Farneback from the onset frame to the apex frame at S x S, stacked with its magnitude.
    """
    n = frames.shape[0]
    if not (0 <= onset_pos < n and 0 <= apex_pos < n):
        raise ValueError(f"mer_inputs: onset {onset_pos} / apex {apex_pos} outside a clip of {n} frames")
    frames = torch.as_tensor(frames).float()
    apex = F.interpolate(frames[apex_pos : apex_pos + 1], size=(size, size), mode="area")[0].clamp(0, 1)
    flow = torch.from_numpy(farneback_flow(frames[onset_pos], frames[apex_pos], size=size)).permute(2, 0, 1)
    flow_img = torch.cat([flow, flow.norm(dim=0, keepdim=True)], dim=0)
    return apex, flow_img


def class_weights(
    labels: torch.Tensor, num_classes: int, class_names: Sequence[str] | None = None
) -> torch.Tensor:
    """Inverse-frequency weights n / (C * n_c); a class with no training sample is an error."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    names = list(class_names or range(num_classes))
    empty = [str(names[c]) for c in range(num_classes) if counts[c] == 0]
    if empty:
        raise ValueError(f"MER training set has no sample of class(es) {empty}; counts {counts.tolist()}")
    return (counts.sum() / (num_classes * counts)).float()


def train_mer(
    model: MERNet,
    rgb: torch.Tensor,
    flow: torch.Tensor,
    labels: torch.Tensor,
    cfg: MERConfig,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    log_path: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """Train `model` in place; returns the per-epoch log (also written as CSV to `log_path`).

    Deterministic for a fixed seed on CPU: shuffling and flips come from one seeded generator.
    """
    if not (len(rgb) == len(flow) == len(labels)) or len(labels) == 0:
        raise ValueError(f"train_mer: {len(rgb)} rgb, {len(flow)} flow, {len(labels)} labels")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.min() < 0 or labels.max() >= model.num_classes:
        raise ValueError(f"train_mer: labels must be class indices 0..{model.num_classes - 1}")
    device = torch.device(device)
    weights = class_weights(labels, model.num_classes, class_names).to(device)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    n = len(labels)

    def one_epoch(epoch: int) -> dict:
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5 if cfg.augment else torch.zeros(n, dtype=torch.bool)
        total, correct = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2 and n >= 2:  # BatchNorm needs two samples; the tail joins the next epoch
                continue
            x_rgb, x_flow, y = rgb[idx].clone(), flow[idx].clone(), labels[idx]
            f = flips[idx]
            x_rgb[f] = x_rgb[f].flip(-1)
            x_flow[f] = x_flow[f].flip(-1)
            x_flow[f, 0] = -x_flow[f, 0]  # a mirrored flow points the other way in x
            x_rgb, x_flow, y = x_rgb.to(device), x_flow.to(device), y.to(device)
            logits = model(x_rgb, x_flow)
            loss = criterion(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        sched.step()
        return {"epoch": epoch + 1, "loss": total / n, "train_accuracy": correct / n}

    history = run_steps(0, cfg.epochs, one_epoch, desc="MER training")
    model.eval()
    if log_path is not None:
        with atomic_path(log_path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["epoch", "loss", "train_accuracy"])
            writer.writeheader()
            writer.writerows(history)
    return history


@torch.inference_mode()
def predict(
    model: MERNet, rgb: torch.Tensor, flow: torch.Tensor, batch_size: int = 64, device="cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class indices (N,), class probabilities (N, C)) with the model frozen in eval mode."""
    model.to(device).eval()
    probs = []
    for start in range(0, len(rgb), batch_size):
        logits = model(
            rgb[start : start + batch_size].to(device), flow[start : start + batch_size].to(device)
        )
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
    p = torch.cat(probs).numpy() if probs else np.zeros((0, model.num_classes), np.float32)
    return p.argmax(1), p


def save_mer(model: MERNet, path: str | Path, cfg: MERConfig, meta: dict | None = None) -> Path:
    """Weights to `path` (.safetensors) and architecture + metadata to the `.json` side file."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    side = {
        "num_classes": model.num_classes,
        "embed_dim": model.embed_dim,
        "flow_scale": model.flow_scale,
        "config": dataclasses.asdict(cfg),
        **(meta or {}),
    }
    write_json(path.with_suffix(".json"), side)
    return path


def load_mer(path: str | Path, device="cpu") -> tuple[MERNet, dict]:
    """(frozen model in eval mode, side-file metadata); clear errors for missing or mismatched files."""
    from safetensors.torch import load_file

    path = Path(path)
    side_path = path.with_suffix(".json")
    for p in (path, side_path):
        if not p.is_file():
            raise FileNotFoundError(f"MER checkpoint file {p} does not exist (run notebooks/04_evaluator.py)")
    side = json.loads(side_path.read_text())
    model = MERNet(side["num_classes"], side["embed_dim"], side.get("flow_scale", 1.0))
    state = load_file(str(path))
    load_state_dict_checked(model, state, str(path))
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, side


def _model_settings(cfg: MERConfig) -> dict:
    """The settings that shape one evaluator (the list of seeds says how many are trained, not how)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "seeds"}


def evaluator_path(checkpoints: str | Path, dataset: str, seed: int) -> Path:
    return Path(checkpoints) / f"mer_{dataset}_seed{int(seed)}.safetensors"


def load_evaluators(checkpoints: str | Path, dataset: str, seeds, device="cpu") -> dict[int, MERNet]:
    """{seed: frozen evaluator} for every seed of the profile's `evaluator.seeds`."""
    if not list(seeds):
        raise ValueError("evaluator.seeds is empty: at least one evaluator is needed")
    return {int(s): load_mer(evaluator_path(checkpoints, dataset, s), device)[0] for s in seeds}


def fit_or_reuse(
    path: str | Path,
    cfg: MERConfig,
    rgb: torch.Tensor,
    flow: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    seed: int = 0,
    log_path: str | Path | None = None,
    device="cpu",
    meta: dict | None = None,
) -> tuple[MERNet, dict, bool]:
    """Train and save the evaluator, or reuse the checkpoint at `path` when it was trained with the same
    configuration, seed and training inputs (their hash is kept in the side file). Returns the frozen
    model, its side-file metadata and whether it was reused."""
    import hashlib

    h = hashlib.sha256()
    for t in (rgb, flow, torch.as_tensor(labels)):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    key = hashlib.sha256(
        json.dumps(
            {"cfg": _model_settings(cfg), "seed": seed, "classes": list(class_names)}, sort_keys=True
        ).encode()
        + h.digest()
    ).hexdigest()
    path = Path(path)
    side = path.with_suffix(".json")
    if path.is_file() and side.is_file() and json.loads(side.read_text()).get("key") == key:
        model, stored = load_mer(path, device)
        return model, stored, True
    model = build_mer(cfg, len(class_names))
    history = train_mer(model, rgb, flow, labels, cfg, seed, class_names, log_path, device)
    save_mer(
        model,
        path,
        cfg,
        {
            **(meta or {}),
            "key": key,
            "classes": list(class_names),
            "seed": seed,
            "train_clips": len(labels),
            "final_loss": history[-1]["loss"] if history else None,
        },
    )
    model, stored = load_mer(path, device)
    return model, stored, False
