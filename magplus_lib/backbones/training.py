"""Training of the embedded backbones (`fomm`, `latent`, `emolatent`, `landmark`) on macro clips, and scores.

All are trained the way FOMM is: a batch of (source, driving) frame pairs, each pair two random frames
of one macro clip, and the model reconstructs the driving frame from the source frame (plus FOMM's
equivariance terms). `emolatent` adds an expression-category objective: each clip's emotion label
(`labels`, one int per clip) is predicted from the expression code by a linear classifier; `landmark`
also trains its landmark tracker on annotated positions (`landmarks`, (T, K, 2) per clip). Nothing in
the objectives refers to micro-expressions or to a target motion gain: the study measures afterwards
how these macro-trained models treat micro motion.

Checkpoints: ``<results_dir>/checkpoints/backbone_<name>.safetensors`` (weights, BatchNorm statistics
included), ``.optim.safetensors`` (Adam moments) and a ``.json`` side file (model config, native size,
step, accumulated training time). All randomness of step k is drawn from a generator seeded with
(seed, k), so a run resumed from a checkpoint is identical to an uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import operator
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magplus_lib.backbones.base import BackboneError, checkpoint_path, load_safetensors_into
from magplus_lib.backbones.training_data import ColourJitter, MacroTrainingSet
from magplus_lib.evaluation.metrics import psnr
from magplus_lib.harness.atomicio import write_json, write_text
from magplus_lib.harness.checkpoints import save_safetensors
from magplus_lib.harness.profiles import from_dict
from magplus_lib.harness.train_loop import load_optimizer, optimizer_path, run_steps, save_optimizer

TRAINABLE = ("fomm", "latent", "emolatent", "landmark")
LABELLED = ("emolatent",)  # trained with one label per clip
LANDMARKED = ("landmark",)  # trained with annotated landmarks, (T, K, 2) per clip


@dataclass
class BackboneTrainConfig:
    steps: int = 200
    batch_size: int = 8
    lr: float = 2e-4
    beta1: float = 0.5  # FOMM trains with Adam betas (0.5, 0.999)
    beta2: float = 0.999
    save_every: int = 100
    log_every: int = 10
    # torch intra-op threads while training (None = torch's default). On a CPU shared with other jobs,
    # 1 thread avoids the spin-wait slowdown of oversubscribed thread pools.
    num_threads: int | None = None
    # Colour jitter applied alike to every frame of a pair (backbone_data.ColourJitter fields).
    augment: dict = dataclasses.field(default_factory=dict)
    # fomm only: a phase of `CrossIdentityConfig` fields run after `steps` (empty or steps 0 = none).
    cross_identity: dict = dataclasses.field(default_factory=dict)


@dataclass
class CrossIdentityConfig:
    """fomm's cross-identity phase, after its `steps` of FOMM's own objective: `steps` more steps, each
    adding to FOMM's loss (on frame pairs of one clip of the twin pool) `weight` x the reconstruction of
    identity B making identity A's expression, animated by A's motion (`fomm.cross_identity_loss`).

    Why: FOMM's objective only pairs frames of one video, so nothing says that a keypoint displacement
    means the same motion on another face; on new faces our fomm transferred the driver's motion shrunk.
    The phase has its own Adam (learning rate `lr`) and random stream, so a finished `steps`-step
    checkpoint is exactly this run's state at the phase's start. Chosen on dev-validation identities
    (benchmarks/fomm_cross_identity.py, docs/lab-notes.md)."""

    steps: int = 0
    pairs: int = 2000  # twin pairs rendered from the training set (MacroTrainingSet.cross_identity_pairs)
    weight: float = 10.0
    lr: float = 2e-4


def _model_config(model_cfg, config_class, name: str):
    """A copy of `model_cfg` if it already is a `config_class`, else one filled from the profile mapping
    (the copy lets the factory complete it, e.g. emolatent's num_classes, without touching the caller's)."""
    if isinstance(model_cfg, config_class):
        return dataclasses.replace(model_cfg)
    return from_dict(config_class, model_cfg, f"backbones.{name}")


def model_factory(name: str, model_cfg: dict | Any, num_classes: int | None = None):
    """(model, loss function, config dict) for a trainable backbone name.

    `num_classes` (emolatent only): the number of label categories, used when the config leaves
    `num_classes` unset; a config value smaller than it is an error.
    """
    if name == "fomm":
        from magplus_lib.backbones.fomm import FOMM, FOMMConfig
        from magplus_lib.backbones.fomm_losses import fomm_losses

        cfg = _model_config(model_cfg, FOMMConfig, "fomm")
        if cfg.checkpoint:
            raise BackboneError("backbones.fomm.checkpoint is set: the official model is used, not trained")
        return FOMM(cfg), fomm_losses, cfg.to_dict()
    if name == "latent":
        from magplus_lib.backbones.latent import LatentAnimator, LatentConfig, latent_losses

        cfg = _model_config(model_cfg, LatentConfig, "latent")
        return LatentAnimator(cfg), latent_losses, cfg.to_dict()
    if name == "emolatent":
        from magplus_lib.backbones.latent import EmoLatentAnimator, EmoLatentConfig, emolatent_losses

        cfg = _model_config(model_cfg, EmoLatentConfig, "emolatent")
        if cfg.num_classes is None:
            cfg.num_classes = num_classes
        elif num_classes is not None and cfg.num_classes < num_classes:
            raise BackboneError(
                f"backbones.emolatent.num_classes = {cfg.num_classes} but the labels have {num_classes} "
                "categories"
            )
        if not cfg.num_classes or cfg.num_classes < 2:
            raise BackboneError(
                f"emolatent needs at least 2 expression categories (got num_classes={cfg.num_classes})"
            )
        return EmoLatentAnimator(cfg), emolatent_losses, cfg.to_dict()
    if name == "landmark":
        from magplus_lib.backbones.landmark import LandmarkAnimator, LandmarkConfig, landmark_losses

        cfg = _model_config(model_cfg, LandmarkConfig, "landmark")
        return LandmarkAnimator(cfg), landmark_losses, cfg.to_dict()
    raise BackboneError(
        f"backbone '{name}' is not trainable here; trainable backbones: {', '.join(TRAINABLE)}"
    )


def step_generator(seed: int, step: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(step))
    return g


def _draw_pairs(clips: list[torch.Tensor], batch_size: int, generator: torch.Generator) -> list[tuple]:
    """(clip, frame a, frame b) for each item of a batch: a random clip and two random frames of it."""
    idx = torch.randint(len(clips), (batch_size,), generator=generator).tolist()
    out = []
    for i in idx:
        a, b = torch.randint(clips[i].shape[0], (2,), generator=generator).tolist()
        out.append((i, a, b))
    return out


def sample_pairs(
    clips: list[torch.Tensor],
    batch_size: int,
    generator: torch.Generator,
    labels: list[int] | None = None,
):
    """(source, driving) batches: for each item a random clip and two random frames of it.

    With `labels` (one int per clip) returns (source, driving, labels, neutral): also the (B,) int64
    labels of the chosen clips and their frame 0 (the neutral reference: training clips start at the
    onset). The random draws are the same with or without labels.
    """
    if labels is not None and len(labels) != len(clips):
        raise ValueError(f"sample_pairs: {len(labels)} labels for {len(clips)} clips")
    draws = _draw_pairs(clips, batch_size, generator)
    src = torch.stack([clips[i][a] for i, a, _ in draws])
    drv = torch.stack([clips[i][b] for i, _, b in draws])
    if labels is None:
        return src, drv
    lab = torch.tensor([int(labels[i]) for i, _, _ in draws], dtype=torch.long)
    return src, drv, lab, torch.stack([clips[i][0] for i, _, _ in draws])


def sample_landmark_pairs(
    clips: list[torch.Tensor], landmarks: list[torch.Tensor], batch_size: int, generator: torch.Generator
):
    """`sample_pairs` (same draws) plus the annotated landmarks (B, K, 2) of both frames of each pair."""
    draws = _draw_pairs(clips, batch_size, generator)
    src = torch.stack([clips[i][a] for i, a, _ in draws])
    drv = torch.stack([clips[i][b] for i, _, b in draws])
    return (
        src,
        drv,
        torch.stack([landmarks[i][a] for i, a, _ in draws]),
        torch.stack([landmarks[i][b] for i, _, b in draws]),
    )


def _check_labels(name: str, labels: list[int] | None, num_clips: int) -> list[int] | None:
    if name in LABELLED and labels is None:
        raise ValueError(f"train {name}: needs labels, one expression category (int) per training clip")
    if name not in LABELLED and labels is not None:
        raise ValueError(f"train {name}: takes no labels (only {', '.join(LABELLED)} is trained with labels)")
    if labels is None:
        return None
    if len(labels) != num_clips:
        raise ValueError(f"train {name}: {len(labels)} labels for {num_clips} clips (one label per clip)")
    out = []
    for k, v in enumerate(labels):
        try:
            value = operator.index(v)  # ints and numpy ints; not floats or strings
        except TypeError:
            value = None
        if value is None or isinstance(v, bool) or value < 0:
            raise ValueError(f"train {name}: label {k} is {v!r}; labels are integers >= 0")
        out.append(int(value))
    return out


def _check_landmarks(
    name: str, landmarks: list[torch.Tensor] | None, clips: list[torch.Tensor]
) -> list[torch.Tensor] | None:
    if name in LANDMARKED and landmarks is None:
        raise ValueError(
            f"train {name}: needs landmarks, one (T, K, 2) tensor of annotated positions (pixels) per "
            "training clip (SynthME: synthme.landmark_tracks)"
        )
    if name not in LANDMARKED and landmarks is not None:
        raise ValueError(f"train {name}: takes no landmarks (only {', '.join(LANDMARKED)} does)")
    if landmarks is None:
        return None
    if len(landmarks) != len(clips):
        raise ValueError(f"train {name}: {len(landmarks)} landmark tracks for {len(clips)} clips")
    out = []
    for k, (lm, clip) in enumerate(zip(landmarks, clips)):
        lm = torch.as_tensor(lm, dtype=torch.float32)
        if (
            lm.dim() != 3
            or lm.shape[0] != clip.shape[0]
            or lm.shape[2] != 2
            or lm.shape[1] != landmarks[0].shape[1]
        ):
            raise ValueError(
                f"train {name}: landmarks of clip {k} have shape {tuple(lm.shape)}; expected "
                f"({clip.shape[0]}, K, 2) with the same K for every clip (one row per frame)"
            )
        if not torch.isfinite(lm).all():
            raise ValueError(f"train {name}: landmarks of clip {k} are not all finite")
        out.append(lm)
    return out


def _check_clips(clips: list[torch.Tensor], image_size: int) -> None:
    if not clips:
        raise BackboneError("no training clips: the macro-expression corpus is empty")
    for k, c in enumerate(clips):
        if c.dim() != 4 or c.shape[1] != 3 or tuple(c.shape[-2:]) != (image_size, image_size):
            raise BackboneError(
                f"training clip {k}: expected (T, 3, {image_size}, {image_size}), got {tuple(c.shape)}"
            )


def _save(model, opt, path: Path, meta: dict, step: int) -> None:
    save_safetensors(path, model.state_dict())
    save_optimizer(opt, optimizer_path(path), step)
    write_json(path.with_suffix(".json"), meta)


def train_backbone(
    name: str,
    clips: list[torch.Tensor] | MacroTrainingSet,
    model_cfg: dict | Any,
    train_cfg: BackboneTrainConfig | dict,
    image_size: int,
    results_dir: str | os.PathLike,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = True,
    progress: bool = True,
    labels: list[int] | None = None,
    landmarks: list[torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Train backbone `name` on `clips` (list of (T, 3, S, S) float tensors, S = image_size), or on a
    `MacroTrainingSet`, which is rendered only if training is needed and supplies the labels and
    landmarks itself (its description, not its frames, then identifies the data in the checkpoint).

    `labels`: one expression category (int >= 0) per clip, required by `emolatent` (which takes its
    number of classes from them unless its config sets `num_classes`) and refused by the others.
    `landmarks`: one (T, K, 2) tensor of annotated landmark positions (pixels at image_size) per clip,
    required by `landmark` (K must equal its `num_landmarks`) and refused by the others.

    Resumes from an existing checkpoint of the same configuration; returns a summary with the
    checkpoint path, steps, accumulated training time (s) and the final loss.
    """
    tc = (
        train_cfg
        if isinstance(train_cfg, BackboneTrainConfig)
        else from_dict(BackboneTrainConfig, train_cfg, "backbones.train")
    )
    training_set = clips if isinstance(clips, MacroTrainingSet) else None
    if training_set is not None:
        if labels is not None or landmarks is not None:
            raise ValueError(f"train {name}: a MacroTrainingSet brings its own labels and landmarks")
        if training_set.size != int(image_size):
            raise BackboneError(
                f"train {name}: the training set is rendered at {training_set.size} px, the backbone "
                f"trains at {image_size} px"
            )
    else:
        _check_clips(clips, image_size)
        labels = _check_labels(name, labels, len(clips))
        landmarks = _check_landmarks(name, landmarks, clips)
    jitter = from_dict(ColourJitter, tc.augment, f"backbones.train.augment ({name})")
    phase = from_dict(CrossIdentityConfig, tc.cross_identity, f"backbones.train.cross_identity ({name})")
    if phase.steps and (name != "fomm" or training_set is None):
        raise BackboneError(
            f"train {name}: the cross-identity phase needs fomm and a MacroTrainingSet (it renders twins)"
        )
    total_steps = tc.steps + phase.steps
    device = torch.device(device)
    path = checkpoint_path(Path(results_dir) / "checkpoints", name)
    log_path = Path(results_dir) / "logs" / f"backbone_{name}.csv"

    torch.manual_seed(seed)  # weight initialisation
    if training_set is not None:
        num_classes = len(training_set.emotions) if name in LABELLED else None
    else:
        num_classes = None if labels is None else max(labels) + 1
    model, loss_fn, cfg_dict = model_factory(name, model_cfg, num_classes)
    if landmarks is not None and landmarks[0].shape[1] != model.cfg.num_landmarks:
        raise BackboneError(
            f"backbones.{name}.num_landmarks = {model.cfg.num_landmarks} but the training landmarks have "
            f"{landmarks[0].shape[1]} points"
        )
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2))
    identity = {
        "name": name,
        "model_config": cfg_dict,
        "native_size": int(image_size),
        "train_config": dataclasses.asdict(tc),
        "seed": int(seed),
    }
    if training_set is not None:
        identity["training_set"] = training_set.description
    else:
        identity["num_clips"] = len(clips)
    if labels is not None:  # only labelled backbones: the others' identity (and reuse) is unchanged
        identity["labels"] = labels
    if landmarks is not None:  # a digest: retraining is needed when the annotations change
        digest = hashlib.sha256()
        for lm in landmarks:
            digest.update(lm.numpy().tobytes())
        identity["landmarks_sha256"] = digest.hexdigest()
    run = _RunState()
    if resume and path.is_file() and path.with_suffix(".json").is_file():
        meta = json.loads(path.with_suffix(".json").read_text())
        ran = int(meta.get("step", 0))
        in_phase = ran > int(meta.get("train_config", {}).get("steps", 0))
        free = ("steps", "save_every", "log_every", "num_threads")  # may change between runs

        def fixed(train: dict) -> dict:
            out = {k: v for k, v in train.items() if k not in free and k != "cross_identity"}
            if in_phase:  # past `steps`: their number and the phase's settings made these weights
                out["steps"] = train.get("steps")
                out["cross_identity"] = {
                    k: v for k, v in (train.get("cross_identity") or {}).items() if k != "steps"
                }
            return out

        differ = [k for k, v in identity.items() if k != "train_config" and meta.get(k) != v]
        if fixed(meta.get("train_config", {})) != fixed(identity["train_config"]):
            differ.append("train_config")
        longer = ran > total_steps or (not in_phase and ran > tc.steps)
        if differ or longer:  # say why hours of training start again
            limit = total_steps if in_phase else tc.steps
            why = f"its {', '.join(differ)} differ" if differ else f"it ran {ran} > {limit} steps"
            print(f"train {name}: not reusing {path} ({why}); training from step 0", flush=True)
        elif ran not in (tc.steps, total_steps) and not optimizer_path(path).is_file():
            # cache entries hold no optimizer state: an unfinished run restored from one starts again
            print(
                f"train {name}: {path} stopped at step {ran} of {total_steps} and its optimizer state is "
                "not there; training from step 0",
                flush=True,
            )
        else:
            load_safetensors_into(model, path)
            if ran < tc.steps:  # a finished run (or phase) needs no optimizer state (none is cached)
                load_optimizer(opt, optimizer_path(path), ran)
            run.step = ran
            run.wall_s, run.cpu_s = float(meta.get("time_s", 0.0)), float(meta.get("cpu_s", 0.0))
            run.final_loss = meta.get("final_loss", math.nan)
            if log_path.is_file():
                with open(log_path, newline="") as fh:
                    run.log_rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= run.step]
    if run.step >= total_steps:
        return run.summary(name, path, reused=True)
    if training_set is not None:  # rendered now, only because this backbone trains
        clips = training_set.clips
        labels = training_set.labels if name in LABELLED else None
        landmarks = training_set.landmarks if name in LANDMARKED else None
        if landmarks is not None and landmarks[0].shape[1] != model.cfg.num_landmarks:
            raise BackboneError(
                f"backbones.{name}.num_landmarks = {model.cfg.num_landmarks} but the training set has "
                f"{landmarks[0].shape[1]} landmarks"
            )

    def save(step: int) -> None:
        run.step = step
        meta = {
            **identity,
            "step": step,
            "complete": step >= total_steps,
            "time_s": run.wall_s,
            "cpu_s": run.cpu_s,
        }
        _save(model, opt, path, {**meta, "final_loss": run.final_loss}, step)
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for r in run.log_rows for k in r)) or ["step", "loss"]
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(run.log_rows)
        write_text(log_path, buf.getvalue())

    def one_step(step: int) -> dict:
        nonlocal opt, pool
        if step >= tc.steps and pool is None:  # entering (or resuming) the cross-identity phase
            pool = training_set.cross_identity_pairs(phase.pairs)
            opt = torch.optim.Adam(model.parameters(), lr=phase.lr, betas=(tc.beta1, tc.beta2))
            if step > tc.steps:
                load_optimizer(opt, optimizer_path(path), step)
        t0, c0 = time.perf_counter(), time.process_time()
        # the cross-identity phase draws from its own stream
        g = step_generator(seed + 1, step - tc.steps) if pool is not None else step_generator(seed, step)
        if pool is not None:
            loss, parts = cross_identity_step(
                model, loss_fn, pool, tc.batch_size, phase.weight, jitter, g, cache, device
            )
        elif labels is None and landmarks is None:
            src, drv = jitter(list(sample_pairs(clips, tc.batch_size, g)), g)
            loss, parts = loss_fn(model, src.to(device), drv.to(device), g, cache)
        else:  # the landmarked and the labelled backbones get their annotations as keyword arguments
            if landmarks is not None:
                src, drv, lsrc, ldrv = sample_landmark_pairs(clips, landmarks, tc.batch_size, g)
                src, drv = jitter([src, drv], g)
                extra = {"source_landmarks": lsrc, "driving_landmarks": ldrv}
            else:
                src, drv, lab, neutral = sample_pairs(clips, tc.batch_size, g, labels)
                src, drv, neutral = jitter([src, drv, neutral], g)
                extra = {"labels": lab, "neutral": neutral}
            extra = {k: v.to(device) for k, v in extra.items()}
            loss, parts = loss_fn(model, src.to(device), drv.to(device), g, cache, **extra)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.final_loss = float(loss.detach())
        run.wall_s += time.perf_counter() - t0
        run.cpu_s += time.process_time() - c0
        if not math.isfinite(run.final_loss):
            raise FloatingPointError(f"train {name}: loss became {run.final_loss} at step {step + 1}")
        if (step + 1) % tc.log_every == 0 or step + 1 in (tc.steps, total_steps):
            row = {"step": step + 1, "loss": f"{run.final_loss:.6g}"}
            run.log_rows.append(row | {k: f"{v:.6g}" for k, v in parts.items()})
        return {"step": step + 1, "loss": run.final_loss}

    model.train()
    threads_before = torch.get_num_threads()
    if tc.num_threads:
        torch.set_num_threads(int(tc.num_threads))
    cache: dict = {}
    pool = None
    try:
        run_steps(
            run.step,
            total_steps,
            one_step,
            desc=f"train {name}",
            progress=progress,
            checkpoint=save,
            checkpoint_at=lambda s: (s % tc.save_every == 0 or s == tc.steps) and s < total_steps,
        )
    finally:
        torch.set_num_threads(threads_before)
    save(total_steps)
    return run.summary(name, path, reused=False)


def cross_identity_step(
    model, loss_fn, pool: torch.Tensor, batch: int, weight: float, jitter, g, cache, device
):
    """One step of fomm's cross-identity phase on the twin pool ((n, 4, 3, S, S) uint8: A's onset, A's
    frame t, B's onset, B's frame t). FOMM's own objective takes a frame pair of one clip (A's or B's,
    either order); the cross term drives B's onset by A's motion with B's frame t as the target."""
    from magplus_lib.backbones.fomm_losses import cross_identity_loss

    idx = torch.randint(len(pool), (2 * batch,), generator=g)
    own = pool[idx[:batch]].float() / 255
    flip = torch.rand(batch, generator=g) < 0.5
    twin = (torch.rand(batch, generator=g) < 0.5)[:, None, None, None]
    first = torch.where(twin, own[:, 2], own[:, 0])
    second = torch.where(twin, own[:, 3], own[:, 1])
    flip = flip[:, None, None, None]
    src, drv = jitter([torch.where(flip, second, first), torch.where(flip, first, second)], g)
    loss, parts = loss_fn(model, src.to(device), drv.to(device), g, cache)
    x = pool[idx[batch:]].float() / 255
    a0, at = (f.to(device) for f in jitter([x[:, 0], x[:, 1]], g))
    b0, bt = (f.to(device) for f in jitter([x[:, 2], x[:, 3]], g))
    xid = weight * cross_identity_loss(model, b0, bt, a0, at, cache)
    return loss + xid, {**parts, "cross_identity": float(xid.detach())}


@dataclass
class _RunState:
    step: int = 0
    wall_s: float = 0.0  # training-step wall time, accumulated over resumed runs
    cpu_s: float = 0.0  # process CPU time of the training steps (robust to a busy machine)
    final_loss: float = math.nan
    log_rows: list = dataclasses.field(default_factory=list)

    def summary(self, name: str, path: Path, reused: bool) -> dict[str, Any]:
        return {
            "name": name,
            "checkpoint": str(path),
            "steps": self.step,
            "time_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "final_loss": self.final_loss,
            "reused": reused,
        }


# ----------------------------------------------------------------------------------------------------
# scores


def reconstruction_psnr(backbone, clips: list[torch.Tensor]) -> float:
    """Self-reenactment: animate each clip's frame 0 with the clip itself; mean PSNR over clips of the
    frames after frame 0 (frame 0 is the trivial reference)."""
    values = []
    for clip in clips:
        if clip.shape[0] < 2:
            continue
        out = backbone.animate(clip[0], clip)
        values.append(psnr(out[1:], clip[1:]))
    if not values:
        raise ValueError("reconstruction_psnr: no clip with at least two frames")
    return float(np.mean(values))


@dataclass
class BackboneEvalConfig:
    """How 03_backbones measures the backbones (the profile's `backbones.eval`)."""

    max_macro_eval_clips: int | None = 8  # clips of the macro corpus (no backbone trains on its subjects)
    max_micro_clips: int | None = None  # test-subject micro drivers used for MMR (None = all)
    max_frames: int | None = 12  # onset..offset thinned to this many frames (onset and apex kept)
    dataset: str = "samm"  # micro drivers come from this dataset's test subjects


def train_config_for(name: str, train: dict | None) -> BackboneTrainConfig:
    """`backbones.train` holds shared settings plus optional per-backbone overrides (`train.fomm.steps`)."""
    train = dict(train or {})
    common = {k: v for k, v in train.items() if k not in TRAINABLE}
    own = train.get(name) or {}
    return from_dict(BackboneTrainConfig, {**common, **own}, f"backbones.train ({name})")


def measure_mmr(
    backbone, drivers: list[torch.Tensor], apex_positions: list[int], sources: list[torch.Tensor]
) -> tuple[float, list[float], list[torch.Tensor]]:
    """Animate each source with its micro driver (onset at position 0) and compare motion.

    Returns (mean MMR, per-clip ratios, generated clips); the ratio is `metrics.motion_ratio` of the
    generated clip over the real driver, on Farneback flow from the onset to onset+1 .. apex.
    """
    from magplus_lib.evaluation.metrics import expression_targets, motion_ratio

    if not (len(drivers) == len(apex_positions) == len(sources)) or not drivers:
        raise ValueError(
            f"measure_mmr: {len(drivers)} drivers, {len(apex_positions)} apexes, {len(sources)} sources"
        )
    ratios, generated = [], []
    for drv, apex, src in zip(drivers, apex_positions, sources):
        out = backbone.animate(src, drv)
        targets = expression_targets(0, apex)
        ratios.append(float(motion_ratio(out, drv, 0, targets)))
        generated.append(out)
    return float(np.mean(ratios)), ratios, generated


class SourceCopy:
    """Reference for reconstruction scores: every output frame is the source (no motion at all)."""

    name = "static"
    native_size = None

    def animate(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        return source[None].expand(driving.shape[0], -1, -1, -1).clone()
