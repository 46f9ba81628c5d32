"""A magnifier training stage's configuration: the profile's `pretrain:` / `finetune:` sections
(`StageConfig`, `stage_config`) and the per-run settings they resolve to (`TrainConfig`), with the
augmentation of training pairs (`AugmentConfig`).
"""

from __future__ import annotations

import dataclasses

from magplus_lib.data.datasets import check_direction

# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class AugmentConfig:
    """FlowMag's augmentation, applied identically to both frames of a pair."""

    enabled: bool = True
    scale_min: float = 0.7  # RandomResizedCrop area range
    scale_max: float = 1.0
    hflip: bool = True
    vflip: bool = True
    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.3


@dataclasses.dataclass
class TrainConfig:
    steps: int = 20
    batch_size: int = 4  # per process
    lr: float = 3e-4
    alpha_min: float = 1.0
    alpha_max: float = 16.0
    w_mag: float = 1.0
    w_color: float = 10.0
    size: int = 32  # training crop size
    checkpoint_every: int = 50
    seed: int = 0
    # Keep BatchNorm's running statistics fixed and normalise with them while training (the affine
    # weights still train). Fine-tuned with batch statistics of 8 mixed micro/replayed pairs, DeMagPlus
    # read between 0.55 and 0.96 of a requested 1/5 on macro clips at 25-step checkpoints (README
    # "DeMagPlus keeps its BatchNorm statistics").
    freeze_batchnorm: bool = False
    # Measure L_mag's flows in pixels of a frame this size (None: pixels of the training crop). The
    # weights w_mag : w_color = 1 : 10 are FlowMag's at 512 px; at 64 px the same relative motion error
    # is 8x fewer pixels, so without this L_color outweighs L_mag 8x more than in the paper.
    loss_reference_size: int | None = None
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    # Weight of the exact target: the L1 between G and the exactly magnified frame on a batch of
    # photograph pairs with a known field, drawn every step beside the generic batch (0: none).
    exact_weight: float = 0.0

    @property
    def flow_scale(self) -> float:
        """Factor from crop pixels to the pixels L_mag is measured in."""
        return 1.0 if self.loss_reference_size is None else self.loss_reference_size / self.size


@dataclasses.dataclass
class ExactTargetConfig:
    """Profile `pretrain.exact_target`: `pairs` photograph pairs (`texture_pairs.ExactTexturePairs`) whose
    known field gives the exactly magnified frame, the supervised target of Oh et al.'s learning-based
    magnification (2018), added to FlowMag's losses with `weight`. `motion_px` maps a direction to the
    pairs' peak motion range in working pixels; a direction it leaves out has no exact target."""

    pairs: int = 8000
    weight: float = 10.0
    motion_px: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not _is_positive_int(self.pairs):
            raise ValueError(f"exact_target.pairs must be a positive number, got {self.pairs!r}")
        if not self.weight > 0:
            raise ValueError(f"exact_target.weight must be > 0, got {self.weight!r}")
        unknown = sorted(set(self.motion_px) - {"forward", "inverse"})
        if unknown or not self.motion_px:
            raise ValueError(
                f"exact_target.motion_px maps forward / inverse to [lo, hi] px, got {self.motion_px!r}"
            )
        for direction, bounds in self.motion_px.items():
            if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
                raise ValueError(f"exact_target.motion_px.{direction} must be [lo, hi] px, got {bounds!r}")
            lo, hi = bounds
            if not 0 < lo <= hi:
                raise ValueError(f"exact_target.motion_px.{direction} must be 0 < lo <= hi, got {[lo, hi]}")


@dataclasses.dataclass
class StageConfig:
    """Profile sections `pretrain:` / `finetune:`; `train_config` turns one into a TrainConfig."""

    steps: int = 20
    inverse_steps: int | None = None  # steps of the inverse (DeMagPlus) run when it differs from `steps`
    # Pairs per step and process: one number for both directions, or {forward: N, inverse: M} (both).
    batch_size: int | dict = 4
    lr: float = 3e-4
    forward_alpha: tuple[float, float] = (1.0, 16.0)
    inverse_alpha: tuple[float, float] = (1.0 / 16.0, 1.0)
    w_mag: float = 1.0
    w_color: float = 10.0
    checkpoint_every: int = 50
    max_pairs: int | None = None  # cap on the number of training pairs (None: all)
    # Inverse fine-tune only: share of its pairs replayed from the inverse pretraining set. Micro pairs
    # barely move, so DeMagPlus tuned on them alone can forget how to attenuate large motion.
    inverse_replay: float = 0.0
    # Inverse fine-tune only: TrainConfig.freeze_batchnorm. DeMagPlus is tuned on micro (and replayed)
    # pairs but applied to large motion, so it keeps the inverse pretraining's BatchNorm statistics.
    inverse_freeze_batchnorm: bool = False
    # TrainConfig.loss_reference_size: one size for both directions, or {forward: ..., inverse: ...}
    # (a direction left out measures L_mag in crop pixels).
    loss_reference_size: int | dict | None = None
    augment: dict = dataclasses.field(default_factory=dict)
    # Pretraining: photograph pairs with their exact target (ExactTargetConfig as a mapping; None: none).
    exact_target: dict | None = None

    def exact(self, direction: str) -> ExactTargetConfig | None:
        """That direction's exact-target settings, None when it trains on FlowMag's losses alone."""
        check_direction(direction)
        if self.exact_target is None:
            return None
        from magplus_lib.harness.profiles import from_dict

        cfg = from_dict(ExactTargetConfig, self.exact_target, where="exact_target")
        return cfg if direction in cfg.motion_px else None

    def replay_share(self, direction: str) -> float:
        """Share of the fine-tuning set replayed from that direction's pretraining pairs."""
        check_direction(direction)
        return self.inverse_replay if direction == "inverse" else 0.0

    def batch(self, direction: str) -> int:
        """The batch size that direction trains with."""
        check_direction(direction)
        b = self.batch_size
        return b[direction] if isinstance(b, dict) else b

    def reference_size(self, direction: str) -> int | None:
        """The loss_reference_size that direction trains with."""
        check_direction(direction)
        ref = self.loss_reference_size
        return ref.get(direction) if isinstance(ref, dict) else ref

    def train_config(self, direction: str, size: int, seed: int) -> TrainConfig:
        from magplus_lib.harness.profiles import from_dict

        check_direction(direction)
        lo, hi = self.forward_alpha if direction == "forward" else self.inverse_alpha
        steps = (
            self.inverse_steps if direction == "inverse" and self.inverse_steps is not None else self.steps
        )
        return TrainConfig(
            steps=steps,
            batch_size=self.batch(direction),
            lr=self.lr,
            alpha_min=float(lo),
            alpha_max=float(hi),
            w_mag=self.w_mag,
            w_color=self.w_color,
            size=size,
            checkpoint_every=self.checkpoint_every,
            seed=seed,
            freeze_batchnorm=self.inverse_freeze_batchnorm if direction == "inverse" else False,
            exact_weight=exact.weight if (exact := self.exact(direction)) else 0.0,
            loss_reference_size=self.reference_size(direction),
            augment=from_dict(AugmentConfig, self.augment, where="augment"),
        )


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_batch_size(batch, where: str) -> None:
    """A positive batch size, or a mapping that gives one to each direction."""
    if isinstance(batch, dict):
        if sorted(batch) != ["forward", "inverse"]:
            raise ValueError(
                f"{where}.batch_size: a mapping names both directions, forward and inverse; "
                f"got {sorted(batch)}"
            )
        bad = {k: v for k, v in batch.items() if not _is_positive_int(v)}
    else:
        bad = {} if _is_positive_int(batch) else {"": batch}
    for key, value in bad.items():
        name = f"{where}.batch_size" + (f".{key}" if key else "")
        raise ValueError(f"{name} must be a positive number of pairs, got {value!r}")


def stage_config(mapping: dict | None, where: str) -> StageConfig:
    from magplus_lib.harness.profiles import from_dict

    cfg = from_dict(StageConfig, mapping, where=where)
    cfg.forward_alpha = tuple(float(a) for a in cfg.forward_alpha)
    cfg.inverse_alpha = tuple(float(a) for a in cfg.inverse_alpha)
    if not 0.0 <= cfg.inverse_replay < 1.0:
        raise ValueError(f"{where}.inverse_replay must be in [0, 1), got {cfg.inverse_replay}")
    _check_batch_size(cfg.batch_size, where)
    ref = cfg.loss_reference_size
    sizes = ref if isinstance(ref, dict) else {"": ref}
    unknown = sorted(set(sizes) - {"", "forward", "inverse"})
    if unknown:
        raise ValueError(
            f"{where}.loss_reference_size: unknown direction(s) {unknown}; use forward / inverse"
        )
    for key, value in sizes.items():
        if value is not None and not _is_positive_int(value):
            name = f"{where}.loss_reference_size" + (f".{key}" if key else "")
            raise ValueError(f"{name} must be a positive size in pixels or null, got {value!r}")
    return cfg


def notebook_configs(
    magnifier: dict, section: dict, where: str, data: dict, direction: str, size: int, seed: int
) -> tuple:
    """What a magnifier-training notebook (01, 02) works with, from its profile sections: the
    MagnifierConfig, the StageConfig of `section` (named `where`), its TrainConfig for `direction` and
    the DataConfig. Applies the profile's torch thread count (`magnifier.threads`)."""
    import torch

    from magplus_lib.data.datasets import DataConfig
    from magplus_lib.harness.profiles import from_dict
    from magplus_lib.magnifier.model import MagnifierConfig

    mcfg = from_dict(MagnifierConfig, magnifier, "magnifier")
    if mcfg.threads:
        torch.set_num_threads(mcfg.threads)
    stage = stage_config(section, where)
    return mcfg, stage, stage.train_config(direction, size, seed), from_dict(DataConfig, data, "data")
