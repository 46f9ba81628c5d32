"""Loaders: SynthME output is parsed back exactly; hand-written spreadsheets exercise real-data quirks."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import openpyxl
import pytest
import torch
from synthme_tiny import tiny_corpus

from magplus_lib.data import faces, synthme
from magplus_lib.data.clips import LABELS3, DataError, load_frames, summary
from magplus_lib.data.datasets import load_clips
from magplus_lib.data.samm import LABEL3 as SAMM_LABEL3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory, "loaders")


def _xlsx(path, sheets):
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets:
        ws = wb.create_sheet(name)
        for r in rows:
            ws.append(r)
    wb.save(path)


def _frames(folder, names, value=100, gray=True):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        img = np.full((8, 8) if gray else (8, 8, 3), value + k, np.uint8)
        cv2.imwrite(str(folder / name), img)


# ---------------------------------------------------------------- SynthME round trip


@pytest.mark.parametrize("name,folder", [("samm", "SAMM"), ("casme3", "CASME3")])
def test_loaders_recover_every_synthme_clip(corpus, name, folder):
    root, _ = corpus
    truth = synthme.load_ground_truth(root / folder)
    meta = synthme.ground_truth_meta(root / folder)
    clips = load_clips(name, root / folder)
    assert {c.clip_id for c in clips} == set(truth)
    vocab = synthme.VOCAB[name]
    for c in clips:
        spec = truth[c.clip_id].spec
        assert (c.onset, c.offset) == (spec.onset, spec.offset)
        assert c.frame_numbers == spec.frame_numbers and len(c.frame_paths) == len(spec.frame_numbers)
        assert c.emotion == vocab[spec.emotion].lower()
        expected3 = SAMM_LABEL3[spec.emotion]
        assert c.label3 == expected3
        if "bad_apex" in meta["quirks"].get(c.clip_id, []):
            assert c.apex == (c.onset + c.offset) // 2
        else:
            assert c.apex == spec.apex
        assert c.subject == spec.subject and c.fps == meta["fps"]
    # every 3-class label and the excluded class are present, and the quirks were reported
    assert {c.label3 for c in clips} == set(LABELS3) | {None}
    assert any("apex" in k for k in clips.issues)
    table = summary(clips)
    assert int(table["samples"].iloc[0]) == sum(c.label3 is not None for c in clips)


def test_synthme_frame_formats(corpus):
    root, cfg = corpus
    samm = load_clips("samm", root / "SAMM")
    pads = {len(p.stem.split("_")[-1]) for c in samm for p in c.frame_paths}
    assert pads == {4, 5}  # both zero paddings occur
    raw = cv2.imread(str(samm[0].frame_paths[0]), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 2 and raw.shape == (cfg.render_size, cfg.render_size)  # SAMM is grayscale
    cas = load_clips("casme3", root / "CASME3")
    raw = cv2.imread(str(cas[0].frame_paths[0]), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 3  # CAS(ME)^3 is colour
    assert all(p.stem.isdigit() and not p.stem.startswith("0") for c in cas for p in c.frame_paths)
    x = load_frames(samm[0])
    assert torch.equal(x[:, 0], x[:, 1]) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    subjects = {c.subject for c in cas}
    letters = {(c.subject, c.frame_paths[0].parent.parent.name) for c in cas}
    assert len(letters) < len(cas) or len(subjects) == len(cas)  # videos hold several expressions


# ---------------------------------------------------------------- SAMM fixtures


SAMM_HEADER = [
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


def _samm_fixture(tmp_path, preamble=13, rows=None, header=SAMM_HEADER):
    root = tmp_path / "samm"
    _frames(root / "SAMM" / "006" / "006_1_2", [f"006_{n:05d}.jpg" for n in range(5562, 5568)])
    _frames(root / "SAMM" / "006" / "006_1_3", [f"006_{n:04d}.jpg" for n in range(217, 223)])
    _frames(root / "SAMM" / "011" / "011_2_1", [f"011_{n}.jpg" for n in range(40, 46)])
    rows = rows or [
        [6, "006_1_2", 1, 5562, 5564, 5567, 6, "Micro - 1/2", "4+7", "Anger", 3, ""],
        [6, "006_1_3", 1, 217, None, 222, 6, "Micro - 1/2", "A14C", " happiness  ", 1, ""],  # apex missing
        [
            11,
            "011_2_1",
            2,
            40,
            99,
            30,
            6,
            "Micro - 1/2",
            "(R6 or R12)+R15",
            "OTHER",
            7,
            "",
        ],  # bad apex+offset
        [11, "011_2_9", 2, 1, 2, 3, 3, "Micro - 1/2", "1+2", "Surprise", 2, ""],  # folder missing
    ]
    pre = [["SAMM title"]] + [[f"note {i}"] if i % 3 else [] for i in range(1, preamble)]
    _xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", [("MICRO_ONLY", pre + [header] + rows)])
    return root


@pytest.mark.parametrize("preamble", [13, 0])
def test_samm_quirks(tmp_path, caplog, preamble):
    root = _samm_fixture(tmp_path, preamble=preamble)
    with caplog.at_level(logging.WARNING):
        clips = load_clips("samm", root)
    by_id = {c.clip_id: c for c in clips}
    assert set(by_id) == {"006_1_2", "006_1_3", "011_2_1"}
    a, b, c = by_id["006_1_2"], by_id["006_1_3"], by_id["011_2_1"]
    assert (a.onset, a.apex, a.offset, a.label3, a.subject) == (5562, 5564, 5567, "Negative", "006")
    assert a.frame_numbers == list(range(5562, 5568)) and a.frame_index(5564) == 2
    assert (b.emotion, b.label3, b.apex, b.frame_numbers[0]) == ("happiness", "Positive", 219, 217)
    # offset before onset: the folder's last frame; apex outside: midpoint; Other: excluded
    assert (c.offset, c.apex, c.label3, c.emotion) == (45, 42, None, "other")
    assert c.action_units == "(R6 or R12)+R15"
    text = caplog.text
    assert "apex missing or outside" in text and "clip folder missing" in text and "offset" in text


def test_samm_missing_column_and_missing_sheet_are_clear_errors(tmp_path):
    root = _samm_fixture(tmp_path, header=[h if h != "Onset Frame" else "Start" for h in SAMM_HEADER])
    with pytest.raises(DataError, match=r"SAMM_Micro_FACS_Codes_v2.xlsx.*onset"):
        load_clips("samm", root)
    (root / "SAMM_Micro_FACS_Codes_v2.xlsx").unlink()
    with pytest.raises(DataError, match="no SAMM spreadsheet"):
        load_clips("samm", root)
    with pytest.raises(DataError, match="does not exist"):
        load_clips("samm", tmp_path / "nowhere")
    with pytest.raises(DataError, match="unknown dataset 'smic'"):
        load_clips("smic", root)


# ---------------------------------------------------------------- CAS(ME)^3 fixtures

CAS_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]


def test_casme3_quirks(tmp_path, caplog):
    root = tmp_path / "cas"
    _frames(root / "part_A" / "spNO.1" / "a" / "color", [f"{n}.jpg" for n in range(1, 21)], gray=False)
    _frames(root / "part_A" / "spNO.1" / "j" / "color", [f"{n}.jpg" for n in range(1, 9)], gray=False)
    _frames(
        root / "part_A" / "spNO.7" / "b" / "color", [f"{n}.jpg" for n in range(1, 6) if n != 3], gray=False
    )
    rows = [
        ["spNO.1", "a", 2, 4, 6, "R12", "I", "happy"],
        ["spNO.1", "a", 10, 12, 15, "26+25", "II", "surprise"],  # second ME in the same video
        ["spNO.1", "a", 10, 12, 15, "26+25", "II", "surprise"],  # exact duplicate id
        ["spNO.1", "J", 1, 9, 8, "4", "III", "  Anger"],  # uppercase letter, apex outside
        ["spNO.1", "a", 16, 17, 0, "9", "IV", "disgust"],  # offset 0: dropped
        ["spNO.7", "b", 1, 2, 5, "14", "VII", "Others"],  # a missing frame inside the interval
    ]
    _xlsx(
        root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        [("label", [CAS_HEADER] + rows), ("Sheet1", []), ("Sheet3", [])],
    )
    with caplog.at_level(logging.WARNING):
        clips = load_clips("casme3", root)
    ids = [c.clip_id for c in clips]
    assert ids == ["spNO.1_a_2", "spNO.1_a_10", "spNO.1_a_10_dup2", "spNO.1_j_1", "spNO.7_b_1"]
    by_id = dict(zip(ids, clips))
    assert by_id["spNO.1_a_10"].frame_numbers == list(range(10, 16))
    assert by_id["spNO.1_a_2"].label3 == "Positive" and by_id["spNO.1_a_10"].label3 == "Surprise"
    j = by_id["spNO.1_j_1"]
    assert (j.apex, j.label3, j.emotion, j.frame_paths[0].parent.parent.name) == (4, "Negative", "anger", "j")
    o = by_id["spNO.7_b_1"]
    assert o.label3 is None and o.emotion == "others" and o.frame_numbers == [1, 2, 4, 5]
    assert o.objective_class == "VII"
    for kind in ("duplicate clip id", "uppercase video letter", "offset missing, zero", "frames missing"):
        assert kind in caplog.text, kind


def test_casme3_per_clip_layout_and_bad_frame(tmp_path):
    root = tmp_path / "cas"
    _frames(root / "Part_A_ME_clip" / "frame" / "spNO.3_c_5", [f"{n}.jpg" for n in range(5, 9)], gray=False)
    _xlsx(
        root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        [("label", [CAS_HEADER, ["spNO.3", "c", 5, 6, 8, "1+2", "II", "surprise"]])],
    )
    (clip,) = load_clips("casme3", root)
    assert clip.frame_numbers == [5, 6, 7, 8]
    x = load_frames(clip)
    assert abs(float(x[1].mean()) - 101 / 255) < 3 / 255  # second frame written with value 101
    clip.frame_paths[2].write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"7\.jpg.*unreadable"):
        load_frames(clip)


def test_casme2_loader(tmp_path):
    root = tmp_path / "c2"
    _frames(root / "CASME2_RAW_selected" / "sub04" / "EP12_01f", [f"img{n}.jpg" for n in range(30, 36)])
    _xlsx(
        root / "CASME2-coding-20140508.xlsx",
        [
            (
                "Sheet1",
                [
                    [
                        "Subject",
                        "Filename",
                        "Unnamed",
                        "OnsetFrame",
                        "ApexFrame",
                        "OffsetFrame",
                        "Unnamed2",
                        "Action Units",
                        "Estimated Emotion",
                    ],
                    [4, "EP12_01f", None, 30, "/", 35, None, "4", "repression"],
                ],
            )
        ],
    )
    (c,) = load_clips("casme2", root)
    assert (c.subject, c.apex, c.label3, len(c)) == ("sub04", 32, "Negative", 6)


# ---------------------------------------------------------------- faces


def test_face_crop_fallback_is_counted_and_cached(tmp_path, caplog):
    root = _samm_fixture(tmp_path)
    clip = next(c for c in load_clips("samm", root) if c.clip_id == "006_1_2")
    before = faces.crop_stats().get("fallback", 0)
    with caplog.at_level(logging.WARNING):
        x = faces.cropped_frames(clip, 4, tmp_path / "cache", {"fallback_fraction": 0.5})
    assert faces.crop_stats()["fallback"] == before + 1 and "no face found" in caplog.text
    # a flat 8x8 frame of value 100 + k: the centre 4x4 box resized to 4 keeps the value exactly
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([(100 + k) / 255 for k in range(6)]), atol=2 / 255)
    cached = list((tmp_path / "cache" / "samm").glob("*.npy"))
    assert len(cached) == 1
    y = faces.cropped_frames(clip, 4, tmp_path / "cache", {"fallback_fraction": 0.5})
    assert torch.equal(x, y) and faces.crop_stats()["fallback"] == before + 1  # served from the cache
    box = faces.face_box(np.zeros((60, 100, 3), np.uint8), {"detector": "center", "fallback_fraction": 0.8})
    assert (box.x0, box.y0, box.side, box.detected) == (26, 6, 48, False)
    with pytest.raises(DataError, match="detector"):
        faces.face_box(np.zeros((8, 8, 3), np.uint8), {"detector": "dlib"})


def test_crop_field_scales_motion_to_crop_pixels():
    field = torch.zeros(2, 64, 64)
    field[0] = 2.0  # 2 px to the right everywhere
    out = faces.crop_field(field, faces.Box(16, 16, 32, False), 16)
    assert out.shape == (2, 16, 16) and torch.allclose(out[0], torch.full((16, 16), 1.0))
    assert torch.allclose(out[1], torch.zeros(16, 16))
