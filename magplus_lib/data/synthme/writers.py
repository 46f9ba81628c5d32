"""Writing SynthME in the real datasets' on-disk formats (SAMM, CAS(ME)^3 Part A), the macro corpus
and the ground truth, and rendering macro subjects on demand.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from magplus_lib.data.synthme.config import (
    EMOTIONS,
    GROUND_TRUTH_JSON,
    GROUND_TRUTH_NPZ,
    OBJECTIVE,
    ROMAN,
    SAMM_SUBJECTS,
    VOCAB,
    SynthMEConfig,
)
from magplus_lib.data.synthme.identity import LANDMARK_NAMES, identity_landmarks, neutral_canvas
from magplus_lib.data.synthme.render import (
    ClipSpec,
    _photometric,
    _render_sequence,
    displacement,
    render_clip,
)
from magplus_lib.data.synthme.sampling import _ar1, _au_text, _dealt_emotions, _emotion_list, make_clip_spec
from magplus_lib.harness import atomicio


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
