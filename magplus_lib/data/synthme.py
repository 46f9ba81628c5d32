"""SynthME: a procedural, fully known micro/macro-expression corpus written in the real datasets' formats.

Why: SAMM and CAS(ME)^3 are licensed and never downloaded by this code, yet the default profile and every
test must go through the real loaders. SynthME renders synthetic subjects, moves their faces with FACS
action units modelled as smooth landmark-anchored displacement fields, and writes the clips exactly in
the SAMM layout (spreadsheet with preamble, grayscale frames, 200 fps) and the CAS(ME)^3 Part A layout
(label sheet, whole colour videos, 30 fps), quirks included. Its numbers are synthetic and are labelled so.

Geometry (all in pixels of the render size, flow convention of `magplus_lib.magnifier.flow`):
  A subject is a neutral image N, defined continuously by a supersampled, pre-filtered canvas.
  Frame t shows canonical point x at  q = x + j_t + s_t * U(x) + c_t * B(x),
  with j_t the head jitter, U the apex expression field (sum of AU fields), s_t its temporal profile,
  B the blink field and c_t its profile. Rendering inverts this map by fixed-point iteration and samples
  N at x, so frames are not blurred by repeated resampling. The ground truth of a clip is the
  displacement from its onset frame, D_t(p) = (j_t - j_o) + s_t U(p - j_o) + c_t B(p - j_o): pixel p of
  the onset frame is found at p + D_t(p) in frame t, i.e. D_t = F(I_onset, I_t) and
  `flow.warp(I_t, D_t) ~ I_onset`. `render_clip(spec, alpha)` renders the same clip with every
  displacement scaled by alpha (and the same photometric nuisances): the exact magnified clip.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from magplus_lib.data.clips import Clip, DataError
from magplus_lib.harness import atomicio

log = logging.getLogger(__name__)

GROUND_TRUTH_JSON = "synthme_groundtruth.json"
GROUND_TRUTH_NPZ = "synthme_groundtruth.npz"
STAMP = "synthme_stamp.json"

# Canonical emotion keys (SAMM vocabulary, lowercase) and their names in each format's own vocabulary.
EMOTIONS = ("happiness", "surprise", "anger", "contempt", "disgust", "fear", "sadness", "other")
VOCAB = {
    "samm": {
        "happiness": "Happiness",
        "surprise": "Surprise",
        "anger": "Anger",
        "contempt": "Contempt",
        "disgust": "Disgust",
        "fear": "Fear",
        "sadness": "Sadness",
        "other": "Other",
    },
    "casme3": {
        "happiness": "happy",
        "surprise": "surprise",
        "anger": "anger",
        "disgust": "disgust",
        "fear": "fear",
        "sadness": "sad",
        "other": "others",
    },
}
# Objective classes (Davison et al. 2018, approximately): I happiness ... VII others/contempt.
OBJECTIVE = {
    "happiness": 1,
    "surprise": 2,
    "anger": 3,
    "disgust": 4,
    "sadness": 5,
    "fear": 6,
    "contempt": 7,
    "other": 7,
}
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII"]
# EMFACS-style prototypes: (required AUs, optional AUs). 'R' marks a unilateral (subject's right) AU.
RECIPES = {
    "happiness": (["6", "12"], ["25"]),
    "surprise": (["1", "2", "26"], ["5", "25"]),
    "anger": (["4", "7"], ["5", "23", "17"]),
    "disgust": (["9"], ["10", "15", "17", "4"]),
    "fear": (["1", "2", "4"], ["5", "20", "26"]),
    "sadness": (["1", "4", "15"], ["17"]),
    "contempt": (["R12", "R14"], []),
}
OTHER_CHOICES = [["4"], ["7"], ["17"], ["14"], ["10"], ["R7"], ["L12"]]
SAMM_SUBJECTS = [i for i in range(6, 38) if i not in (8, 27, 29)]


@dataclasses.dataclass
class SynthMEConfig:
    """Profile `synthme:` section. Amplitudes are peak displacements in pixels at `render_size`."""

    seed: int = 0
    render_size: int = 128
    supersample: int = 4
    samm_subjects: int = 12
    casme3_subjects: int = 12
    macro_subjects: int = 6
    micro_clips_per_subject: dict = dataclasses.field(
        default_factory=lambda: {
            "happiness": 2,
            "surprise": 2,
            "anger": 1,
            "contempt": 1,
            "disgust": 1,
            "fear": 1,
            "sadness": 1,
            "other": 1,
        }
    )
    # Corpus-wide clip counts per emotion, as the real sets have them (reference/datasets.md); when set,
    # the clips are dealt to the subjects unevenly (every subject gets at least one) and
    # micro_clips_per_subject is not used for that corpus.
    samm_emotion_counts: dict | None = None
    casme3_emotion_counts: dict | None = None
    macro_clips_per_subject: dict = dataclasses.field(
        default_factory=lambda: {
            "happiness": 1,
            "surprise": 1,
            "anger": 1,
            "disgust": 1,
            "fear": 1,
            "sadness": 1,
        }
    )
    micro_amplitude_px: list = dataclasses.field(default_factory=lambda: [0.3, 2.0])
    macro_amplitude_px: list = dataclasses.field(default_factory=lambda: [4.0, 15.0])
    samm_fps: float = 200.0
    casme3_fps: float = 30.0
    samm_duration_s: list = dataclasses.field(default_factory=lambda: [0.15, 0.35])
    casme3_duration_s: list = dataclasses.field(default_factory=lambda: [0.2, 0.5])
    macro_duration_s: list = dataclasses.field(default_factory=lambda: [0.5, 1.2])
    mes_per_video: int = 2  # CAS(ME)^3 layout: up to this many expressions share one video letter
    gap_frames: list = dataclasses.field(default_factory=lambda: [2, 5])  # neutral frames around them
    noise_std: float = 0.01  # sensor noise, [0, 1] units
    jitter_px: float = 0.05  # head jitter (std of an AR(1) translation)
    flicker: float = 0.01  # relative illumination flicker (std)
    blink_prob: float = 0.1  # chance that a clip contains a blink
    jpeg_quality: int = 95
    quirk_rate: float = 0.05  # share of spreadsheet rows given a real-data quirk (at least one each)
    max_strain: float = 0.8  # cap on |grad U| * amplitude so the warp stays invertible
    generic_pairs: int = 1000
    generic_size: int = 128
    generic_motion_px: list = dataclasses.field(default_factory=lambda: [0.5, 4.0])
    # Peak motion of a second pair set for the inverse (DeMagPlus) stage, which has to attenuate the
    # large motion MagPlus and the backbones produce; None: the inverse stage shares generic/.
    generic_inverse_motion_px: list | None = None


# --------------------------------------------------------------------------------------------------
# identities and the neutral canvas


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    import cv2

    base = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    up = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    up = up.reshape(size, size, channels)
    return up / (up.std() + 1e-6)


def identity_landmarks(seed: int, size: int) -> dict:
    """A subject's geometry and colours (pixels of the render size); deterministic for the seed."""
    rng = np.random.default_rng([seed, 101])
    a = size * rng.uniform(0.25, 0.3)
    b = a * rng.uniform(1.22, 1.38)
    cx = size * (0.5 + rng.uniform(-0.03, 0.03))
    cy = size * (0.5 + rng.uniform(0.0, 0.05))
    ey = cy - rng.uniform(0.1, 0.17) * b
    ex = rng.uniform(0.36, 0.44) * a
    ew = rng.uniform(0.19, 0.24) * a
    eh = ew * rng.uniform(0.42, 0.55)
    by = ey - rng.uniform(0.3, 0.42) * a
    my = cy + rng.uniform(0.44, 0.52) * b
    mw = rng.uniform(0.3, 0.4) * a
    tones = np.array(
        [[0.96, 0.8, 0.69], [0.88, 0.69, 0.55], [0.76, 0.57, 0.42], [0.58, 0.4, 0.29], [0.42, 0.29, 0.2]],
        np.float32,
    )
    t = rng.uniform(0, len(tones) - 1)
    skin = tones[int(t)] * (1 - t % 1) + tones[min(int(t) + 1, len(tones) - 1)] * (t % 1)
    hair = np.array(
        rng.choice([[0.1, 0.07, 0.05], [0.3, 0.2, 0.1], [0.55, 0.4, 0.2], [0.75, 0.65, 0.4], [0.5, 0.5, 0.5]])
    )
    L = {
        "face_c": (cx, cy),
        "face_ab": (a, b),
        "skin": skin.tolist(),
        "hair": (hair * rng.uniform(0.8, 1.1)).clip(0, 1).tolist(),
        "iris": rng.choice(
            [[0.3, 0.2, 0.1], [0.2, 0.35, 0.55], [0.25, 0.45, 0.3], [0.15, 0.1, 0.07]]
        ).tolist(),
        "lip": (skin * np.array([0.85, 0.55, 0.55]) * rng.uniform(0.85, 1.05)).clip(0, 1).tolist(),
        "cloth": rng.uniform(0.1, 0.9, 3).tolist(),
        "bg": [rng.uniform(0.2, 0.9, 3).tolist(), rng.uniform(0.2, 0.9, 3).tolist()],
        "light": rng.uniform(-1, 1, 2).tolist(),
        "light_strength": float(rng.uniform(0.05, 0.2)),
        "hairline": float(rng.uniform(0.5, 0.75)),
        "long_hair": bool(rng.random() < 0.5),
        "beard": bool(rng.random() < 0.2),
        "eye_wh": (ew, eh),
        "brow_thick": float(rng.uniform(0.05, 0.09) * a),
        "lip_h": float(rng.uniform(0.06, 0.1) * a),
        "texture_seed": int(rng.integers(2**31)),
    }
    for side, name in ((-1, "r"), (1, "l")):  # image-left is the subject's right
        L[f"eye_{name}"] = (cx + side * ex, ey)
        L[f"brow_inner_{name}"] = (cx + side * 0.17 * a, by + 0.02 * a)
        L[f"brow_mid_{name}"] = (cx + side * 0.42 * a, by - 0.06 * a)
        L[f"brow_outer_{name}"] = (cx + side * 0.68 * a, by + 0.04 * a)
        L[f"upper_lid_{name}"] = (cx + side * ex, ey - eh)
        L[f"lower_lid_{name}"] = (cx + side * ex, ey + eh)
        L[f"cheek_{name}"] = (cx + side * 0.45 * a, ey + 0.42 * a)
        L[f"nose_side_{name}"] = (cx + side * 0.13 * a, cy + 0.05 * b)
        L[f"nostril_{name}"] = (cx + side * 0.12 * a, cy + 0.24 * b)
        L[f"mouth_{name}"] = (cx + side * mw, my)
        L[f"upper_lip_{name}"] = (cx + side * 0.12 * a, my - L["lip_h"])
    L["nose_tip"] = (cx, cy + 0.2 * b)
    L["upper_lip"] = (cx, my - L["lip_h"])
    L["lower_lip"] = (cx, my + 1.3 * L["lip_h"])
    L["chin"] = (cx, cy + 0.86 * b)
    return L


LANDMARK_NAMES = [
    f"{k}_{s}"
    for k in (
        "eye",
        "brow_inner",
        "brow_mid",
        "brow_outer",
        "upper_lid",
        "lower_lid",
        "cheek",
        "nostril",
        "mouth",
    )
    for s in ("r", "l")
] + ["nose_tip", "upper_lip", "lower_lip", "chin"]


@functools.lru_cache(maxsize=16)
def neutral_canvas(seed: int, size: int, supersample: int) -> np.ndarray:
    """The subject's neutral face, (S, S, 3) float32 RGB at S = size * supersample, pre-filtered."""
    import cv2

    L = identity_landmarks(seed, size)
    ss = supersample
    S = size * ss
    rng = np.random.default_rng([L["texture_seed"], 5])

    def P(pt):  # render-size point -> hi-res integer point
        return (int(round((pt[0] + 0.5) * ss - 0.5)), int(round((pt[1] + 0.5) * ss - 0.5)))

    def R(v):
        return max(1, int(round(v * ss)))

    cx, cy = L["face_c"]
    a, b = L["face_ab"]
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    bg0, bg1 = np.array(L["bg"][0], np.float32), np.array(L["bg"][1], np.float32)
    img = bg0 * (1 - yy[..., None]) + bg1 * yy[..., None]
    img *= 1 + 0.08 * _smooth_noise(rng, S, 6, 3) * 0.5 + 0.04 * _smooth_noise(rng, S, 40, 1)
    skin, hair = tuple(L["skin"]), tuple(L["hair"])
    # torso and neck
    cv2.ellipse(img, P((cx, cy + 1.5 * b)), (R(1.9 * a), R(0.75 * b)), 0, 0, 360, tuple(L["cloth"]), -1)
    neck = np.array(skin) * 0.85
    cv2.rectangle(
        img, P((cx - 0.45 * a, cy + 0.5 * b)), P((cx + 0.45 * a, cy + 1.1 * b)), tuple(neck.tolist()), -1
    )
    if L["long_hair"]:
        cv2.ellipse(img, P((cx, cy + 0.1 * b)), (R(1.2 * a), R(1.12 * b)), 0, 0, 360, hair, -1)
    for side in (-1, 1):
        cv2.ellipse(
            img, P((cx + side * 0.98 * a, cy - 0.05 * b)), (R(0.16 * a), R(0.27 * b)), 0, 0, 360, skin, -1
        )
    face_mask = np.zeros((S, S), np.float32)
    cv2.ellipse(face_mask, P((cx, cy)), (R(a), R(b)), 0, 0, 360, 1.0, -1)
    cv2.ellipse(img, P((cx, cy)), (R(a), R(b)), 0, 0, 360, skin, -1)
    # lighting and skin texture, only on skin (face mask blurred so the shading rolls off at the edge)
    soft = cv2.GaussianBlur(face_mask, (0, 0), 0.15 * a * ss)
    lx, ly = L["light"]
    shade = 1 + L["light_strength"] * ((xx * S / ss - cx) / a * lx + (yy * S / ss - cy) / b * ly)
    shade = shade * (0.8 + 0.2 * soft)
    tex = 1 + 0.05 * _smooth_noise(rng, S, 48)[..., 0] + 0.03 * _smooth_noise(rng, S, 12)[..., 0]
    img = np.where(face_mask[..., None] > 0, img * (shade * tex)[..., None], img)
    for _ in range(int(rng.integers(2, 7))):  # moles and freckles give the flow something to track
        r = rng.uniform(0.2, 0.6) * a
        ang = rng.uniform(0, 2 * np.pi)
        pt = (cx + r * np.cos(ang), cy + 0.9 * r * np.sin(ang) + 0.2 * b)
        cv2.circle(img, P(pt), R(rng.uniform(0.4, 0.9)), tuple((np.array(skin) * 0.6).tolist()), -1)
    # cheeks blush and nasolabial folds
    blush = np.zeros((S, S), np.float32)
    for s in ("r", "l"):
        cv2.ellipse(blush, P(L[f"cheek_{s}"]), (R(0.2 * a), R(0.13 * a)), 0, 0, 360, 1.0, -1)
    blush = cv2.GaussianBlur(blush, (0, 0), 0.08 * a * ss)[..., None]
    img = img * (1 - 0.12 * blush) + 0.12 * blush * np.array([0.85, 0.35, 0.35], np.float32)
    fold = tuple((np.array(skin) * 0.72).tolist())
    for s, side in (("r", -1), ("l", 1)):
        n, m = L[f"nostril_{s}"], L[f"mouth_{s}"]
        pts = np.array(
            [
                P((n[0] + side * 0.1 * a, n[1] - 0.05 * a)),
                P((m[0] + side * 0.12 * a, (n[1] + m[1]) / 2)),
                P((m[0] + side * 0.08 * a, m[1] + 0.05 * a)),
            ],
            np.int32,
        )
        cv2.polylines(img, [pts], False, fold, R(0.025 * a))
    # eyes: socket shade, sclera, iris, pupil, highlight, lids
    ew, eh = L["eye_wh"]
    for s in ("r", "l"):
        e = L[f"eye_{s}"]
        sock = np.zeros((S, S), np.float32)
        cv2.ellipse(sock, P((e[0], e[1] - 0.3 * eh)), (R(1.3 * ew), R(1.6 * eh)), 0, 0, 360, 1.0, -1)
        sock = cv2.GaussianBlur(sock, (0, 0), 0.5 * eh * ss)[..., None]
        img = img * (1 - 0.15 * sock)
        eye = np.zeros((S, S), np.float32)
        cv2.ellipse(eye, P(e), (R(ew), R(eh)), 0, 0, 360, 1.0, -1)
        iris = np.zeros((S, S), np.float32)
        cv2.circle(iris, P(e), R(0.9 * eh), 1.0, -1)
        pupil = np.zeros((S, S), np.float32)
        cv2.circle(pupil, P(e), R(0.4 * eh), 1.0, -1)
        sclera = np.array([0.93, 0.92, 0.88], np.float32)
        col = sclera * (1 - iris[..., None]) + np.array(L["iris"], np.float32) * iris[..., None]
        col = col * (1 - pupil[..., None]) + 0.03 * pupil[..., None]
        img = np.where(eye[..., None] > 0, col, img)
        cv2.circle(img, P((e[0] + 0.3 * eh, e[1] - 0.3 * eh)), R(0.15 * eh), (1.0, 1.0, 1.0), -1)
        cv2.ellipse(img, P(e), (R(ew), R(eh)), 0, 190, 350, (0.08, 0.05, 0.04), R(0.22 * eh))
        cv2.ellipse(
            img, P(e), (R(ew), R(eh)), 0, 20, 160, tuple((np.array(skin) * 0.55).tolist()), R(0.1 * eh)
        )
    # brows
    brow_col = tuple((np.array(hair) * 0.8).tolist())
    for s in ("r", "l"):
        pts = np.array([P(L[f"brow_inner_{s}"]), P(L[f"brow_mid_{s}"]), P(L[f"brow_outer_{s}"])], np.int32)
        cv2.polylines(img, [pts], False, brow_col, R(L["brow_thick"]))
    # nose: bridge shadow, nostrils, tip highlight
    nshade = tuple((np.array(skin) * 0.78).tolist())
    for side in (-1, 1):
        cv2.line(
            img,
            P((cx + side * 0.09 * a, L["eye_r"][1] + 0.2 * a)),
            P((cx + side * 0.11 * a, cy + 0.12 * b)),
            nshade,
            R(0.03 * a),
        )
    for s in ("r", "l"):
        cv2.ellipse(img, P(L[f"nostril_{s}"]), (R(0.06 * a), R(0.035 * a)), 0, 0, 360, (0.2, 0.1, 0.08), -1)
    cv2.ellipse(
        img,
        P((cx, L["nose_tip"][1] - 0.04 * a)),
        (R(0.08 * a), R(0.06 * a)),
        0,
        0,
        360,
        tuple((np.clip(np.array(skin) * 1.12, 0, 1)).tolist()),
        -1,
    )
    # mouth: upper and lower lip polygons and the dark line between them
    ml, mr, lh = L["mouth_l"], L["mouth_r"], L["lip_h"]
    my = ml[1]
    upper = np.array(
        [
            P(mr),
            P((cx - 0.5 * (cx - mr[0]), my - lh)),
            P((cx, my - 0.7 * lh)),
            P((cx + 0.5 * (ml[0] - cx), my - lh)),
            P(ml),
            P((cx, my + 0.1 * lh)),
        ],
        np.int32,
    )
    lower = np.array(
        [
            P(mr),
            P((cx, my + 0.1 * lh)),
            P(ml),
            P((cx + 0.4 * (ml[0] - cx), my + 1.2 * lh)),
            P((cx, my + 1.35 * lh)),
            P((cx - 0.4 * (cx - mr[0]), my + 1.2 * lh)),
        ],
        np.int32,
    )
    lip = tuple(L["lip"])
    cv2.fillPoly(img, [upper], tuple((np.array(lip) * 0.9).tolist()))
    cv2.fillPoly(img, [lower], lip)
    cv2.polylines(
        img,
        [np.array([P(mr), P((cx, my + 0.1 * lh)), P(ml)], np.int32)],
        False,
        (0.25, 0.08, 0.08),
        R(0.04 * a),
    )
    if L["beard"]:
        beard = np.zeros((S, S), np.float32)
        cv2.ellipse(beard, P((cx, cy + 0.55 * b)), (R(0.95 * a), R(0.45 * b)), 0, 0, 180, 1.0, -1)
        beard *= (0.5 + 0.5 * (_smooth_noise(rng, S, 90)[..., 0] > 0.3)).astype(np.float32)
        mouth_keep = np.zeros((S, S), np.float32)
        cv2.ellipse(
            mouth_keep, P((cx, my + 0.2 * lh)), (R(1.15 * (ml[0] - cx)), R(1.8 * lh)), 0, 0, 360, 1.0, -1
        )
        beard *= 1 - mouth_keep
        img = img * (1 - 0.6 * beard[..., None]) + 0.6 * beard[..., None] * np.array(hair, np.float32)
    # hair cap above a wavy hairline
    arc = cv2.ellipse2Poly(P((cx, cy - 0.02 * b)), (R(1.08 * a), R(1.07 * b)), 0, 180, 360, 5)
    hl_y = cy - L["hairline"] * b
    xs = np.linspace(cx + 1.08 * a, cx - 1.08 * a, 20)
    wave = 0.06 * a * np.sin(np.linspace(0, np.pi * rng.uniform(2, 5), 20) + rng.uniform(0, 6))
    line = [P((x, hl_y + w + 0.25 * b * ((x - cx) / a) ** 2)) for x, w in zip(xs, wave)]
    hair_mask = np.zeros((S, S), np.float32)
    cv2.fillPoly(hair_mask, [np.concatenate([arc, np.array(line, np.int32)])], 1.0)
    strands = cv2.GaussianBlur(
        rng.standard_normal((S, S)).astype(np.float32), (0, 0), sigmaX=0.3 * ss, sigmaY=3 * ss
    )
    hair_tex = np.array(hair, np.float32) * (1 + 0.25 * strands / (strands.std() + 1e-6))[..., None]
    img = np.where(hair_mask[..., None] > 0, hair_tex, img)
    img = np.clip(img, 0, 1).astype(np.float32)
    # Pre-filter to the output pixel footprint so that point sampling behaves like area sampling.
    return cv2.GaussianBlur(img, (0, 0), 0.5 * ss)


# --------------------------------------------------------------------------------------------------
# action-unit and blink fields


def _au_components(au: str, L: dict) -> list[tuple[tuple[float, float], tuple[float, float], float]]:
    """(centre, unit vector, sigma) Gaussian components of one AU, e.g. '12', 'R14', 'L12'."""
    side_code = au[0] if au[0] in "RL" else ""
    num = int(au.lstrip("RL"))
    a = L["face_ab"][0]
    sides = {"R": [("r", -1)], "L": [("l", 1)], "": [("r", -1), ("l", 1)]}[side_code]
    cx = L["face_c"][0]
    out = []
    for s, sg in sides:
        if num == 1:
            out.append((L[f"brow_inner_{s}"], (0.0, -1.0), 0.2 * a))
        elif num == 2:
            out.append((L[f"brow_outer_{s}"], (0.0, -1.0), 0.22 * a))
        elif num == 4:
            out.append((L[f"brow_inner_{s}"], (-sg * 0.5, 0.8), 0.2 * a))
        elif num == 5:
            out.append((L[f"upper_lid_{s}"], (0.0, -0.6), 0.16 * a))
        elif num == 6:
            out.append((L[f"cheek_{s}"], (0.0, -1.0), 0.24 * a))
        elif num == 7:
            out.append((L[f"lower_lid_{s}"], (0.0, -0.8), 0.16 * a))
        elif num == 9:
            out.append((L[f"nose_side_{s}"], (0.0, -1.0), 0.18 * a))
        elif num == 10:
            out.append((L[f"upper_lip_{s}"], (0.0, -1.0), 0.18 * a))
        elif num == 12:
            out.append((L[f"mouth_{s}"], (sg * 0.7, -0.7), 0.22 * a))
        elif num == 14:
            out.append((L[f"mouth_{s}"], (sg * 0.6, -0.2), 0.18 * a))
        elif num == 15:
            out.append((L[f"mouth_{s}"], (sg * 0.1, 1.0), 0.2 * a))
        elif num == 20:
            out.append((L[f"mouth_{s}"], (sg * 1.0, 0.15), 0.22 * a))
        elif num == 23:
            out.append((L[f"mouth_{s}"], (-sg * 0.8, 0.0), 0.18 * a))
        elif num in (17, 25, 26):
            pass
        else:
            raise DataError(f"SynthME has no model of AU{num}")
    ll = L["lower_lip"]
    if num == 17:
        out.append(((cx, L["chin"][1] - 0.1 * a), (0.0, -1.0), 0.24 * a))
    elif num == 25:
        out.append((ll, (0.0, 0.7), 0.18 * a))
    elif num == 26:
        out.append(((cx, (ll[1] + L["chin"][1]) / 2), (0.0, 1.0), 0.4 * a))
    # Widths are 1.2x the nominal ones so that macro amplitudes stay invertible under max_strain.
    return [(c, v, 1.2 * sig) for c, v, sig in out]


def _gauss_field(components, weights, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((2, size, size))
    for (c, v, sig), w in zip(components, weights):
        g = w * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * sig**2))
        out[0] += v[0] * g
        out[1] += v[1] * g
    return out


def field_strain(field: np.ndarray) -> float:
    gy0, gx0 = np.gradient(field[0])
    gy1, gx1 = np.gradient(field[1])
    return float(np.sqrt(gx0**2 + gy0**2 + gx1**2 + gy1**2).max())


def capped_scale(raw: np.ndarray, peak_px: float, strain_limit: float) -> tuple[float, float]:
    """The factor that scales the expression field `raw` (2, H, W) to a peak displacement of `peak_px`,
    reduced where needed so that its strain stays within `strain_limit` (the warp stays invertible),
    and the peak displacement it gives."""
    scale = peak_px / float(np.sqrt((raw**2).sum(0)).max())
    strain = field_strain(raw * scale)
    if strain > strain_limit:
        scale *= strain_limit / strain
    return scale, float(np.sqrt(((raw * scale) ** 2).sum(0)).max())


def expression_field(aus: list[tuple[str, float]], seed: int, size: int) -> np.ndarray:
    """Unnormalised (2, H, W) field of weighted AUs on the subject's canonical grid."""
    L = identity_landmarks(seed, size)
    comps, weights = [], []
    for au, w in aus:
        for comp in _au_components(au, L):
            comps.append(comp)
            weights.append(w)
    return _gauss_field(comps, weights, size)


def blink_field(seed: int, size: int) -> np.ndarray:
    """(2, H, W) field that closes both eyes when scaled by 1 (upper lid moved onto the lower lid)."""
    L = identity_landmarks(seed, size)
    ew, eh = L["eye_wh"]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((2, size, size))
    for s in ("r", "l"):
        ex, ey = L[f"eye_{s}"]
        g = np.exp(-0.5 * (((xx - ex) / (1.1 * ew)) ** 2 + ((yy - ey) / (1.6 * eh)) ** 2))
        out[1] += (ey + 0.8 * eh - yy) * g
    # Keep the map invertible: scale so the largest strain stays below 0.75.
    return out * min(1.0, 0.75 / max(field_strain(out), 1e-9))


# --------------------------------------------------------------------------------------------------
# rendering


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


# --------------------------------------------------------------------------------------------------
# sampling clips


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


# --------------------------------------------------------------------------------------------------
# writing the corpora


def _write_jpeg(path: Path, frame: torch.Tensor, quality: int, grayscale: bool) -> None:
    import cv2

    arr = (frame.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    arr = arr[..., 0] if grayscale else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), arr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"{path}: cv2.imwrite failed")


def _quirk_rows(n: int, rate: float, rng, min_count: int = 1) -> set[int]:
    if n == 0 or rate <= 0:
        return set()
    k = min(n, max(min_count, int(round(rate * n))))
    return set(rng.choice(n, size=k, replace=False).tolist())


def _save_xlsx(path: Path, sheets: list[tuple[str, list[list]]]) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    # Fixed document times so that the same seed writes byte-identical workbooks.
    wb.properties.created = wb.properties.modified = datetime.datetime(2020, 1, 1)
    for name, rows in sheets:
        ws = wb.create_sheet(name)
        for r in rows:
            ws.append(r)
    with atomicio.atomic_path(path) as tmp:
        wb.save(tmp)
        _fix_zip_times(tmp)


def _fix_zip_times(path: Path) -> None:
    """Rewrite an .xlsx (a zip) with fixed member times, so the same content gives the same bytes."""
    import zipfile

    with zipfile.ZipFile(path) as zin:
        members = [(info, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, data in members:
            if info.filename == "docProps/core.xml":  # openpyxl stamps the save time here
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2020-01-01T00:00:00Z", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(fixed, data)


def _write_truth(root: Path, specs: list[ClipSpec], extra: dict) -> None:
    """Ground truth beside the corpus: JSON (specs, landmarks, quirks) + NPZ (apex displacement fields)."""
    fields = {}
    for sp in specs:
        d = displacement(sp)
        fields[sp.clip_id] = d[sp.frame_numbers.index(sp.apex)].numpy().astype(np.float16)
    with atomicio.atomic_path(root / GROUND_TRUTH_NPZ) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **fields)
    atomicio.write_json(root / GROUND_TRUTH_JSON, {"clips": [dataclasses.asdict(s) for s in specs], **extra})


def _landmarks_table(subjects: dict[str, int], size: int) -> dict:
    out = {}
    for subj, seed in subjects.items():
        L = identity_landmarks(seed, size)
        out[subj] = {k: [float(L[k][0]), float(L[k][1])] for k in LANDMARK_NAMES}
    return out


def _duration_frames(rng, seconds: list, fps: float, minimum: int = 4) -> int:
    return max(minimum, int(round(rng.uniform(*seconds) * fps)))


def write_samm(cfg: SynthMEConfig, root: Path, progress=None) -> list[ClipSpec]:
    """SAMM layout: SAMM/<sss>/<sss>_<code>_<n>/<sss>_<frame, 4 or 5 digits>.jpg + MICRO_ONLY sheet."""
    rng = np.random.default_rng([cfg.seed, 1])
    specs, rows, subjects = [], [], {}
    ids = SAMM_SUBJECTS + list(range(38, 38 + max(0, cfg.samm_subjects - len(SAMM_SUBJECTS))))
    dealt = None
    if cfg.samm_emotion_counts is not None:  # its own stream: the per-subject draws below stay as they were
        dealt = _dealt_emotions(
            cfg.samm_emotion_counts, cfg.samm_subjects, VOCAB["samm"], np.random.default_rng([cfg.seed, 1, 7])
        )
    for k in range(cfg.samm_subjects):
        subj = f"{ids[k]:03d}"
        seed = int(np.random.default_rng([cfg.seed, 11, k]).integers(2**31))
        subjects[subj] = seed
        pad = 4 if k % 3 == 1 else 5  # zero padding differs between source videos
        emotions = dealt[k] if dealt else _emotion_list(cfg.micro_clips_per_subject, VOCAB["samm"], rng)
        per_code: dict[int, int] = {}
        for emo in emotions:
            code = int(rng.integers(1, 8))
            per_code[code] = per_code.get(code, 0) + 1
            filename = f"{subj}_{code}_{per_code[code]}"
            n = _duration_frames(rng, cfg.samm_duration_s, cfg.samm_fps)
            first = int(rng.integers(100, 9999 - n if pad == 4 else 60000))
            jitter = _ar1(rng, n, cfg.jitter_px)
            sp = make_clip_spec(cfg, rng, "samm", filename, subj, seed, emo, "micro", n, first, jitter, True)
            frames = render_clip(sp)
            folder = root / "SAMM" / subj / filename
            folder.mkdir(parents=True, exist_ok=True)
            for num, fr in zip(sp.frame_numbers, frames):
                _write_jpeg(folder / f"{subj}_{num:0{pad}d}.jpg", fr, cfg.jpeg_quality, True)
            specs.append(sp)
            rows.append(
                [
                    int(subj),
                    filename,
                    code,
                    sp.onset,
                    sp.apex,
                    sp.offset,
                    sp.offset - sp.onset + 1,
                    "Micro - 1/2",
                    _au_text(sp.aus, rng, "samm"),
                    VOCAB["samm"][emo],
                    OBJECTIVE[emo],
                    "SynthME synthetic clip",
                ]
            )
            if progress is not None:
                progress.update(1)
    quirks: dict[str, list[str]] = {}
    for i in _quirk_rows(len(rows), cfg.quirk_rate, rng):
        rows[i][4] = rows[i][5] + 3 if i % 2 == 0 else None  # apex outside onset..offset, or missing
        quirks.setdefault(rows[i][1], []).append("bad_apex")
    for i in _quirk_rows(len(rows), cfg.quirk_rate, rng):
        rows[i][9] = f" {rows[i][9].lower()}  " if i % 2 == 0 else rows[i][9].upper() + " "
        quirks.setdefault(rows[i][1], []).append("emotion_spaces_case")
    preamble = [
        ["SAMM Micro-Movement FACS Codes (SynthME synthetic stand-in, not SAMM data)"],
        # corpus bytes, kept as they are although the module moved to magplus_lib.data.synthme
        ["Generated by magplus_lib.synthme; layout follows the v2 spreadsheet."],
        ["Citation notes: cite the SAMM papers when using the real dataset."],
        [],
        ["Key:"],
        ["+ : AUs occurring together"],
        ["R / L : right / left side"],
        ["A-E : AU intensity"],
        ["/ : or"],
        ["( ) : uncertain"],
        [],
        ["Inducement codes 1-7"],
        [],
    ]
    header = [
        "Subject",
        "Filename",
        "Inducement Code",
        "Onset Frame",
        "Apex Frame",
        "Offset Frame",
        "Duration",
        "Micro",
        "Action Units",
        "Estimated Emotion",
        "Objective Classes",
        "Notes",
    ]
    _save_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", [("MICRO_ONLY", preamble + [header] + rows)])
    _write_truth(
        root,
        specs,
        {
            "format": "samm",
            "quirks": quirks,
            "fps": cfg.samm_fps,
            "landmarks": _landmarks_table(subjects, cfg.render_size),
        },
    )
    return specs


# Identity seeds of rendered-on-demand macro subjects: the corpora use streams 11 (SAMM), 22 (CAS(ME)^3)
# and 33 (macro); backbone training sets draw from 44 and the held-out evaluation subjects from 99, so
# no two sets share an identity.
TRAINING_STREAM = 44
HELDOUT_STREAM = 99


def macro_specs(
    cfg: SynthMEConfig, subjects: int, clips_per_subject: int, stream: int, grey_fraction: float = 0.0
) -> list[ClipSpec]:
    """Macro clips of `subjects` identities of seed stream `stream` (rendered on demand, never written).

    Emotions, amplitudes and durations are drawn as for the macro corpus; a share `grey_fraction` of
    the subjects is rendered in SAMM's grey. Subject k is the same identity for any `subjects` > k."""
    emotions = [e for e in EMOTIONS if e in cfg.macro_clips_per_subject]
    if not 1 <= clips_per_subject <= len(emotions):
        raise ValueError(f"macro_specs: clips_per_subject must be 1-{len(emotions)}, got {clips_per_subject}")
    if not 0.0 <= grey_fraction <= 1.0:
        raise ValueError(f"macro_specs: grey_fraction must be in [0, 1], got {grey_fraction}")
    specs = []
    for k in range(subjects):
        rng = np.random.default_rng([cfg.seed, stream, k, 1])
        subject = f"s{stream}_{k:04d}"
        seed = int(np.random.default_rng([cfg.seed, stream, k]).integers(2**31))
        grey = bool(rng.random() < grey_fraction)
        for j, emo in enumerate(rng.choice(emotions, clips_per_subject, replace=False).tolist()):
            n = _duration_frames(rng, cfg.macro_duration_s, cfg.casme3_fps)
            jitter = _ar1(rng, n, cfg.jitter_px)
            specs.append(
                make_clip_spec(
                    cfg, rng, "macro", f"{subject}_{j}", subject, seed, emo, "macro", n, 1, jitter, grey
                )
            )
    return specs


def heldout_macro_specs(cfg: SynthMEConfig, subjects: int, clips_per_subject: int) -> list[ClipSpec]:
    """Colour macro clips of identities that no corpus or training set contains, for evaluation
    (`dataclasses.replace(spec, grayscale=True)` renders the same clip in SAMM's grey)."""
    return macro_specs(cfg, subjects, clips_per_subject, HELDOUT_STREAM)


def render_thinned(spec: ClipSpec, size: int, max_frames: int | None) -> tuple[torch.Tensor, int]:
    """(frames onset..offset thinned to `max_frames` with onset and apex kept, at `size` px; the apex's
    index among them)."""
    n = len(spec.frame_numbers)
    apex = spec.frame_numbers.index(spec.apex)
    positions = list(range(n))
    if max_frames is not None and n > max_frames:
        positions = sorted(set(np.linspace(0, n - 1, max_frames).round().astype(int).tolist()) | {0, apex})
    frames = render_clip(spec, positions=positions)
    small = F.interpolate(frames, size=(size, size), mode="area").clamp(0, 1)
    return small, positions.index(apex)


def write_casme3(cfg: SynthMEConfig, root: Path, corpus: str = "casme3", progress=None) -> list[ClipSpec]:
    """CAS(ME)^3 Part A layout: part_A/spNO.<k>/<letter>/color/<n>.jpg (whole videos) + label sheet."""
    macro = corpus == "macro"
    rng = np.random.default_rng([cfg.seed, 3 if macro else 2])
    n_subj = cfg.macro_subjects if macro else cfg.casme3_subjects
    counts = cfg.macro_clips_per_subject if macro else cfg.micro_clips_per_subject
    durations = cfg.macro_duration_s if macro else cfg.casme3_duration_s
    numbers = sorted(rng.choice(np.arange(1, 218), size=min(n_subj, 217), replace=False).tolist())
    numbers += list(range(218, 218 + n_subj - len(numbers)))
    specs, rows, subjects = [], [], {}
    dealt = None
    if not macro and cfg.casme3_emotion_counts is not None:  # own stream, as in write_samm
        dealt = _dealt_emotions(
            cfg.casme3_emotion_counts, n_subj, VOCAB["casme3"], np.random.default_rng([cfg.seed, 2, 7])
        )
    for k in range(n_subj):
        subj = f"spNO.{numbers[k]}"
        seed = int(np.random.default_rng([cfg.seed, 33 if macro else 22, k]).integers(2**31))
        subjects[subj] = seed
        emotions = list(dealt[k]) if dealt else _emotion_list(counts, VOCAB["casme3"], rng)
        videos: list[list[str]] = []
        while emotions:
            m = int(rng.integers(1, cfg.mes_per_video + 1))
            videos.append(emotions[:m])
            emotions = emotions[m:]
        for v, emos in enumerate(videos):
            letter = "abcdefghijklm"[v % 13]
            folder = root / "part_A" / subj / letter / "color"
            folder.mkdir(parents=True, exist_ok=True)
            # A whole video: neutral gaps around each expression, continuous head jitter.
            segs, cur = [], 1 + int(rng.integers(*cfg.gap_frames))
            for emo in emos:
                n = _duration_frames(rng, durations, cfg.casme3_fps)
                segs.append((emo, cur, n))
                cur += n + int(rng.integers(*cfg.gap_frames))
            total = cur
            jitter = _ar1(rng, total, cfg.jitter_px)
            video_seed = int(rng.integers(2**31))
            covered = set()
            for emo, start, n in segs:
                cid = f"{subj}_{letter}_{start}"
                sp = make_clip_spec(
                    cfg,
                    rng,
                    corpus,
                    cid,
                    subj,
                    seed,
                    emo,
                    "macro" if macro else "micro",
                    n,
                    start,
                    jitter[start - 1 : start - 1 + n],
                    False,
                )
                sp.noise_seed = video_seed
                for num, fr in zip(sp.frame_numbers, render_clip(sp)):
                    _write_jpeg(folder / f"{num}.jpg", fr, cfg.jpeg_quality, False)
                covered.update(sp.frame_numbers)
                specs.append(sp)
                rows.append(
                    [
                        subj,
                        letter,
                        sp.onset,
                        sp.apex,
                        sp.offset,
                        _au_text(sp.aus, rng, "casme3"),
                        ROMAN[OBJECTIVE[emo] - 1],
                        VOCAB["casme3"][emo],
                    ]
                )
                if progress is not None:
                    progress.update(1)
            rest = [t for t in range(1, total + 1) if t not in covered]
            if rest:  # neutral frames: jitter, flicker and noise only
                canvas = neutral_canvas(seed, cfg.render_size, cfg.supersample)
                zeros = np.zeros(len(rest))
                fr = _render_sequence(
                    canvas,
                    cfg.supersample,
                    cfg.render_size,
                    jitter[np.array(rest) - 1],
                    zeros,
                    zeros,
                    np.zeros((4, cfg.render_size, cfg.render_size)),
                )
                gains = 1 + cfg.flicker * _ar1(rng, len(rest), 1.0, 0.7, 1)[:, 0]
                fr = _photometric(fr, gains, False, cfg.noise_std, video_seed, rest)
                for num, f in zip(rest, fr):
                    _write_jpeg(folder / f"{num}.jpg", f, cfg.jpeg_quality, False)
    quirks: dict[str, list[str]] = {}

    def cid(r):
        return f"{r[0]}_{r[1].lower()}_{r[2]}"

    rate = 0.0 if macro else cfg.quirk_rate  # the macro corpus is our own training set: no quirks
    for i in _quirk_rows(len(rows), rate, rng):
        rows[i][3] = rows[i][4] + 2 if i % 2 == 0 else rows[i][2] - 1  # apex outside the interval
        quirks.setdefault(cid(rows[i]), []).append("bad_apex")
    for i in _quirk_rows(len(rows), rate, rng):
        rows[i][7] = rows[i][7].capitalize() if i % 2 == 0 else f" {rows[i][7]} "
        quirks.setdefault(cid(rows[i]), []).append("emotion_spaces_case")
    for i in _quirk_rows(len(rows), 0.0 if rate <= 0 else 1e-9, rng):
        rows[i][1] = rows[i][1].upper()  # the one uppercase video letter of the real sheet
        quirks.setdefault(cid(rows[i]), []).append("uppercase_letter")
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
    _save_xlsx(
        root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        [("label", [header] + rows), ("Sheet1", []), ("Sheet3", [])],
    )
    _write_truth(
        root,
        specs,
        {
            "format": corpus,
            "quirks": quirks,
            "fps": cfg.casme3_fps,
            "landmarks": _landmarks_table(subjects, cfg.render_size),
        },
    )
    return specs


# --------------------------------------------------------------------------------------------------
# generic motion pairs


@dataclasses.dataclass
class GenericFilter:
    """FlowMag's pair filter (reference/flowmag.md); flow measured by Farneback at `filter_size`."""

    mse_min: float = 10.0  # 0-255 scale
    p999_max: float = 20.0
    p80_max: float = 2.0
    p0001_max: float = 0.1
    filter_size: int | None = 512
    max_gap: int = 3
    pairs_per_video: int = 50
    out_size: int = 512

    def stats(self, img0_u8: np.ndarray, img1_u8: np.ndarray) -> dict:
        import cv2

        from magplus_lib.magnifier.flow import farneback_flow

        a, b = img0_u8, img1_u8
        if self.filter_size:
            a = cv2.resize(a, (self.filter_size, self.filter_size), interpolation=cv2.INTER_AREA)
            b = cv2.resize(b, (self.filter_size, self.filter_size), interpolation=cv2.INTER_AREA)
        mag = np.linalg.norm(farneback_flow(a, b), axis=-1)
        p0001, p80, p999 = np.percentile(mag, [0.01, 80, 99.9])
        mse = float(((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean())
        return {"mse": mse, "flow_p0001": float(p0001), "flow_p80": float(p80), "flow_p999": float(p999)}

    def keep(self, st: dict) -> bool:
        return (
            st["mse"] > self.mse_min
            and st["flow_p999"] <= self.p999_max
            and st["flow_p80"] <= self.p80_max
            and st["flow_p0001"] <= self.p0001_max
        )


def _texture_canvas(rng, S: int) -> np.ndarray:
    """A natural-looking random texture: coloured multi-octave noise, shapes, lines, soft shading."""
    import cv2

    img = np.zeros((S, S, 3), np.float32)
    for cells, w in ((3, 0.5), (8, 0.3), (24, 0.15), (64, 0.08)):
        img += w * _smooth_noise(rng, S, cells, 3)
    img = 0.5 + 0.12 * img
    for _ in range(int(rng.integers(5, 25))):
        col = tuple(rng.uniform(0, 1, 3).tolist())
        kind = rng.integers(3)
        c = tuple(rng.integers(0, S, 2).tolist())
        if kind == 0:
            cv2.ellipse(
                img,
                c,
                tuple(rng.integers(2, S // 4, 2).tolist()),
                float(rng.uniform(0, 180)),
                0,
                360,
                col,
                -1,
            )
        elif kind == 1:
            cv2.rectangle(img, c, tuple(rng.integers(0, S, 2).tolist()), col, -1)
        else:
            cv2.line(
                img, c, tuple(rng.integers(0, S, 2).tolist()), col, int(rng.integers(1, max(2, S // 40)))
            )
    img *= 1 + 0.1 * _smooth_noise(rng, S, 20, 1)
    return cv2.GaussianBlur(np.clip(img, 0, 1), (0, 0), 1.0)


def random_motion(rng, size: int, magnitude: float) -> np.ndarray:
    """Smooth local motion (a few moving blobs, sometimes a slight global drift), peak = magnitude.

    Mostly local so that part of the frame stays still, as FlowMag's filter requires (0.01st
    percentile of |flow| <= 0.1 px).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size - 0.5
    f = np.zeros((2, size, size))
    for _ in range(int(rng.integers(1, 4))):
        c = rng.uniform(-0.3, 0.3, 2)
        sig = rng.uniform(0.08, 0.2)
        g = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * sig**2))
        A = rng.standard_normal((2, 2)) * 0.3
        v = rng.standard_normal(2)
        f[0] += (v[0] + A[0, 0] * (xx - c[0]) / sig + A[0, 1] * (yy - c[1]) / sig) * g
        f[1] += (v[1] + A[1, 0] * (xx - c[0]) / sig + A[1, 1] * (yy - c[1]) / sig) * g
    f *= magnitude / (np.sqrt((f**2).sum(0)).max() + 1e-9)
    if rng.random() < 0.3:
        f += rng.standard_normal((2, 1, 1)) * 0.03
    strain = field_strain(f)
    return f * min(1.0, 0.6 / max(strain, 1e-9))


def write_generic(
    cfg: SynthMEConfig,
    root: Path,
    filt: GenericFilter | None = None,
    progress=None,
    motion_px: list | None = None,
    stream: int = 4,
) -> int:
    """Synthetic generic-motion pretraining pairs + pairs.csv (the kept-pair index); returns pairs kept.

    `motion_px` (default cfg.generic_motion_px) is the log-uniform range of the peak motion; `stream`
    picks the random stream, so a second set (the inverse stage's) has its own textures.
    """
    import cv2
    import pandas as pd

    filt = filt or GenericFilter(filter_size=None)
    rng = np.random.default_rng([cfg.seed, stream])
    size, ss = cfg.generic_size, 2
    (root / "pairs").mkdir(parents=True, exist_ok=True)
    rows, tried = [], 0
    lo, hi = cfg.generic_motion_px if motion_px is None else motion_px
    while len(rows) < cfg.generic_pairs and tried < 10 * cfg.generic_pairs + 20:
        tried += 1
        canvas = cv2.GaussianBlur(_texture_canvas(rng, size * ss), (0, 0), 0.5 * ss)
        mag = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # log-uniform: many small, some large
        motion = random_motion(rng, size, mag)
        fields = np.concatenate([motion, np.zeros_like(motion)])
        fr = _render_sequence(canvas, ss, size, np.zeros((2, 2)), [0.0, 1.0], [0.0, 0.0], fields)
        fr = (fr + cfg.noise_std * torch.from_numpy(rng.standard_normal(fr.shape).astype(np.float32))).clamp(
            0, 1
        )
        u8 = [(f.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8) for f in fr]
        st = filt.stats(u8[0], u8[1])
        if not filt.keep(st):
            continue
        i = len(rows)
        names = [f"pairs/{i:06d}_0.jpg", f"pairs/{i:06d}_1.jpg"]
        for name, f in zip(names, fr):
            _write_jpeg(root / name, f, cfg.jpeg_quality, False)
        rows.append(
            {
                "pair_id": i,
                "frame0": names[0],
                "frame1": names[1],
                "source": "synthetic",
                "gt_max_px": float(np.sqrt((motion**2).sum(0)).max()),
                **st,
            }
        )
        if progress is not None:
            progress.update(1)
    with atomicio.atomic_path(root / "pairs.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return len(rows)


def index_generic_videos(
    source: str | Path, out_root: str | Path, filt: GenericFilter, n_pairs: int, seed: int = 0
) -> int:
    """Sample frame pairs from a folder of videos or frame folders, keep those passing the filter.

    Kept frames are stored squashed to `out_size` under out_root/pairs with the index pairs.csv.
    """
    import cv2
    import pandas as pd
    from tqdm.auto import tqdm

    source, out_root = Path(source), Path(out_root)
    if not source.is_dir():
        raise DataError(f"{source}: generic video folder does not exist")
    vids = sorted(
        p for p in source.rglob("*") if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm")
    )
    dirs = sorted({p.parent for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")})
    if not vids and not dirs:
        raise DataError(f"{source}: no videos (.mp4/.avi/.mov/.mkv/.webm) or frame folders found")
    rng = np.random.default_rng([seed, 9])
    (out_root / "pairs").mkdir(parents=True, exist_ok=True)
    rows = []

    def read_video(p):
        cap = cv2.VideoCapture(str(p))
        frames = []
        ok, f = cap.read()
        while ok:
            frames.append(f)
            ok, f = cap.read()
        cap.release()
        return frames

    sources = [("video", v) for v in vids] + [("frames", d) for d in dirs]
    for kind, src in tqdm(sources, desc="generic pairs"):
        if len(rows) >= n_pairs:
            break
        if kind == "video":
            frames = read_video(src)
        else:
            frames = [
                cv2.imread(str(p))
                for p in sorted(src.iterdir())
                if p.suffix.lower() in (".jpg", ".jpeg", ".png")
            ]
        frames = [f for f in frames if f is not None]
        if len(frames) < 2:
            continue
        for _ in range(filt.pairs_per_video):
            gap = int(rng.integers(1, filt.max_gap + 1))
            if len(frames) <= gap:
                break
            t = int(rng.integers(0, len(frames) - gap))
            a, b = (
                cv2.resize(frames[i], (filt.out_size, filt.out_size), interpolation=cv2.INTER_AREA)
                for i in (t, t + gap)
            )
            st = filt.stats(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY))
            if not filt.keep(st):
                continue
            i = len(rows)
            names = [f"pairs/{i:06d}_0.jpg", f"pairs/{i:06d}_1.jpg"]
            for name, img in zip(names, (a, b)):
                cv2.imwrite(str(out_root / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            rows.append(
                {"pair_id": i, "frame0": names[0], "frame1": names[1], "source": f"{src}:{t}+{gap}", **st}
            )
            if len(rows) >= n_pairs:
                break
    if not rows:
        raise DataError(f"{source}: no frame pair passed the flow filter {filt}")
    if len(rows) < n_pairs:
        log.warning(
            "%s: only %d of the %d requested generic pairs passed the flow filter (%d sources, %d pairs "
            "tried per source); pretraining will see fewer distinct pairs",
            source,
            len(rows),
            n_pairs,
            len(sources),
            filt.pairs_per_video,
        )
    with atomicio.atomic_path(out_root / "pairs.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return len(rows)


def generic_pairs_stamp(source: str | Path, filt: GenericFilter, n_pairs: int, seed: int) -> dict:
    """What a generic-pair set is built from: the source folder's files (names, sizes, times), the
    filter, the count and the seed. A set whose stamp differs is stale."""
    source = Path(source).resolve()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []
    digest = hashlib.sha256()
    for p in files:
        st = p.stat()
        digest.update(f"{p.relative_to(source)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return {
        "source": str(source),
        "files": len(files),
        "files_sha256": digest.hexdigest(),
        "filter": dataclasses.asdict(filt),
        "n_pairs": int(n_pairs),
        "seed": int(seed),
    }


def ensure_generic_pairs(
    source: str | Path, out_root: str | Path, filt: GenericFilter, n_pairs: int, seed: int = 0
) -> bool:
    """Sample the generic pairs unless out_root already holds the set this source, filter, count and
    seed give (its pairs.stamp.json); a stale set is removed first. Returns whether it sampled."""
    out_root = Path(out_root)
    stamp = generic_pairs_stamp(source, filt, n_pairs, seed)
    path = out_root / "pairs.stamp.json"
    if (out_root / "pairs.csv").is_file() and path.is_file():
        try:
            if json.loads(path.read_text()) == json.loads(json.dumps(stamp)):
                return False
        except json.JSONDecodeError:
            pass
    if out_root.exists():
        log.warning("%s: generic pairs from another source or setting; sampling them again", out_root)
        (out_root / "pairs.csv").unlink(missing_ok=True)
        shutil.rmtree(out_root / "pairs", ignore_errors=True)
    index_generic_videos(source, out_root, filt, n_pairs, seed)
    atomicio.write_json(path, stamp)
    return True


# --------------------------------------------------------------------------------------------------
# the whole corpus


def config_hash(cfg: SynthMEConfig, generic_filter: GenericFilter | None = None) -> str:
    ident = [dataclasses.asdict(cfg), dataclasses.asdict(generic_filter) if generic_filter else None]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


CORPORA = {"samm": "SAMM", "casme3": "CASME3", "macro": "macro", "generic": "generic"}


def corpora(cfg: SynthMEConfig | dict) -> dict[str, str]:
    """{corpus: folder} that `generate_corpus` writes for this config: CORPORA, plus generic_inverse/
    when the config asks for the inverse stage's own pairs."""
    extra = cfg.get("generic_inverse_motion_px") if isinstance(cfg, dict) else cfg.generic_inverse_motion_px
    return {**CORPORA, "generic_inverse": "generic_inverse"} if extra else dict(CORPORA)


def generate_corpus(
    cfg: SynthMEConfig | dict,
    out_root: str | Path,
    force: bool = False,
    generic_filter: GenericFilter | None = None,
) -> dict:
    """Write SAMM/, CASME3/, macro/ and generic/ (and generic_inverse/ when configured) under out_root;
    skipped when the stamp matches the config.

    Each corpus is written into a temporary folder and renamed into place, so an interrupted run never
    leaves a corpus that looks complete. Returns {corpus: {"clips" or "pairs", "seconds"}} and the stamp.
    """

    if isinstance(cfg, dict):
        from magplus_lib.harness.profiles import from_dict

        cfg = from_dict(SynthMEConfig, cfg, "synthme")
    out_root = Path(out_root)
    stamp_path = out_root / STAMP
    h = config_hash(cfg, generic_filter)
    if not force and stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("config_hash") == h and all((out_root / d).is_dir() for d in corpora(cfg).values()):
            log.info("SynthME corpus in %s is up to date (config %s)", out_root, h)
            return stamp
    out_root.mkdir(parents=True, exist_ok=True)
    n_micro = sum(int(v) for v in cfg.micro_clips_per_subject.values())
    n_casme = sum(int(v) for k, v in cfg.micro_clips_per_subject.items() if k in VOCAB["casme3"])
    n_macro = sum(int(v) for k, v in cfg.macro_clips_per_subject.items() if k in VOCAB["casme3"])
    samm_total = cfg.samm_subjects * n_micro
    if cfg.samm_emotion_counts is not None:
        samm_total = sum(int(v) for v in cfg.samm_emotion_counts.values())
    casme_total = cfg.casme3_subjects * n_casme
    if cfg.casme3_emotion_counts is not None:
        casme_total = sum(int(v) for k, v in cfg.casme3_emotion_counts.items() if k in VOCAB["casme3"])
    total = samm_total + casme_total + cfg.macro_subjects * n_macro
    report = {}
    threads = torch.get_num_threads()
    # Small per-frame tensor work: one thread is several times faster than two on a shared machine.
    torch.set_num_threads(1)
    try:
        _generate_all(cfg, out_root, generic_filter, report, total)
    finally:
        torch.set_num_threads(threads)
    stamp = {"config_hash": h, "config": dataclasses.asdict(cfg), "corpora": report}
    atomicio.write_json(stamp_path, stamp)
    return stamp


def _generate_all(cfg, out_root, generic_filter, report, total) -> None:
    from tqdm.auto import tqdm

    folders = corpora(cfg)
    n_pair_sets = sum(key.startswith("generic") for key in folders)
    with tqdm(total=total + cfg.generic_pairs * n_pair_sets, desc="SynthME") as bar:
        for key, folder in folders.items():
            t0 = time.perf_counter()
            tmp = out_root / f".{folder}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if key == "samm":
                n = {"clips": len(write_samm(cfg, tmp, bar))}
            elif key == "generic":
                n = {"pairs": write_generic(cfg, tmp, generic_filter, bar)}
            elif key == "generic_inverse":
                motion = cfg.generic_inverse_motion_px
                n = {"pairs": write_generic(cfg, tmp, generic_filter, bar, motion_px=motion, stream=5)}
            else:
                n = {"clips": len(write_casme3(cfg, tmp, key, bar))}
            final = out_root / folder
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            report[key] = {**n, "seconds": round(time.perf_counter() - t0, 2)}


# --------------------------------------------------------------------------------------------------
# reading the ground truth


@dataclasses.dataclass
class ClipTruth:
    spec: ClipSpec
    apex_field: np.ndarray  # (2, H, W) displacement onset -> apex as stored (float16 -> float32)

    def displacement(self, alpha: float = 1.0) -> torch.Tensor:
        """(T, 2, H, W) displacement of every frame onset..offset from the onset frame (flow convention)."""
        return displacement(self.spec, alpha)

    def render(self, alpha: float = 1.0, photometric: bool = True) -> torch.Tensor:
        return render_clip(self.spec, alpha, photometric)


def load_ground_truth(root: str | Path) -> dict[str, ClipTruth]:
    """{clip_id: ClipTruth} for a SynthME corpus root (the folder given to the loader, e.g. data/SAMM)."""
    root = Path(root)
    jpath, npath = root / GROUND_TRUTH_JSON, root / GROUND_TRUTH_NPZ
    if not jpath.is_file() or not npath.is_file():
        raise DataError(
            f"{root}: no SynthME ground truth ({GROUND_TRUTH_JSON} + {GROUND_TRUTH_NPZ}); "
            "real datasets have none"
        )
    meta = json.loads(jpath.read_text())
    with np.load(npath) as z:
        return {
            c["clip_id"]: ClipTruth(ClipSpec(**c), z[c["clip_id"]].astype(np.float32)) for c in meta["clips"]
        }


def ground_truth_meta(root: str | Path) -> dict:
    """The ground-truth JSON without the clip specs: format, quirks, fps, landmarks."""
    meta = json.loads((Path(root) / GROUND_TRUTH_JSON).read_text())
    meta.pop("clips", None)
    return meta


def load_macro_clips(root: str | Path) -> list[Clip]:
    """The macro-expression corpus (CAS(ME)^3 layout) for training the face-animation backbones."""
    from magplus_lib.data.casme3 import load_casme3

    clips = load_casme3(root)
    for c in clips:
        c.dataset = "macro"
    return clips


def corpus_is_grey(root: str | Path) -> bool:
    """Whether a SynthME corpus at `root` is rendered in grey (SAMM's format): a model tuned on it is
    measured on grey renders."""
    return any(t.spec.grayscale for t in load_ground_truth(root).values())
