"""SynthME's configuration (the profile's `synthme:` section) and vocabulary: the emotions in each
dataset's own words, the objective classes, the EMFACS-style action-unit prototypes, its file names.
"""

from __future__ import annotations

import dataclasses
import logging

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
