"""What the embedded backbones learn from: many rendered macro identities, and colour jitter on pairs.

The real face-animation models are trained on thousands of identities (FOMM: about 1k VoxCeleb
identities), so that a new face at test time is one more of the same kind. SynthME can render as many
macro-expression identities as needed: `MacroTrainingSet` draws them from their own seed stream
(`synthme.TRAINING_STREAM`; no corpus and no held-out evaluation subject shares one), a share of the
subjects in SAMM's grey, and renders them only when a backbone actually trains (a restored checkpoint
needs none of it).

`ColourJitter` changes brightness, contrast, saturation and hue, and turns a share of the pairs grey,
applying the *same* draw to every frame of one training pair (source, driving and the clip's neutral
frame), so the motion between them is untouched while the model learns that colour is the source's
business: a grey SAMM face must stay grey.

`MacroTrainingSet.cross_identity_pairs` renders one expression on two identities (`twin_spec`: the same
action units, intensity curve, head motion and peak displacement in pixels on another face), which
real corpora cannot supply; fomm's cross-identity phase (backbone_training) learns from them that a
keypoint displacement means the same motion on another face.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from magplus_lib.data import synthme

# Seed stream of the draw of (clip, other identity, frame) triples for cross-identity pairs: not a
# rendering stream (the frames are the training set's identities).
CROSS_IDENTITY_STREAM = 4477


@dataclass
class TrainingSetConfig:
    """The profile's `backbones.training_set`."""

    subjects: int = 400  # rendered macro identities (seed stream synthme.TRAINING_STREAM)
    clips_per_subject: int = 3  # distinct emotions per identity
    grey_fraction: float = 0.3  # share of identities rendered in SAMM's grey
    max_frames: int = 8  # onset..offset thinned to this many frames (onset and apex kept)


def thinned_positions(spec: synthme.ClipSpec, max_frames: int) -> list[int]:
    """Indices into onset..offset that `synthme.render_thinned` renders: `max_frames` evenly spaced,
    onset and apex kept."""
    n = len(spec.frame_numbers)
    apex = spec.frame_numbers.index(spec.apex)
    if n <= max_frames:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_frames).round().astype(int).tolist()) | {0, apex})


class MacroTrainingSet:
    """Rendered macro clips of many identities, with what each backbone trains on besides frames.

    `description` identifies the set (it enters a checkpoint's identity in place of the frames);
    `clips`, `labels` and `landmarks` are rendered on first use."""

    def __init__(self, synth: synthme.SynthMEConfig, cfg: TrainingSetConfig, size: int, progress=True):
        if cfg.subjects < 1 or cfg.max_frames < 2:
            raise ValueError(
                "backbones.training_set: needs subjects >= 1 and max_frames >= 2, "
                f"got {dataclasses.asdict(cfg)}"
            )
        self.synth, self.cfg, self.size, self.progress = synth, cfg, int(size), progress
        self.specs = synthme.macro_specs(
            synth, cfg.subjects, cfg.clips_per_subject, synthme.TRAINING_STREAM, cfg.grey_fraction
        )
        self.emotions = sorted({s.emotion for s in self.specs})

    @property
    def description(self) -> dict:
        # The clips' specs, not the whole SynthME config: a corpus setting the macro identities do not
        # read (e.g. SAMM's subject count) must not make a cached backbone look trained on other data.
        specs = json.dumps([dataclasses.asdict(s) for s in self.specs], sort_keys=True)
        return {
            "specs": hashlib.sha256(specs.encode()).hexdigest()[:16],
            "stream": synthme.TRAINING_STREAM,
            **dataclasses.asdict(self.cfg),
            "size": self.size,
        }

    @cached_property
    def _rendered(self) -> list[tuple[torch.Tensor, list[int]]]:
        from tqdm.auto import tqdm

        out = []
        for spec in tqdm(self.specs, desc="render macro training clips", disable=not self.progress):
            positions = thinned_positions(spec, self.cfg.max_frames)
            frames = synthme.render_clip(spec, positions=positions)
            out.append((F.interpolate(frames, size=(self.size,) * 2, mode="area").clamp(0, 1), positions))
        return out

    def cross_identity_pairs(self, n: int) -> torch.Tensor:
        """(n, 4, 3, size, size) uint8 frames of `n` random twin pairs, each: a clip's onset, one of its
        thinned frames t, and onset and frame t of `twin_spec` of that clip on another identity of the
        set (drawn from the stream (synth seed, CROSS_IDENTITY_STREAM))."""
        from tqdm.auto import tqdm

        subjects = sorted({s.subject for s in self.specs})
        if len(subjects) < 2:
            raise ValueError(f"cross-identity pairs need two identities; the training set has {subjects}")
        rng = np.random.default_rng([self.synth.seed, CROSS_IDENTITY_STREAM])
        by_subject = {s.subject: s for s in self.specs}  # any clip carries the identity's seed and grey
        out = torch.empty(n, 4, 3, self.size, self.size, dtype=torch.uint8)
        for i in tqdm(range(n), desc="render cross-identity pairs", disable=not self.progress):
            a = self.specs[int(rng.integers(len(self.specs)))]
            b = by_subject[subjects[int(rng.integers(len(subjects)))]]
            while b.subject == a.subject:
                b = by_subject[subjects[int(rng.integers(len(subjects)))]]
            positions = thinned_positions(a, self.cfg.max_frames)
            t = positions[int(rng.integers(1, len(positions)))]
            out[i, :2] = self._render_uint8(a, [0, t])
            out[i, 2:] = self._render_uint8(twin_spec(a, b, self.synth), [0, t])
        return out

    def _render_uint8(self, spec: synthme.ClipSpec, positions: list[int]) -> torch.Tensor:
        frames = synthme.render_clip(spec, positions=positions)
        small = F.interpolate(frames, size=(self.size,) * 2, mode="area").clamp(0, 1)
        return (small * 255).round().to(torch.uint8)

    @property
    def clips(self) -> list[torch.Tensor]:
        return [frames for frames, _ in self._rendered]

    @property
    def labels(self) -> list[int]:
        """Each clip's emotion category, numbered in sorted order of the emotion names."""
        return [self.emotions.index(s.emotion) for s in self.specs]

    @cached_property
    def landmarks(self) -> list[torch.Tensor]:
        """Annotated landmark positions (pixels at `size`) of each rendered frame, (T, K, 2) per clip."""
        return [
            synthme.landmarks_for_frames(spec, [spec.frame_numbers[p] for p in positions], self.size)
            for spec, (_, positions) in zip(self.specs, self._rendered)
        ]

    @property
    def subjects(self) -> int:
        return len({s.subject for s in self.specs})

    @property
    def grey_subjects(self) -> int:
        return len({s.subject for s in self.specs if s.grayscale})


def twin_spec(
    spec: synthme.ClipSpec, other: synthme.ClipSpec, synth: synthme.SynthMEConfig
) -> synthme.ClipSpec:
    """`spec`'s expression on `other`'s face: the same action units, intensity curve, head motion, blink
    and flicker; the displacement field is `other`'s own for those action units, scaled to the same peak
    displacement in pixels and capped by the corpus's strain limit, as every SynthME clip is."""
    raw = synthme.expression_field([tuple(a) for a in spec.aus], other.identity_seed, spec.render_size)
    scale, amp = synthme.capped_scale(raw, spec.amplitude_px, synth.max_strain)
    return dataclasses.replace(
        spec,
        clip_id=f"{spec.clip_id}_on_{other.subject}",
        subject=other.subject,
        identity_seed=other.identity_seed,
        field_scale=float(scale),
        amplitude_px=amp,
        grayscale=other.grayscale,
    )


@dataclass
class ColourJitter:
    """The profile's `backbones.train.augment`: the same random colour change on every frame of a pair."""

    brightness: float = 0.0  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.0  # blend with the frame's mean grey, factor from [1 - c, 1 + c]
    saturation: float = 0.0  # blend with the frame's grey, factor from [1 - s, 1 + s]
    hue: float = 0.0  # rotation of the chroma plane by up to +-hue turns
    grey_probability: float = 0.0  # share of pairs turned grey (after the colour change)

    @property
    def active(self) -> bool:
        return any(dataclasses.astuple(self))

    def __call__(self, frames: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        """`frames`: tensors (B, 3, H, W) in [0, 1], item b of each belonging to one pair; returns them
        changed alike. Draws from `generator` only when active (so an inactive jitter changes nothing)."""
        if not self.active:
            return frames
        b = frames[0].shape[0]

        def factor(spread: float) -> torch.Tensor:
            u = torch.rand(b, generator=generator) * 2 - 1
            return (1 + spread * u).view(b, 1, 1, 1)

        bright, contrast, sat = factor(self.brightness), factor(self.contrast), factor(self.saturation)
        angle = ((torch.rand(b, generator=generator) * 2 - 1) * self.hue * 2 * torch.pi).view(b, 1, 1)
        grey = (torch.rand(b, generator=generator) < self.grey_probability).view(b, 1, 1, 1)
        mean_grey = _luma(frames[0]).mean(dim=(1, 2, 3), keepdim=True)  # the pair's source sets it
        out = []
        for x in frames:
            x = (x * bright).clamp(0, 1)
            x = (mean_grey * bright + (x - mean_grey * bright) * contrast).clamp(0, 1)
            y = _luma(x)
            x = (y + (x - y) * sat).clamp(0, 1)
            x = _rotate_hue(x, angle).clamp(0, 1)
            out.append(torch.where(grey, _luma(x).expand_as(x), x))
        return out


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (B, 1, H, W)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma (I, Q) plane of YIQ by `angle` (B, 1, 1) radians; luma is kept."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=x.dtype
    )
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
    c, s = torch.cos(angle), torch.sin(angle)
    i = yiq[:, 1] * c - yiq[:, 2] * s
    q = yiq[:, 1] * s + yiq[:, 2] * c
    yiq = torch.stack([yiq[:, 0], i, q], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_yiq), yiq)
