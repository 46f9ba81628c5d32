"""SynthME identities: a subject's face geometry, landmarks and texture, and the supersampled,
pre-filtered neutral canvas it is rendered from.
"""

from __future__ import annotations

import functools

import numpy as np


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
