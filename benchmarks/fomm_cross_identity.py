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
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone_dev_validation import dev_clips  # noqa: E402

from magplus_lib import backbone_data as bd  # noqa: E402
from magplus_lib import competence, stats  # noqa: E402
from magplus_lib import fomm as fm  # noqa: E402
from magplus_lib import synthme as sm  # noqa: E402
from magplus_lib.backbone_training import model_factory, step_generator  # noqa: E402
from magplus_lib.backbones import as_backbones_config, build_backbone, load_safetensors_into  # noqa: E402
from magplus_lib.profiles import REPO_ROOT, from_dict  # noqa: E402

CACHED = REPO_ROOT / "cache" / "default" / "03_backbones" / "checkpoints"
POOL_STREAM = 4477  # the draw of (driver clip, other identity, frame) triples; not a rendering stream


def twin_spec(spec: sm.ClipSpec, other: sm.ClipSpec, synth: sm.SynthMEConfig) -> sm.ClipSpec:
    """`spec`'s expression on `other`'s face: same action units, intensity curve, head motion, blink and
    flicker; the field is the other identity's own for those action units, scaled to the same peak
    displacement in pixels (capped by the corpus's strain limit, as every SynthME clip is)."""
    raw = sm.expression_field([tuple(a) for a in spec.aus], other.identity_seed, spec.render_size)
    scale = spec.amplitude_px / float(np.sqrt((raw**2).sum(0)).max())
    strain = sm._max_strain(raw * scale)
    if strain > synth.max_strain:
        scale *= synth.max_strain / strain
    amp = float(np.sqrt(((raw * scale) ** 2).sum(0)).max())
    return dataclasses.replace(
        spec,
        clip_id=f"{spec.clip_id}_on_{other.subject}",
        subject=other.subject,
        identity_seed=other.identity_seed,
        field_scale=float(scale),
        amplitude_px=amp,
        grayscale=other.grayscale,
    )


def _render(spec: sm.ClipSpec, positions: list[int], size: int) -> torch.Tensor:
    frames = sm.render_clip(spec, positions=positions)
    small = F.interpolate(frames, size=(size, size), mode="area").clamp(0, 1)
    return (small * 255).round().to(torch.uint8)


def cross_identity_pool(
    synth: sm.SynthMEConfig, specs: list[sm.ClipSpec], n: int, size: int, max_frames: int, path: Path
) -> torch.Tensor:
    """(n, 4, 3, size, size) uint8: driver onset, driver frame t, twin onset, twin frame t; kept at `path`."""
    if path.is_file():
        return torch.load(path, weights_only=True)
    rng = np.random.default_rng([synth.seed, POOL_STREAM])
    subjects = sorted({s.subject for s in specs})
    by_subject = {s.subject: s for s in specs}  # any clip carries the identity's seed and grey flag
    out = torch.empty(n, 4, 3, size, size, dtype=torch.uint8)
    for i in tqdm(range(n), desc="cross-identity pairs"):
        a = specs[int(rng.integers(len(specs)))]
        b = by_subject[subjects[int(rng.integers(len(subjects)))]]
        while b.subject == a.subject:
            b = by_subject[subjects[int(rng.integers(len(subjects)))]]
        positions = bd.thinned_positions(a, max_frames)
        t = positions[int(rng.integers(1, len(positions)))]
        out[i, :2] = _render(a, [0, t], size)
        out[i, 2:] = _render(twin_spec(a, b, synth), [0, t], size)
    tmp = path.with_suffix(".tmp")
    torch.save(out, tmp)
    tmp.replace(path)
    return out


def cross_identity_loss(model: fm.FOMM, source, target, driving_initial, driving, cache) -> torch.Tensor:
    """Multi-scale L1 between FOMM's relative-motion animation of `source` by (driving_initial ->
    driving) and `target`, the source identity making the driver's expression. Per-sample relative
    keypoints without the convex-hull scale (which changed nothing at inference, docs/lab-notes.md)."""
    kp_s, kp_i, kp_d = (model.kp_detector(x) for x in (source, driving_initial, driving))
    kp = fm.relative_keypoints(kp_s, kp_d, kp_i, adapt_scale=False)  # per sample: no index-0 scale
    out = model.generator(source, kp_driving=kp, kp_source=kp_s)
    return fm.multiscale_l1(out["prediction"], target, model.cfg.loss.scales, cache)


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
    tset = bd.MacroTrainingSet(synth, set_cfg, size, progress=False)
    pool = cross_identity_pool(synth, tset.specs, args.pairs, size, set_cfg.max_frames, out / "pool.pt")
    train = dict(cfg.train)
    lr = args.lr or train.get("fomm", {}).get("lr", train["lr"])
    batch = int(train["batch_size"])
    jitter = from_dict(bd.ColourJitter, train.get("augment", {}), "augment")

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
        g = step_generator(1, step)
        idx = torch.randint(len(pool), (2 * batch,), generator=g)
        own = pool[idx[:batch]].float() / 255  # FOMM's own term: a frame pair of one clip, either way
        flip = torch.rand(batch, generator=g) < 0.5
        twin = torch.rand(batch, generator=g) < 0.5
        first, second = own[:, 0], own[:, 1]
        first = torch.where(twin[:, None, None, None], own[:, 2], first)
        second = torch.where(twin[:, None, None, None], own[:, 3], second)
        src = torch.where(flip[:, None, None, None], second, first)
        drv = torch.where(flip[:, None, None, None], first, second)
        src, drv = jitter([src, drv], g)
        loss, parts = fm.fomm_losses(model, src, drv, g, cache)
        x = pool[idx[batch:]].float() / 255  # the cross term: drive B's onset by A's motion, target B_t
        a0, at = jitter([x[:, 0], x[:, 1]], g)
        b0, bt = jitter([x[:, 2], x[:, 3]], g)
        xid = cross_identity_loss(model, b0, bt, a0, at, cache)
        total = loss + weight * xid
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            logs.append({"step": step + 1, **parts, "cross_identity": weight * float(xid.detach())})
            print(json.dumps(logs[-1]), flush=True)
        if step + 1 in keep:
            print(f"{step + 1} steps: {time.perf_counter() - t0:.0f} s of fine-tuning", flush=True)
            model.eval()
            measure(step + 1)
            model.train()


if __name__ == "__main__":
    main()
