"""A tiny SynthME corpus shared by the data tests (built from code in a temporary folder, ~2 s)."""

from __future__ import annotations

from magplus_lib.data.synthme import SynthMEConfig, generate_corpus


def tiny_config(**overrides) -> SynthMEConfig:
    cfg = dict(
        seed=3,
        render_size=64,
        supersample=4,
        samm_subjects=2,
        casme3_subjects=2,
        macro_subjects=1,
        micro_clips_per_subject={"happiness": 1, "surprise": 1, "anger": 1, "other": 1},
        macro_clips_per_subject={"happiness": 1, "surprise": 1, "disgust": 1},
        micro_amplitude_px=[0.3, 0.9],
        macro_amplitude_px=[4.0, 8.0],
        samm_duration_s=[0.04, 0.06],
        casme3_duration_s=[0.2, 0.3],
        macro_duration_s=[0.3, 0.4],
        noise_std=0.0,
        flicker=0.0,
        blink_prob=0.0,
        quirk_rate=0.3,
        generic_pairs=6,
        generic_size=48,
    )
    cfg.update(overrides)
    return SynthMEConfig(**cfg)


def tiny_corpus(tmp_path_factory, name: str = "synthme", **overrides):
    root = tmp_path_factory.mktemp(name)
    cfg = tiny_config(**overrides)
    generate_corpus(cfg, root)
    return root, cfg
