"""Development check of a cross-identity term for fomm: fine-tune the cached fomm weights with, beside
FOMM's own objective, a reenactment loss on pairs of *different* identities making the same expression,
and measure the competence checks on dev-validation identities after each run length.

    python benchmarks/fomm_cross_identity.py /tmp/fomm_xid 500,1000,1500,2000 --subjects 48

Why: FOMM trains on pairs of frames of one video, so nothing in its objective says that a keypoint
displacement learnt on one face means the same motion on another; on new faces our fomm transfers the
driver's motion shrunk (held-out transfer 0.76 / 0.72, docs/lab-notes.md). SynthME can render one
expression (the same action units, intensity curve, head motion and peak displacement in pixels) on
two identities, which real corpora cannot; the term asks FOMM's relative-motion animation (source of
identity B, driver of identity A, B's own frame as the target) to reproduce B's frame. Everything here
is macro training data of the training stream (`synthme.TRAINING_STREAM`); choices are read on the dev
stream (`backbone_dev_validation.DEV_STREAM`) only, never on the held-out competence set, micro clips,
micro-driver MMR or recognition scores.

The chosen rule (written before any number came back, as for the run lengths in docs/lab-notes.md):
among the kept checkpoints whose dev reconstruction gain is >= 3 dB and grey output <= 0.02 (colour
and grey), the one with the smallest max(|log transfer colour|, |log transfer grey|); adopted only if
its dev transfers are both inside [0.8, 1.25] and the untouched weights' (step 0) are not bettered by
chance alone, i.e. the paired interval of the per-clip log-ratio difference excludes zero.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone_dev_validation import dev_clips  # noqa: E402

from magplus_lib.backbones import (
    competence,  # noqa: E402
    fomm_losses,  # noqa: E402
)
from magplus_lib.backbones import training_data as bd  # noqa: E402
from magplus_lib.backbones.base import load_safetensors_into  # noqa: E402
from magplus_lib.backbones.registry import as_backbones_config, build_backbone  # noqa: E402
from magplus_lib.backbones.training import cross_identity_step, model_factory, step_generator  # noqa: E402
from magplus_lib.data import synthme as sm  # noqa: E402
from magplus_lib.evaluation import stats  # noqa: E402
from magplus_lib.harness.profiles import REPO_ROOT, from_dict  # noqa: E402

CACHED = REPO_ROOT / "cache" / "default" / "03_backbones" / "checkpoints"


def cross_identity_pool(tset: bd.MacroTrainingSet, n: int, path: Path) -> torch.Tensor:
    """`tset.cross_identity_pairs(n)`, kept at `path` so that runs on one pool skip its rendering."""
    if path.is_file():
        return torch.load(path, weights_only=True)
    pool = tset.cross_identity_pairs(n)
    tmp = path.with_suffix(".tmp")
    torch.save(pool, tmp)
    tmp.replace(path)
    return pool


def compare(run: Path, other: Path, step: int) -> None:
    """Paired over the same dev clips: |log transfer| of `other` minus that of `run`, both at `step`
    (positive = `run` transfers closer to the driver's motion)."""
    import pandas as pd

    for kind in ("colour", "grey"):
        a, b = (pd.read_csv(d / f"rows_step{step}_{kind}.csv") for d in (run, other))
        if list(a["clip_id"]) != list(b["clip_id"]):
            raise ValueError(f"{run} and {other} were measured on different dev clips")
        e = stats.paired_difference(
            np.abs(np.log(b["transfer_mmr"])), np.abs(np.log(a["transfer_mmr"])), clusters=a["subject"]
        )
        print(
            f"{kind}: transfer {a['transfer_mmr'].median():.3f} vs {b['transfer_mmr'].median():.3f}; "
            f"|log transfer| gain of {run.name} over {other.name} at step {step}: {e.text(3)}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder for the pair pool and the kept checkpoints")
    ap.add_argument("steps", help="comma-separated run lengths of the fine-tuning, e.g. 500,1000")
    ap.add_argument("--pairs", type=int, default=2000, help="cross-identity pairs rendered")
    ap.add_argument(
        "--weight",
        type=float,
        default=None,
        help="weight of the cross-identity term (default: reconstruction's)",
    )
    ap.add_argument(
        "--init",
        type=Path,
        default=CACHED / "backbone_fomm.safetensors",
        help="fomm weights to start from (default: the cached entry's); with STEPS 0, only measures them",
    )
    ap.add_argument("--lr", type=float, default=None, help="default: the profile's fomm lr")
    ap.add_argument("--subjects", type=int, default=48, help="dev identities (2 clips each)")
    ap.add_argument(
        "--grey-probability",
        type=float,
        default=None,
        help="share of the phase's pairs turned grey by the jitter (default: the profile's augment)",
    )
    ap.add_argument(
        "--compare",
        metavar="OTHER",
        help="no training: paired |log transfer| gain of OUT's checkpoint at STEPS over OTHER's",
    )
    args = ap.parse_args()
    if args.compare:
        compare(Path(args.out), Path(args.compare), int(args.steps))
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prof = yaml.safe_load((REPO_ROOT / "notebooks" / "profiles" / "default.yaml").read_text())
    synth = from_dict(sm.SynthMEConfig, prof["synthme"], "synthme")
    cfg = as_backbones_config(prof["backbones"])
    size = prof["image_size"]
    set_cfg = from_dict(bd.TrainingSetConfig, cfg.training_set, "set")
    tset = bd.MacroTrainingSet(synth, set_cfg, size, progress=True)
    pool = cross_identity_pool(tset, args.pairs, out / "pool.pt")
    train = dict(cfg.train)
    lr = args.lr or train.get("fomm", {}).get("lr", train["lr"])
    batch = int(train["batch_size"])
    augment = dict(train.get("augment", {}))
    if args.grey_probability is not None:
        augment["grey_probability"] = args.grey_probability
    jitter = from_dict(bd.ColourJitter, augment, "augment")

    torch.manual_seed(0)
    model, _, _ = model_factory("fomm", cfg.fomm)
    load_safetensors_into(model, args.init)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    weight = model.cfg.loss.reconstruction if args.weight is None else args.weight
    val = {grey: dev_clips(synth, grey, size, args.subjects) for grey in (False, True)}
    bar = competence.CompetenceConfig()
    cache: dict = {}
    logs: list[dict] = []
    baseline = None

    def measure(step: int) -> None:
        nonlocal baseline
        ck = out / f"step{step}"
        ck.mkdir(exist_ok=True)
        save_file(model.state_dict(), str(ck / "backbone_fomm.safetensors"))
        shutil.copyfile(CACHED / "backbone_fomm.json", ck / "backbone_fomm.json")
        bb = build_backbone("fomm", cfg, ck, "cpu")
        rows = {g: competence.per_clip(bb, val[g]) for g in (False, True)}
        for g, df in rows.items():  # kept so that two runs can be compared clip by clip (--compare)
            df.to_csv(out / f"rows_step{step}_{'grey' if g else 'colour'}.csv", index=False)
        s = competence.summarise("fomm", rows[False], rows[True], bar)
        checks = " ".join(f"{k}={v.value:.3f}" for k, v in s.items() if isinstance(v, stats.Estimate))
        line = f"fomm + cross-identity step {step}: {checks}"
        if baseline is None:
            baseline = rows
        else:  # paired over the same dev clips: |log transfer| of the cached weights minus now's
            for g in (False, True):
                now, before = rows[g], baseline[g]
                e = stats.paired_difference(
                    np.abs(np.log(before["transfer_mmr"])),
                    np.abs(np.log(now["transfer_mmr"])),
                    clusters=now["subject"],
                )
                line += f" | {'grey' if g else 'colour'} |log transfer| gain {e.text(3)}"
        print(line, flush=True)
        (out / "summary.txt").open("a").write(line + "\n")

    measure(0)
    model.train()
    t0 = time.perf_counter()
    last = max(int(s) for s in args.steps.split(","))
    keep = {int(s) for s in args.steps.split(",")}
    for step in tqdm(range(last), desc="fine-tune fomm"):
        g = step_generator(1, step)  # the library phase's stream (seed + 1) for seed 0
        total, parts = cross_identity_step(
            model, fomm_losses.fomm_losses, pool, batch, weight, jitter, g, cache, "cpu"
        )
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            logs.append({"step": step + 1, **parts})
            print(json.dumps(logs[-1]), flush=True)
        if step + 1 in keep:
            print(f"{step + 1} steps: {time.perf_counter() - t0:.0f} s of fine-tuning", flush=True)
            model.eval()
            measure(step + 1)
            model.train()


if __name__ == "__main__":
    main()
