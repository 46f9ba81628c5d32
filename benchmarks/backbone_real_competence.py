"""The default profile's backbones on macro-expression clips of a folder of videos (the competence check
of issue 20 on footage that is not rendered by SynthME).

    python benchmarks/backbone_real_competence.py ROOT [--limit 16]

ROOT holds <identity>/<clip> videos or frame folders (`magplus_lib.data.macro_videos`); frame 0 is the onset,
the apex the frame that moves most. The committed backbones of `cache/default/03_backbones` (and the
training-free flowwarp, and copying the source) are measured with
`magplus_lib.backbones.competence` and the same
bar, in colour and in grey. Without real clips at hand, `tests/full_standins.py`'s `macro_videos` writes
SynthME renders as .mp4 / .avi / PNG folders. Not a test: a measurement of the models.
"""

from __future__ import annotations

import argparse

import torch
import yaml

from magplus_lib.backbones import competence
from magplus_lib.backbones.registry import as_backbones_config, build_backbone
from magplus_lib.backbones.training import SourceCopy
from magplus_lib.data import macro_videos
from magplus_lib.harness.profiles import REPO_ROOT, from_dict


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--limit", type=int, default=16, help="clips at most (taken round-robin over identities)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    prof = yaml.safe_load((REPO_ROOT / "notebooks" / "profiles" / "default.yaml").read_text())
    cfg = as_backbones_config(prof["backbones"])
    bar = from_dict(competence.CompetenceConfig, cfg.competence, "backbones.competence")
    size, frames = prof["image_size"], bar.max_frames
    clips = {
        g: macro_videos.load_macro_videos(args.root, size, None, frames, args.limit, g) for g in (False, True)
    }
    ckpts = REPO_ROOT / "cache" / "default" / "03_backbones" / "checkpoints"
    models = {"copy source (baseline)": SourceCopy()}
    models |= {n: build_backbone(n, cfg, ckpts, "cpu") for n in prof["backbones_list"]}
    summaries = [
        competence.summarise(
            n, competence.per_clip(bb, clips[False]), competence.per_clip(bb, clips[True]), bar
        )
        for n, bb in models.items()
    ]
    n_ident = len({c.subject for c in clips[False]})
    print(f"{args.root}: {len(clips[False])} clips of {n_ident} identities")
    print(competence.competence_table(summaries).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
