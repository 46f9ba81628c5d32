"""Is a face-animation backbone competent at its own job, macro-expression reenactment?

Measured on SynthME identities that no corpus contains (`synthme.heldout_macro_specs`), in colour and
in SAMM's grey, next to the trivial baseline of copying the source frame. A backbone enters the
study's tables only if it passes all three checks:

* **self-reconstruction**: the clip's onset frame animated by the clip itself. The PSNR of the frames
  after the onset against the real ones, minus that of copying the onset into every frame, paired per
  clip: at least `recon_gain_db`.
* **cross-identity transfer**: the onset frame of another identity animated by the clip. Generated
  over driver motion (onset -> apex, Farneback at 64 x 64: the study's MMR); the median over clips lies
  in `transfer_range`.
* **grey stays grey**: a grey source driven by a grey clip; the mean over pixels of max - min over the
  RGB channels is at most `max_greyness`.

Every figure carries its n and a bootstrap 95% interval with whole subjects resampled (stats.py).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from magplus_lib.data import synthme
from magplus_lib.evaluation import stats
from magplus_lib.evaluation.metrics import expression_targets, motion_ratio, psnr
from magplus_lib.harness.atomicio import write_json


@dataclass
class CompetenceConfig:
    """The profile's `backbones.competence`: the held-out set and the bar (fixed a priori)."""

    subjects: int = 8
    clips_per_subject: int = 2
    max_frames: int = 12  # onset..offset thinned to this many frames (onset and apex kept)
    recon_gain_db: float = 3.0
    transfer_range: tuple[float, float] = (0.8, 1.25)
    max_greyness: float = 0.02
    max_real_clips: int = 48  # clips read from data.roots.macro_videos (round-robin over identities)
    # "enforce": only competent backbones are swept, generated and tabulated (default and full).
    # "report": every listed backbone goes on, its failures named in every caption (the ci profile,
    # whose 32 px models exist to exercise the code paths and cannot pass the bar).
    gate: str = "enforce"

    def __post_init__(self):
        if self.gate not in ("enforce", "report"):
            raise ValueError(f"backbones.competence.gate must be 'enforce' or 'report', not {self.gate!r}")


@dataclass
class HeldoutClip:
    clip_id: str
    subject: str
    frames: torch.Tensor  # (T, 3, S, S) in [0, 1], onset first
    apex: int  # the apex's index in `frames`


def render_heldout(
    synth: synthme.SynthMEConfig, cfg: CompetenceConfig, size: int, grey: bool
) -> list[HeldoutClip]:
    """The held-out clips at the working size, onset..offset thinned to `cfg.max_frames`."""
    out = []
    for spec in synthme.heldout_macro_specs(synth, cfg.subjects, cfg.clips_per_subject):
        frames, apex = synthme.render_thinned(dataclasses.replace(spec, grayscale=grey), size, cfg.max_frames)
        out.append(HeldoutClip(spec.clip_id, spec.subject, frames, apex))
    return out


def greyness(frames: torch.Tensor) -> float:
    """Mean over pixels of max - min over the RGB channels (0 for a grey image)."""
    return float((frames.amax(dim=-3) - frames.amin(dim=-3)).mean())


def source_for(clips: list[HeldoutClip], i: int) -> torch.Tensor:
    """The onset frame of the next subject's first clip (another identity)."""
    subjects = sorted({c.subject for c in clips})
    other = subjects[(subjects.index(clips[i].subject) + 1) % len(subjects)]
    return next(c for c in clips if c.subject == other).frames[0]


def per_clip(backbone, clips: list[HeldoutClip]) -> pd.DataFrame:
    """One row per clip: reconstruction and copy-source PSNR, transfer MMR, output greyness."""
    if len({c.subject for c in clips}) < 2:
        raise ValueError("competence: cross-identity transfer needs clips of at least two subjects")
    rows = []
    with torch.no_grad():
        for i, clip in enumerate(clips):
            real = clip.frames
            recon = backbone.animate(real[0], real)
            copy = real[:1].expand_as(real)
            moved = backbone.animate(source_for(clips, i), real)
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "subject": clip.subject,
                    "recon_psnr": psnr(recon[1:], real[1:]),
                    "copy_psnr": psnr(copy[1:], real[1:]),
                    "transfer_mmr": float(motion_ratio(moved, real, 0, expression_targets(0, clip.apex))),
                    "greyness": greyness(moved),
                }
            )
    return pd.DataFrame(rows)


def summarise(name: str, colour: pd.DataFrame, grey: pd.DataFrame, cfg: CompetenceConfig) -> dict:
    """The three checks with their intervals, and which ones fail."""
    lo, hi = cfg.transfer_range

    def gain(df):
        return stats.paired_difference(df["recon_psnr"], df["copy_psnr"], clusters=df["subject"])

    def transfer(df):
        return stats.bootstrap(df["transfer_mmr"], np.median, clusters=df["subject"])

    checks = {
        "recon_gain_colour_db": gain(colour),
        "recon_gain_grey_db": gain(grey),
        "transfer_colour": transfer(colour),
        "transfer_grey": transfer(grey),
        "grey_output": stats.bootstrap(grey["greyness"], np.mean, clusters=grey["subject"]),
    }
    failing = [
        k
        for k, est in checks.items()
        if (k.startswith("recon") and est.value < cfg.recon_gain_db)
        or (k.startswith("transfer") and not lo <= est.value <= hi)
        or (k == "grey_output" and est.value > cfg.max_greyness)
    ]
    return {"backbone": name, **checks, "failing": failing, "competent": not failing}


def competence_table(summaries: list[dict], digits: int = 2) -> pd.DataFrame:
    """One row per backbone: each check as `value [low, high]`, n, and the verdict."""
    rows = []
    for s in summaries:
        row = {"backbone": s["backbone"]}
        for k, v in s.items():
            if isinstance(v, stats.Estimate):
                row[k] = f"{v.value:.{digits}f} [{v.low:.{digits}f}, {v.high:.{digits}f}]"
        row["n clips (subjects)"] = f"{s['recon_gain_colour_db'].n} ({s['recon_gain_colour_db'].clusters})"
        row["competent"] = "yes" if s["competent"] else "no: " + ", ".join(s["failing"])
        rows.append(row)
    return pd.DataFrame(rows)


VERDICTS_FILE = "backbones_competence.json"  # under the results' metrics/: written by 03, read by 05-08


def write_verdicts(
    path, summaries: list[dict], cfg: CompetenceConfig, unavailable: dict[str, str] | None = None
) -> None:
    """Each backbone's verdict, the checks it failed with their values, and the bar, as JSON.
    `unavailable`: backbone -> why it could not be built (a missing checkout, no CUDA): never admitted."""
    verdicts = {
        s["backbone"]: {
            "competent": s["competent"],
            "failing": {k: dataclasses.asdict(s[k]) for k in s["failing"]},
        }
        for s in summaries
    }
    for name, why in (unavailable or {}).items():
        verdicts[name] = {"competent": False, "failing": {}, "unavailable": why}
    write_json(path, {"bar": dataclasses.asdict(cfg), "backbones": verdicts})


@dataclass
class Admission:
    """Which backbones go on to the tables, and which checks the others failed."""

    admitted: list[str]
    failed: dict[str, str]  # backbone -> the failed checks, with their values
    enforced: bool = True  # failed backbones are left out (else they go on, flagged)
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)  # -> why it was not built

    def note(self) -> str:
        """One or two sentences for captions and notebooks ('' when every backbone is competent)."""
        out = []
        if self.unavailable:
            parts = "; ".join(f"{name} ({why})" for name, why in self.unavailable.items())
            out.append(f"Could not be run, so left out: {parts}.")
        if self.failed:
            parts = "; ".join(f"{name} ({why})" for name, why in self.failed.items())
            if self.enforced:
                out.append(f"Not competent at macro reenactment, so left out: {parts}.")
            else:
                kept = "NOT competent at macro reenactment, kept only because this profile's gate reports"
                out.append(f"{kept}: {parts}.")
        return " ".join(out)


def admitted(verdicts_path, backbones: list[str]) -> Admission:
    """The listed backbones that passed 03's competence checks, in the listed order (every listed one,
    flagged, where the profile's gate only reports).

    A backbone that 03 did not measure is an error, not a silent pass: the gate exists so that no
    generator that fails its own job is scored in a table unnoticed."""
    path = Path(verdicts_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebooks/03_backbones.py (the gate's verdicts)")
    try:
        record = json.loads(path.read_text())
        bar, verdicts = record["bar"], record["backbones"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a competence verdicts file ({e!r}); rerun 03_backbones") from e
    unknown = [b for b in backbones if b not in verdicts]
    if unknown:
        raise ValueError(
            f"{path} has no competence verdict for {unknown} (it holds {sorted(verdicts)}): "
            "rerun notebooks/03_backbones.py with the same backbones_list"
        )
    failed, unavailable = {}, {}
    for b in backbones:
        if verdicts[b].get("unavailable"):
            unavailable[b] = verdicts[b]["unavailable"]
            continue
        why = []
        for check, est in verdicts[b]["failing"].items():
            if check.startswith("transfer"):
                lo, hi = bar["transfer_range"]
                limit = f"outside [{lo:g}, {hi:g}]"
            elif check.startswith("recon"):
                limit = f"< {bar['recon_gain_db']:g} dB"
            else:
                limit = f"> {bar['max_greyness']:g}"
            why.append(f"{check} {est['value']:.2f} {limit}")
        if not verdicts[b]["competent"]:
            failed[b] = ", ".join(why)
    enforced = bar.get("gate", "enforce") == "enforce"
    keep = [b for b in backbones if b not in unavailable and not (enforced and b in failed)]
    return Admission(keep, failed, enforced, unavailable)
