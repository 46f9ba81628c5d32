"""The motion of a SynthME face: action units as smooth landmark-anchored displacement fields,
blinks, and the strain bound that keeps a field invertible.
"""

from __future__ import annotations

import numpy as np

from magplus_lib.data.clips import DataError
from magplus_lib.data.synthme.identity import identity_landmarks


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
