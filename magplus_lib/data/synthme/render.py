"""Rendering a SynthME clip: the frame-to-canonical map inverted by fixed-point iteration, the
neutral canvas sampled there, the photometric nuisances added; `render_clip(spec, alpha)` renders the
exactly magnified clip.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
import torch.nn.functional as F

from magplus_lib.data.clips import DataError
from magplus_lib.data.synthme.fields import blink_field, expression_field, field_strain
from magplus_lib.data.synthme.identity import LANDMARK_NAMES, identity_landmarks, neutral_canvas

log = logging.getLogger(__name__)


def _canvas_tensor(canvas: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1)))[None]


def _render_sequence(canvas: np.ndarray, supersample: int, size: int, offsets, s, c, fields) -> torch.Tensor:
    """Frames (T, 3, H, W): q = x + offsets_t + s_t U(x) + c_t B(x) inverted by fixed point, N sampled at x.

    `fields` is (4, H, W): U then B on the canonical grid of render size.
    """
    T = len(s)
    dt = torch.float32  # float32 keeps coordinates to ~1e-5 px at these sizes
    offs = torch.as_tensor(np.asarray(offsets, np.float64), dtype=dt).view(T, 2, 1, 1)
    st = torch.as_tensor(np.asarray(s, np.float64), dtype=dt).view(T, 1, 1, 1)
    ct = torch.as_tensor(np.asarray(c, np.float64), dtype=dt).view(T, 1, 1, 1)
    fld = torch.as_tensor(np.asarray(fields), dtype=dt)[None]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=dt), torch.arange(size, dtype=dt), indexing="ij")
    q = torch.stack([xs, ys])[None]  # (1, 2, H, W)
    x = q - offs
    # Only frames with an expression or a blink need the fixed-point inversion.
    moving = ((st.view(-1).abs() > 0) | (ct.view(-1).abs() > 0)).nonzero().view(-1)
    if len(moving):
        qm, om, sm_, cm = q, offs[moving], st[moving], ct[moving]
        xm = x[moving]
        fm = fld.expand(len(moving), -1, -1, -1)
        scale = 2.0 / max(size - 1, 1)
        for _ in range(60):
            uv = F.grid_sample(
                fm,
                xm.permute(0, 2, 3, 1) * scale - 1.0,
                mode="bilinear",
                padding_mode="border",
                align_corners=True,
            )
            new = qm - om - sm_ * uv[:, 0:2] - cm * uv[:, 2:4]
            delta = float((new - xm).abs().max())
            xm = new
            if delta < 2e-4:
                break
        x = x.clone()
        x[moving] = xm
    ss = supersample
    S = canvas.shape[0]
    hx = (x + 0.5) * ss - 0.5
    grid = (hx.permute(0, 2, 3, 1) * (2.0 / (S - 1)) - 1.0).reshape(1, T * size, size, 2)
    img = _canvas_tensor(canvas)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(3, T, size, size).permute(1, 0, 2, 3).contiguous()


def _photometric(
    frames: torch.Tensor, gains, grayscale: bool, noise_std: float, noise_seed: int, numbers
) -> torch.Tensor:
    """Flicker gain, grayscale conversion (SAMM) and sensor noise seeded per frame number."""
    out = frames * torch.as_tensor(np.asarray(gains, np.float32)).view(-1, 1, 1, 1)
    if grayscale:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        out = (out * w).sum(1, keepdim=True)
    if noise_std > 0:
        noise = np.stack(
            [np.random.default_rng([noise_seed, int(n)]).standard_normal(out.shape[1:]) for n in numbers]
        ).astype(np.float32)
        out = out + noise_std * torch.from_numpy(noise)
    out = out.clamp(0, 1)
    return out.expand(-1, 3, -1, -1).contiguous() if grayscale else out


@dataclasses.dataclass
class ClipSpec:
    """Everything needed to re-render one clip exactly (stored in the ground-truth JSON)."""

    corpus: str  # 'samm' | 'casme3' | 'macro'
    clip_id: str
    subject: str
    identity_seed: int
    render_size: int
    supersample: int
    emotion: str  # canonical key (SAMM vocabulary, lowercase)
    aus: list  # [[AU, weight], ...]
    field_scale: float  # multiplies the unnormalised AU field -> U
    amplitude_px: float  # max |U| after scaling (the apex displacement)
    kind: str  # 'micro' | 'macro'
    frame_numbers: list  # onset..offset
    onset: int
    apex: int
    offset: int
    s: list  # expression profile per frame (0 at onset)
    blink: list  # blink profile per frame (0 at onset)
    jitter: list  # [[x, y], ...] absolute head translation per frame; jitter[0] is the onset's
    gains: list  # flicker gain per frame
    grayscale: bool
    noise_std: float
    noise_seed: int

    def fields(self) -> np.ndarray:
        U = (
            expression_field([tuple(a) for a in self.aus], self.identity_seed, self.render_size)
            * self.field_scale
        )
        B = blink_field(self.identity_seed, self.render_size)
        return np.concatenate([U, B]).astype(np.float64)


def render_clip(
    spec: ClipSpec | dict, alpha: float = 1.0, photometric: bool = True, positions: list[int] | None = None
) -> torch.Tensor:
    """The clip's frames onset..offset with every displacement from the onset frame scaled by `alpha`.

    `positions` (indices into onset..offset) renders only those frames; they equal the whole clip's to
    about 1e-5 (the warp's fixed-point inversion stops on the largest change over the frames rendered).

    (T, 3, H, W) float32 in [0, 1] at the render size. alpha=1 gives the frames that were written
    (before JPEG); photometric nuisances (flicker, noise, grayscale) are the same for every alpha, so
    this is the exact output of an ideal magnifier. Exact as long as the scaled map stays invertible
    (alpha * max strain < 1); a warning is logged otherwise.
    """
    if isinstance(spec, dict):
        spec = ClipSpec(**spec)
    fields = spec.fields()
    strain = alpha * max(field_strain(fields[:2]), 0.0)
    if strain >= 1.0:
        log.warning(
            "render_clip %s: alpha=%g folds the face (strain %.2f >= 1); frames are approximate",
            spec.clip_id,
            alpha,
            strain,
        )
    j = np.asarray(spec.jitter, np.float64)
    offsets = j[0] + alpha * (j - j[0])
    canvas = neutral_canvas(spec.identity_seed, spec.render_size, spec.supersample)
    s = alpha * np.asarray(spec.s)
    c = alpha * np.asarray(spec.blink)
    idx = np.arange(len(s)) if positions is None else np.asarray(positions, dtype=int)
    frames = _render_sequence(
        canvas, spec.supersample, spec.render_size, offsets[idx], s[idx], c[idx], fields
    )
    if not photometric:
        return frames
    gains, numbers = np.asarray(spec.gains)[idx], np.asarray(spec.frame_numbers)[idx]
    return _photometric(frames, gains, spec.grayscale, spec.noise_std, spec.noise_seed, numbers)


def displacement(spec: ClipSpec | dict, alpha: float = 1.0) -> torch.Tensor:
    """Ground-truth displacement from the onset frame, (T, 2, H, W) float32: F(I_onset, I_t) * alpha."""
    if isinstance(spec, dict):
        spec = ClipSpec(**spec)
    fields = torch.from_numpy(spec.fields())[None]
    size = spec.render_size
    j = torch.as_tensor(np.asarray(spec.jitter, np.float64))
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    p = torch.stack([xs, ys]) - j[0].view(2, 1, 1)
    grid = p.permute(1, 2, 0)[None] * (2.0 / (size - 1)) - 1.0
    uv = F.grid_sample(fields, grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    s = torch.as_tensor(spec.s, dtype=torch.float64).view(-1, 1, 1, 1)
    c = torch.as_tensor(spec.blink, dtype=torch.float64).view(-1, 1, 1, 1)
    d = (j - j[0]).view(-1, 2, 1, 1) + s * uv[None, 0:2] + c * uv[None, 2:4]
    return (alpha * d).float()


def landmark_tracks(spec: ClipSpec | dict, size: int | None = None) -> torch.Tensor:
    """Annotated landmarks of every frame onset..offset, (T, K, 2) float32 in pixels (x, y; pixel centres at
    integers), K = len(LANDMARK_NAMES), at the render size or, with `size`, in a frame resized to size.

    Exact: canonical landmark x appears in frame t at x + jitter_t + s_t U(x) + c_t B(x) (the renderer's
    forward map), so the fields are sampled at the canonical landmarks themselves.
    """
    if isinstance(spec, dict):
        spec = ClipSpec(**spec)
    L = identity_landmarks(spec.identity_seed, spec.render_size)
    pts = torch.tensor([L[k] for k in LANDMARK_NAMES], dtype=torch.float64)  # (K, 2)
    n = spec.render_size
    grid = (pts * (2.0 / (n - 1)) - 1.0).view(1, 1, -1, 2)
    fields = torch.from_numpy(spec.fields())[None]
    uv = F.grid_sample(fields, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0]
    s = torch.as_tensor(spec.s, dtype=torch.float64).view(-1, 1, 1)
    c = torch.as_tensor(spec.blink, dtype=torch.float64).view(-1, 1, 1)
    j = torch.as_tensor(np.asarray(spec.jitter, np.float64)).view(-1, 1, 2)
    out = pts[None] + j + s * uv[0:2].T[None] + c * uv[2:4].T[None]
    if size is not None:  # cv2.resize maps pixel centres: x' = (x + 0.5) * size / n - 0.5
        out = (out + 0.5) * (size / n) - 0.5
    return out.float()


def landmarks_for_frames(
    spec: ClipSpec | dict, frame_numbers: list[int], size: int | None = None
) -> torch.Tensor:
    """`landmark_tracks` of the given frame numbers (e.g. a loaded clip's onset..offset), (N, K, 2)."""
    if isinstance(spec, dict):
        spec = ClipSpec(**spec)
    missing = [n for n in frame_numbers if n not in spec.frame_numbers]
    if missing:
        raise DataError(
            f"clip {spec.clip_id}: frames {missing[:5]} are outside its ground truth "
            f"(frames {spec.frame_numbers[0]}..{spec.frame_numbers[-1]})"
        )
    tracks = landmark_tracks(spec, size)
    return tracks[[spec.frame_numbers.index(n) for n in frame_numbers]]
