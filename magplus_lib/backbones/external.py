"""Adapters for the official FSRT, MetaPortrait and EmoPortraits code, run over the user's checkout.

FOMM, TPSMM, FSRT and MetaPortrait all ship a top-level package called ``modules``, so two of them
cannot live in one interpreter: each adapter runs the repository's own inference script in a
subprocess (with the repository's interpreter, ``<NAME>_PYTHON`` or the profile's ``python``), and
exchanges frames through files in a temporary folder. Calling conventions (from the public
repositories):

- FSRT (``andrerochow/fsrt``): ``python demo.py --config runs/vox256/vox256.yaml --checkpoint CKPT
  --source_image src.png --driving_video drv.avi --result_video out.mp4 --relative --adapt_scale``
  in the repository root (it also loads ``./weights/kp_detector.pt``). The demo hard-codes ``.cuda()``
  and writes each result frame as [driver | generated] side by side: we keep the generated half.
- MetaPortrait (``Meta-Portrait/MetaPortrait``): ``python inference.py --save_dir OUT --config CFG
  --ckpt CKPT`` in ``base_model/``; it reads a data folder (``src_0.png`` with ``src_0_ldmk.npy``,
  ``src_0_theta.npy``, ``src_0_id.npy``, ``src_map_dict.pkl``, and driving frames with ``_ldmk.npy`` /
  ``_theta.npy``) named by the config's ``dataset.personalized.root`` and writes
  ``OUT/output_256/<frame name>``. Its 669-point dense landmarks come from a tracker that is not
  public: the user supplies a ``landmark_command`` (run on a folder of PNG frames; it must write
  ``<stem>_ldmk.npy`` (669, 2) in [0, 1] and ``<stem>_theta.npy`` beside every frame, and
  ``<stem>_id.npy`` beside ``src_*.png``) or a ``landmark_dir`` of prepared files named by the SHA-1 of
  each frame's uint8 RGB bytes (``<sha1>_ldmk.npy``, ...).
- EmoPortraits (``neeek2303/EMOPortraits``): ``python run_video_driven_pipeline.py
  --source_image_path src.png --driven_video_path drv.avi --saved_to_path out.mp4 --fps 25
  --max_len T`` in the repository root; it needs CUDA, its face parsers and matting models
  (``repos/jit_lama.pt``, MODNet, ``ibug.face_detection``) and writes [source | driver | result]
  panels side by side: we keep the third.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from magplus_lib.backbones.base import Backbone, BackboneError
from magplus_lib.harness.profiles import from_dict


class ExternalBackboneError(BackboneError):
    """An official backbone that cannot run here; the message says what to supply or install."""


@dataclass
class ExternalConfig:
    repo: str | None = None  # the user's checkout of the official repository
    checkpoint: str | None = None
    python: str | None = None  # interpreter of the repository's environment (default: $<NAME>_PYTHON)
    config: str | None = None  # repository-relative model config (default per backbone)
    native_size: int | None = None  # default per backbone (256 FSRT / MetaPortrait, 512 EmoPortraits)
    require_cuda: bool = True  # the official scripts call .cuda(); check before launching them
    timeout_s: float = 3600.0
    driving_ext: str = ".avi"  # driver video written losslessly (FFV1) so micro motion survives
    result_ext: str = ".mp4"
    fps: float = 25.0
    landmark_command: str | None = None  # MetaPortrait only
    landmark_dir: str | None = None  # MetaPortrait only
    extra_args: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------
# frame files


def to_uint8_hwc(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB."""
    arr = frame.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return np.ascontiguousarray((arr * 255.0 + 0.5).astype(np.uint8))


def from_uint8_hwc(frames: list[np.ndarray]) -> torch.Tensor:
    """list of (H, W, 3) uint8 RGB -> (T, 3, H, W) float in [0, 1]."""
    arr = np.stack(frames).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def write_png(path: Path, frame: torch.Tensor) -> Path:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(to_uint8_hwc(frame), cv2.COLOR_RGB2BGR)):
        raise ExternalBackboneError(f"could not write frame {path}")
    return path


def read_png(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ExternalBackboneError(f"{path}: missing or unreadable output frame")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _fourcc(path: Path) -> str:
    return "FFV1" if path.suffix.lower() == ".avi" else "mp4v"


def write_video(path: Path, frames: torch.Tensor, fps: float) -> Path:
    import cv2

    h, w = frames.shape[-2:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*_fourcc(path)), float(fps), (int(w), int(h)))
    if not writer.isOpened():
        raise ExternalBackboneError(f"could not open a video writer for {path} (codec {_fourcc(path)})")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(to_uint8_hwc(f), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    import cv2

    if not path.is_file():
        raise ExternalBackboneError(f"{path}: the backbone wrote no result video")
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise ExternalBackboneError(f"{path}: result video holds no readable frame")
    return frames


def split_panels(frames: list[np.ndarray], panels: int, keep: int, who: str) -> list[np.ndarray]:
    """Keep panel `keep` of frames made of `panels` equal-width images side by side."""
    out = []
    for i, f in enumerate(frames):
        h, w = f.shape[:2]
        if w % panels:
            raise ExternalBackboneError(
                f"{who}: result frame {i} is {w} px wide, not {panels} side-by-side panels of equal width"
            )
        pw = w // panels
        out.append(np.ascontiguousarray(f[:, keep * pw : (keep + 1) * pw]))
    return out


def frame_sha1(frame: torch.Tensor) -> str:
    return hashlib.sha1(to_uint8_hwc(frame).tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------
# adapters


CUDA_MARKERS = (
    "Torch not compiled with CUDA enabled",
    "Found no NVIDIA driver",
    "no CUDA GPUs are available",
    "CUDA driver version is insufficient",
)


class ExternalBackbone(Backbone):
    name = "external"
    env_prefix = "EXTERNAL"
    entry = ""  # script, relative to `workdir`
    workdir = "."  # repository-relative folder the script runs in
    default_size = 256
    required_files: tuple[str, ...] = ()  # repository-relative files the script loads by fixed path
    cuda_note = ""
    url = ""

    def __init__(self, cfg: ExternalConfig, device="cpu"):
        super().__init__("cpu")  # frames go through files; the subprocess picks its own device
        self.cfg = cfg
        self.native_size = cfg.native_size or self.default_size
        var = f"{self.env_prefix}_REPO"
        if not cfg.repo:
            raise ExternalBackboneError(
                f"{self.name}: no repository given; set {var} to your checkout of {self.url}"
            )
        self.repo = Path(cfg.repo).expanduser()
        if not self.repo.is_dir():
            raise ExternalBackboneError(
                f"{self.name}: repository folder {self.repo} does not exist (set {var})"
            )
        script = self.repo / self.workdir / self.entry
        if not script.is_file():
            raise ExternalBackboneError(
                f"{self.name}: {script} not found; {var} must point to a checkout of {self.url}"
            )
        missing = [p for p in self.required_files if not (self.repo / p).exists()]
        if missing:
            raise ExternalBackboneError(
                f"{self.name}: the official script loads these files by fixed path; missing under "
                f"{self.repo}: {', '.join(missing)} (download them as the repository's README says)"
            )
        self.checkpoint = self._check_checkpoint()
        self.python = cfg.python or os.environ.get(f"{self.env_prefix}_PYTHON") or sys.executable
        self._cuda_checked = False

    def _check_checkpoint(self) -> Path | None:
        if not self.cfg.checkpoint:
            raise ExternalBackboneError(
                f"{self.name}: no checkpoint given; set {self.env_prefix}_CHECKPOINT to the official weights"
            )
        ckpt = Path(self.cfg.checkpoint).expanduser()
        if not ckpt.is_file():
            raise ExternalBackboneError(
                f"{self.name}: checkpoint {ckpt} does not exist ({self.env_prefix}_CHECKPOINT)"
            )
        return ckpt.resolve()

    def check_cuda(self) -> None:
        """The official scripts move models to CUDA unconditionally: fail early with a clear message."""
        if not self.cfg.require_cuda or self._cuda_checked:
            return
        probe = subprocess.run(
            [self.python, "-c", "import torch; print(torch.cuda.is_available())"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if probe.returncode != 0 or probe.stdout.strip().splitlines()[-1:] != ["True"]:
            detail = (probe.stderr or probe.stdout).strip()[-300:] or "cuda unavailable"
            raise ExternalBackboneError(
                f"{self.name}: {self.cuda_note} but torch in {self.python} sees no CUDA device ({detail}); "
                f"run the full profile on a GPU machine or point {self.env_prefix}_PYTHON to an interpreter "
                "with a CUDA build of torch"
            )
        self._cuda_checked = True

    def run_script(self, args: list[str], log_dir: Path) -> None:
        cmd = [self.python, self.entry, *args, *self.cfg.extra_args]
        cwd = self.repo / self.workdir
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), str(self.repo)])}
        try:
            proc = subprocess.run(
                cmd, cwd=cwd, capture_output=True, text=True, timeout=self.cfg.timeout_s, env=env
            )
        except subprocess.TimeoutExpired as exc:
            raise ExternalBackboneError(
                f"{self.name}: {shlex.join(cmd)} ran past {self.cfg.timeout_s} s"
            ) from exc
        (log_dir / "stdout.txt").write_text(proc.stdout)
        (log_dir / "stderr.txt").write_text(proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-1500:]
            raise ExternalBackboneError(self.explain_failure(tail, shlex.join(cmd), proc.returncode))

    def explain_failure(self, tail: str, cmd: str, rc: int) -> str:
        hint = ""
        if any(m in tail for m in CUDA_MARKERS):
            hint = f"{self.cuda_note}; it cannot run without a CUDA GPU. "
        elif "ModuleNotFoundError" in tail or "ImportError" in tail:
            hint = (
                f"the repository's dependencies are missing in {self.python} (set {self.env_prefix}_PYTHON). "
            )
        return f"{self.name}: the official script failed (exit {rc}). {hint}Command: {cmd}\n{tail}"

    def _check_count(self, frames: list[np.ndarray], t: int) -> list[np.ndarray]:
        if len(frames) < t:
            raise ExternalBackboneError(
                f"{self.name}: got {len(frames)} result frames for {t} driving frames"
            )
        return frames[:t]

    def _to_native(self, frames: list[np.ndarray]) -> torch.Tensor:
        out = from_uint8_hwc(frames)
        if out.shape[-1] != self.native_size or out.shape[-2] != self.native_size:
            from magplus_lib.backbones.base import resize_frames

            out = resize_frames(out, (self.native_size, self.native_size))
        return out


class FSRTBackbone(ExternalBackbone):
    name = "fsrt"
    env_prefix = "FSRT"
    entry = "demo.py"
    url = "https://github.com/andrerochow/fsrt"
    required_files = ("weights/kp_detector.pt",)
    cuda_note = "FSRT's demo.py hard-codes CUDA (.cuda() on every model and tensor)"

    def _animate_native(self, source, driving):
        self.check_cuda()
        config = self.cfg.config or "runs/vox256/vox256.yaml"
        if not (self.repo / config).is_file():
            raise ExternalBackboneError(
                f"fsrt: model config {self.repo / config} not found (option `config`)"
            )
        with tempfile.TemporaryDirectory(prefix="magplus_fsrt_") as tmp:
            tmp = Path(tmp)
            src = write_png(tmp / "source.png", source[0])
            drv = write_video(tmp / f"driving{self.cfg.driving_ext}", driving, self.cfg.fps)
            result = tmp / f"result{self.cfg.result_ext}"
            args = ["--config", config, "--checkpoint", str(self.checkpoint), "--source_image", str(src)]
            args += [
                "--driving_video",
                str(drv),
                "--result_video",
                str(result),
                "--relative",
                "--adapt_scale",
            ]
            self.run_script(args, tmp)
            # Each written frame is [driver | generated]; keep the generated half.
            frames = split_panels(read_video(result), 2, 1, self.name)
        return self._to_native(self._check_count(frames, driving.shape[0]))


class EmoPortraitsBackbone(ExternalBackbone):
    name = "emoportraits"
    env_prefix = "EMOPORTRAITS"
    entry = "run_video_driven_pipeline.py"
    url = "https://github.com/neeek2303/EMOPortraits"
    default_size = 512
    required_files = (
        "repos/jit_lama.pt",
        "repos/MODNet/pretrained/modnet_photographic_portrait_matting.ckpt",
    )
    cuda_note = (
        "EmoPortraits needs a CUDA build (its face parser, matting, inpainting and face detector all run on "
        "'cuda')"
    )

    def _check_checkpoint(self):
        # The script loads its model from logs/<experiment>/... by a fixed name; accept either an explicit
        # checkpoint file or any `logs/*/checkpoints/*_model.pth` in the checkout.
        if self.cfg.checkpoint:
            return super()._check_checkpoint()
        found = sorted(self.repo.glob("logs/*/checkpoints/*_model.pth"))
        if not found:
            raise ExternalBackboneError(
                f"emoportraits: no model under {self.repo}/logs/<experiment>/checkpoints/ (the script loads "
                "328_model.pth from there); download the released weights into the checkout"
            )
        return found[0]

    def explain_failure(self, tail, cmd, rc):
        msg = super().explain_failure(tail, cmd, rc)
        if "ibug" in tail or "face_detection" in tail or "FaceParsing" in tail:
            msg = "emoportraits: its face parsers are missing (ibug.face_detection / face_parsing); " + msg
        return msg

    def _animate_native(self, source, driving):
        self.check_cuda()
        with tempfile.TemporaryDirectory(prefix="magplus_emop_") as tmp:
            tmp = Path(tmp)
            src = write_png(tmp / "source.png", source[0])
            drv = write_video(tmp / f"driving{self.cfg.driving_ext}", driving, self.cfg.fps)
            result = tmp / f"result{self.cfg.result_ext}"
            args = [
                "--source_image_path",
                str(src),
                "--driven_video_path",
                str(drv),
                "--saved_to_path",
                str(result),
            ]
            args += ["--fps", str(self.cfg.fps), "--max_len", str(driving.shape[0])]
            self.run_script(args, tmp)
            # Frames are [source | driver | result]; keep the result.
            frames = split_panels(read_video(result), 3, 2, self.name)
        return self._to_native(self._check_count(frames, driving.shape[0]))


LANDMARK_HELP = (
    "MetaPortrait is driven by 669-point dense face landmarks from a tracker that is not public. Supply "
    "either `landmark_command` (METAPORTRAIT_LANDMARK_CMD): a shell command with {frames} for a folder "
    "of PNG frames, which must write <stem>_ldmk.npy (669 x 2 in [0, 1]) and <stem>_theta.npy beside every "
    "frame and <stem>_id.npy beside src_*.png; or `landmark_dir`: prepared files named by the SHA-1 of "
    "each frame's uint8 RGB bytes (<sha1>_ldmk.npy, <sha1>_theta.npy, <sha1>_id.npy)"
)


class MetaPortraitBackbone(ExternalBackbone):
    name = "metaportrait"
    env_prefix = "METAPORTRAIT"
    entry = "inference.py"
    workdir = "base_model"
    url = "https://github.com/Meta-Portrait/MetaPortrait"
    required_files = ("base_model/utils/dense_669_connectivity.tsv",)
    cuda_note = "MetaPortrait's inference.py moves its generator to CUDA unconditionally (.cuda())"
    num_landmarks = 669

    def __init__(self, cfg: ExternalConfig, device="cpu"):
        super().__init__(cfg, device)
        if not cfg.landmark_command and not cfg.landmark_dir:
            raise ExternalBackboneError(f"metaportrait: no landmarks. {LANDMARK_HELP}")

    def prepare_landmarks(self, data: Path, frames: dict[str, torch.Tensor]) -> None:
        """Fill `data` with the landmark files of every frame (name stem -> frame)."""
        if self.cfg.landmark_command:
            cmd = self.cfg.landmark_command.replace("{frames}", shlex.quote(str(data)))
            proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=self.cfg.timeout_s)
            if proc.returncode != 0:
                raise ExternalBackboneError(
                    f"metaportrait: landmark command failed (exit {proc.returncode}): {cmd}\n"
                    f"{(proc.stderr or proc.stdout).strip()[-1000:]}"
                )
        else:
            src_dir = Path(self.cfg.landmark_dir).expanduser()
            for stem, frame in frames.items():
                digest = frame_sha1(frame)
                kinds = ("ldmk", "theta", "id") if stem.startswith("src_") else ("ldmk", "theta")
                for kind in kinds:
                    f = src_dir / f"{digest}_{kind}.npy"
                    if not f.is_file():
                        raise ExternalBackboneError(
                            f"metaportrait: no prepared landmark file {f} for frame {stem}. {LANDMARK_HELP}"
                        )
                    (data / f"{stem}_{kind}.npy").write_bytes(f.read_bytes())
        for stem in frames:
            ldmk = data / f"{stem}_ldmk.npy"
            kinds = ("ldmk", "theta", "id") if stem.startswith("src_") else ("ldmk", "theta")
            for kind in kinds:
                if not (data / f"{stem}_{kind}.npy").is_file():
                    raise ExternalBackboneError(
                        f"metaportrait: landmark step wrote no {stem}_{kind}.npy. {LANDMARK_HELP}"
                    )
            try:
                arr = np.load(ldmk)
            except Exception as exc:  # noqa: BLE001 - re-raised with the file name
                raise ExternalBackboneError(
                    f"metaportrait: {ldmk} is not a readable .npy file: {exc}"
                ) from exc
            if arr.shape != (self.num_landmarks, 2):
                raise ExternalBackboneError(
                    f"metaportrait: {ldmk} has shape {arr.shape}; it needs ({self.num_landmarks}, 2) "
                    "dense landmarks in [0, 1]"
                )

    def _animate_native(self, source, driving):
        import yaml

        self.check_cuda()
        config = self.repo / self.workdir / (self.cfg.config or "config/meta_portrait_256_eval.yaml")
        if not config.is_file():
            raise ExternalBackboneError(f"metaportrait: model config {config} not found (option `config`)")
        conf = yaml.safe_load(config.read_text())
        with tempfile.TemporaryDirectory(prefix="magplus_metap_") as tmp:
            tmp = Path(tmp)
            data, out = tmp / "data", tmp / "out"
            (data / "drv").mkdir(parents=True)
            write_png(data / "src_0.png", source[0])
            frames = {"src_0": source[0]}
            names = []
            for t in range(driving.shape[0]):
                name = f"{t:05d}.png"
                write_png(data / "drv" / name, driving[t])
                frames[f"drv/{t:05d}"] = driving[t]
                names.append(name)
            self.prepare_landmarks(data, frames)
            with open(data / "src_map_dict.pkl", "wb") as fh:
                pickle.dump(dict.fromkeys(names, 0), fh)
            try:
                train_name = conf["dataset"]["train_data"][0]
                conf["dataset"][train_name]["root"] = str(data)
            except (KeyError, IndexError, TypeError) as exc:
                raise ExternalBackboneError(
                    f"metaportrait: {config} has no dataset.<train_data[0]>.root entry"
                ) from exc
            cfg_path = tmp / "config.yaml"
            cfg_path.write_text(yaml.safe_dump(conf))
            self.run_script(
                ["--save_dir", str(out), "--config", str(cfg_path), "--ckpt", str(self.checkpoint)], tmp
            )
            results = [read_png(out / "output_256" / n) for n in names]
        return self._to_native(results)


ADAPTERS = {"fsrt": FSRTBackbone, "metaportrait": MetaPortraitBackbone, "emoportraits": EmoPortraitsBackbone}


def build_external(name: str, cfg: ExternalConfig | dict | None, device="cpu") -> ExternalBackbone:
    if name not in ADAPTERS:
        raise ExternalBackboneError(f"unknown external backbone '{name}'; known: {', '.join(ADAPTERS)}")
    ecfg = (
        cfg if isinstance(cfg, ExternalConfig) else from_dict(ExternalConfig, cfg or {}, f"backbones.{name}")
    )
    return ADAPTERS[name](ecfg, device)
