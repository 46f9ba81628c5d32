"""Sampling SynthME clips: expressions, intensities, durations and head motion per dataset."""

from __future__ import annotations

import numpy as np

from magplus_lib.data.clips import DataError
from magplus_lib.data.synthme.config import EMOTIONS, OTHER_CHOICES, RECIPES, SynthMEConfig
from magplus_lib.data.synthme.fields import capped_scale, expression_field
from magplus_lib.data.synthme.render import ClipSpec


def _profile(n: int, apex_idx: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    up = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / max(apex_idx, 1), 0, 1))
    down = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - apex_idx) / max(n - 1 - apex_idx, 1), 0, 1))
    return np.where(t <= apex_idx, up, down)


def _ar1(rng: np.random.Generator, n: int, std: float, rho: float = 0.8, dims: int = 2) -> np.ndarray:
    out = np.zeros((n, dims))
    cur = rng.standard_normal(dims) * std
    for i in range(n):
        cur = rho * cur + np.sqrt(1 - rho**2) * std * rng.standard_normal(dims)
        out[i] = cur
    return out


def _choose_aus(rng: np.random.Generator, emotion: str) -> list[list]:
    if emotion == "other":
        base = list(OTHER_CHOICES[int(rng.integers(len(OTHER_CHOICES)))])
        return [[au, float(rng.uniform(0.6, 1.0))] for au in base]
    req, opt = RECIPES[emotion]
    chosen = list(req) + [au for au in opt if rng.random() < 0.5]
    return [[au, float(rng.uniform(0.6, 1.0))] for au in chosen]


def _au_text(aus: list[list], rng: np.random.Generator, fmt: str) -> str:
    parts = []
    for au, _ in aus:
        txt = au
        if fmt == "samm" and rng.random() < 0.3:
            txt = f"{au}{rng.choice(['A', 'B', 'C', 'D'])}"
        parts.append(txt)
    return "+".join(parts)


def make_clip_spec(
    cfg: SynthMEConfig,
    rng,
    corpus,
    clip_id,
    subject,
    identity_seed,
    emotion,
    kind,
    n_frames,
    first_number,
    jitter,
    grayscale,
) -> ClipSpec:
    """Sample one expression: AUs, amplitude (capped by max_strain), temporal profile, blink, flicker."""
    aus = _choose_aus(rng, emotion)
    raw = expression_field([tuple(a) for a in aus], identity_seed, cfg.render_size)
    lo, hi = cfg.micro_amplitude_px if kind == "micro" else cfg.macro_amplitude_px
    target = float(rng.uniform(lo, hi))
    scale, amp = capped_scale(raw, target, cfg.max_strain)
    apex_idx = int(round((n_frames - 1) * rng.uniform(0.3, 0.6)))
    apex_idx = min(max(apex_idx, 1), n_frames - 2)
    s = _profile(n_frames, apex_idx)
    blink = np.zeros(n_frames)
    if rng.random() < cfg.blink_prob and n_frames >= 4:
        dur = max(3, min(n_frames - 1, int(round(n_frames * rng.uniform(0.2, 0.4)))))
        start = int(rng.integers(1, n_frames - dur + 1))
        blink[start : start + dur] = 0.9 * np.sin(np.pi * (np.arange(dur) + 0.5) / dur) ** 2
    gains = 1 + cfg.flicker * _ar1(rng, n_frames, 1.0, 0.7, 1)[:, 0]
    numbers = list(range(first_number, first_number + n_frames))
    return ClipSpec(
        corpus=corpus,
        clip_id=clip_id,
        subject=subject,
        identity_seed=identity_seed,
        render_size=cfg.render_size,
        supersample=cfg.supersample,
        emotion=emotion,
        aus=aus,
        field_scale=float(scale),
        amplitude_px=amp,
        kind=kind,
        frame_numbers=numbers,
        onset=numbers[0],
        apex=numbers[apex_idx],
        offset=numbers[-1],
        s=s.tolist(),
        blink=blink.tolist(),
        jitter=np.asarray(jitter).tolist(),
        gains=gains.tolist(),
        grayscale=grayscale,
        noise_std=cfg.noise_std,
        noise_seed=int(rng.integers(2**31)),
    )


def _dealt_emotions(totals: dict, n_subjects: int, allowed: dict, rng) -> list[list[str]]:
    """Corpus-wide emotion counts dealt to `n_subjects` subjects, one list per subject.

    Real corpora are uneven (one SAMM subject holds 1 clip, another 20): each subject draws a weight
    from a log-normal and every clip goes to a subject with probability proportional to it, after each
    subject received one clip so that no subject is empty.
    """
    clips = _emotion_list(totals, allowed, rng)
    if len(clips) < n_subjects:
        raise DataError(f"synthme emotion counts: {len(clips)} clips cannot fill {n_subjects} subjects")
    weights = rng.lognormal(0.0, 0.7, n_subjects)
    owner = np.concatenate(
        [
            rng.permutation(n_subjects),
            rng.choice(n_subjects, len(clips) - n_subjects, p=weights / weights.sum()),
        ]
    )
    return [[e for e, o in zip(clips, owner) if o == k] for k in range(n_subjects)]


def _emotion_list(counts: dict, allowed: dict, rng) -> list[str]:
    unknown = sorted(set(counts) - set(EMOTIONS))
    if unknown:
        raise DataError(f"synthme clips_per_subject: unknown emotion(s) {unknown}; known: {list(EMOTIONS)}")
    out = [e for e in EMOTIONS if e in allowed for _ in range(int(counts.get(e, 0)))]
    rng.shuffle(out)
    return out
