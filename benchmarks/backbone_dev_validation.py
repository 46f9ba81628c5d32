"""Development check of one embedded backbone: train it on the rendered macro training set and measure
the competence checks on *dev-validation* identities after each run length.

    python benchmarks/backbone_dev_validation.py latent /tmp/dev_latent 500,1500,3000
    python benchmarks/backbone_dev_validation.py fomm /tmp/dev_fomm 1000,2500,5000 \
        '{"train": {"lr": 0.0005}, "model": {"generator": {"blend_deformed_source": true}}}'

Run lengths, learning rates and architecture changes of the backbones were chosen with this script
(docs/lab-notes.md). Its identities come from their own seed stream (`DEV_STREAM`), so neither the
training set (`synthme.TRAINING_STREAM`) nor the competence set that 03_backbones reports
(`synthme.HELDOUT_STREAM`) is used for choosing; nothing here reads micro clips, MMR on micro drivers
or recognition scores. The optional JSON overrides `train` (BackboneTrainConfig fields), `model` (the
backbone's profile section, merged one level deep) and `set` (TrainingSetConfig fields).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time

import torch
import yaml

from magplus_lib.backbones import competence
from magplus_lib.backbones import training as bt
from magplus_lib.backbones import training_data as bd
from magplus_lib.backbones.registry import as_backbones_config, build_backbone
from magplus_lib.data import synthme as sm
from magplus_lib.harness.profiles import REPO_ROOT, from_dict

DEV_STREAM = 77  # identities of their own: not the corpora's 11/22/33, training's 44 or held-out 99


def dev_clips(
    synth: sm.SynthMEConfig, grey: bool, size: int = 64, subjects: int = 8
) -> list[competence.HeldoutClip]:
    out = []
    for spec in sm.macro_specs(synth, subjects, 2, DEV_STREAM):
        frames, apex = sm.render_thinned(dataclasses.replace(spec, grayscale=grey), size, 12)
        out.append(competence.HeldoutClip(spec.clip_id, spec.subject, frames, apex))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=bt.TRAINABLE)
    ap.add_argument("out", help="results folder for the checkpoints (resumed between run lengths)")
    ap.add_argument("steps", help="comma-separated run lengths, e.g. 500,1500,3000")
    ap.add_argument("overrides", nargs="?", default="{}", help="JSON: {train: {}, model: {}, set: {}}")
    ap.add_argument("--subjects", type=int, default=8, help="dev identities (2 clips each)")
    ap.add_argument(
        "--keep", action="store_true", help="keep each run length's weights as backbone_<name>.step<N>.*"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    over = json.loads(args.overrides)
    prof = yaml.safe_load((REPO_ROOT / "notebooks" / "profiles" / "default.yaml").read_text())
    synth = from_dict(sm.SynthMEConfig, prof["synthme"], "synthme")
    cfg = as_backbones_config(prof["backbones"])
    model_cfg = dict(getattr(cfg, args.name))
    for k, v in over.get("model", {}).items():
        model_cfg[k] = {**model_cfg.get(k, {}), **v} if isinstance(v, dict) else v
    size = prof["image_size"]
    set_cfg = from_dict(bd.TrainingSetConfig, {**cfg.training_set, **over.get("set", {})}, "set")
    tset = bd.MacroTrainingSet(synth, set_cfg, size, progress=False)
    val = {grey: dev_clips(synth, grey, size, args.subjects) for grey in (False, True)}
    bar = competence.CompetenceConfig()
    for steps in [int(s) for s in args.steps.split(",")]:
        tc = dataclasses.replace(
            bt.train_config_for(args.name, cfg.train), steps=steps, **over.get("train", {})
        )
        t0 = time.perf_counter()
        summary = bt.train_backbone(args.name, tset, model_cfg, tc, size, args.out, progress=False)
        if args.keep:
            for suffix in (".safetensors", ".json"):
                src = bt.checkpoint_path(f"{args.out}/checkpoints", args.name).with_suffix(suffix)
                shutil.copyfile(src, src.with_name(f"backbone_{args.name}.step{steps}{suffix}"))
        bb = build_backbone(args.name, cfg, f"{args.out}/checkpoints", "cpu")
        s = competence.summarise(
            args.name, competence.per_clip(bb, val[False]), competence.per_clip(bb, val[True]), bar
        )
        checks = " ".join(
            f"{k}={v.value:.2f}" for k, v in s.items() if isinstance(v, competence.stats.Estimate)
        )
        print(
            f"{args.name} step {steps}: {summary['time_s']:.0f} s of training "
            f"({time.perf_counter() - t0:.0f} s this call), loss {summary['final_loss']:.4f} | {checks}",
            flush=True,
        )


if __name__ == "__main__":
    main()
