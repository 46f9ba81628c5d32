"""The common clip record shared by every dataset loader, frame reading, and spreadsheet helpers.

Every loader (`samm`, `casme3`, `casme2`) returns a `ClipList` of `Clip` records; everything downstream
(splits, face crops, frame pairs, generation, recognition) only sees this record. Frame numbers
(`onset`, `apex`, `offset`) are the numbers written in the dataset's spreadsheet; `frame_paths` holds
the files of onset..offset in order, and `Clip.frame_index(n)` turns a frame number into a position.

Real-data quirks are collected in a `QuirkLog` while a loader runs and logged as one warning per kind
(with a count and examples) instead of one line per row, and they stay attached to the result
(`ClipList.issues`) so notebooks can show them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

LABELS3 = ("Negative", "Positive", "Surprise")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


class DataError(ValueError):
    """Unusable dataset input (missing file, wrong columns, unreadable frame); names the file."""


@dataclasses.dataclass
class Clip:
    dataset: str
    subject: str
    clip_id: str
    frame_paths: list[Path]
    onset: int
    apex: int
    offset: int
    emotion: str
    objective_class: str | None
    action_units: str
    label3: str | None
    fps: float
    frame_numbers: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.frame_paths = [Path(p) for p in self.frame_paths]
        if not self.frame_numbers:
            self.frame_numbers = [frame_number(p) for p in self.frame_paths]
        if len(self.frame_numbers) != len(self.frame_paths):
            raise DataError(
                f"clip {self.clip_id}: {len(self.frame_paths)} frames but {len(self.frame_numbers)} numbers"
            )
        if self.label3 is not None and self.label3 not in LABELS3:
            raise DataError(f"clip {self.clip_id}: label3 {self.label3!r} is not one of {LABELS3}")

    def __len__(self) -> int:
        return len(self.frame_paths)

    def frame_index(self, n: int) -> int:
        """Position in `frame_paths` of frame number `n` (the nearest earlier frame if `n` is missing)."""
        if not self.frame_numbers:
            raise DataError(f"clip {self.clip_id}: no frames")
        pos = int(np.searchsorted(self.frame_numbers, n, side="right")) - 1
        if pos < 0:
            raise DataError(
                f"clip {self.clip_id}: frame {n} is before its first frame {self.frame_numbers[0]}"
            )
        return pos

    @property
    def onset_index(self) -> int:
        return self.frame_index(self.onset)

    @property
    def apex_index(self) -> int:
        return self.frame_index(self.apex)

    @property
    def offset_index(self) -> int:
        return self.frame_index(self.offset)


class ClipList(list):
    """A list of clips with the loader's quirk report attached (`issues`: kind -> messages)."""

    def __init__(self, clips=(), issues: dict[str, list[str]] | None = None, source: str = ""):
        super().__init__(clips)
        self.issues = dict(issues or {})
        self.source = source


class QuirkLog:
    """Collects data quirks by kind and logs one summarised warning per kind."""

    def __init__(self, source: str):
        self.source = source
        self.items: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, message: str) -> None:
        self.items[kind].append(message)

    def flush(self, max_examples: int = 3) -> dict[str, list[str]]:
        for kind, msgs in self.items.items():
            examples = "; ".join(msgs[:max_examples]) + (" ..." if len(msgs) > max_examples else "")
            log.warning("%s: %d x %s: %s", self.source, len(msgs), kind, examples)
        return dict(self.items)


def frame_number(path: str | Path) -> int:
    """The integer after the last non-digit of the file stem: 006_05562.jpg -> 5562, img46 -> 46, 12 -> 12."""
    m = _LAST_INT.search(Path(path).stem)
    if m is None:
        raise DataError(f"{path}: cannot read a frame number from the file name")
    return int(m.group(1))


def list_frames(folder: Path) -> dict[int, Path]:
    """{frame number: path} for the images in `folder` (any zero padding).

    A number present under two names (`img5.jpg` and `img05.jpg`) is warned about, naming both, and
    the first name in sorted order is used (never whichever the file system lists first)."""
    out: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            try:
                n = frame_number(p)
            except DataError:
                continue
            if n in out:
                warnings.warn(
                    f"{folder}: frame {n} is present twice ({out[n].name}, {p.name}); using {out[n].name}",
                    stacklevel=2,
                )
                continue
            out[n] = p
    return dict(sorted(out.items()))


def normalise_text(value) -> str:
    """Strip, collapse inner whitespace and lowercase a spreadsheet cell (NaN -> '')."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return re.sub(r"\s+", " ", str(value)).strip().lower()


def parse_int(value) -> int | None:
    """An integer cell (1, 1.0, ' 12 ') or None for blanks and non-numbers ('/', '-')."""
    if value is None:
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else int(round(float(value)))
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+(\.0+)?", text) else None


def read_sheet(path: Path, sheet: str | None, header_first_cell: str = "subject"):
    """Read an annotation sheet, finding the header as the first row whose first cell is `Subject`.

    Returns a DataFrame whose columns are the header cells normalised (lowercase, single spaces).
    `sheet=None` takes the first sheet that has such a header.
    """
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: annotation spreadsheet not found")
    try:
        sheets = pd.read_excel(path, sheet_name=None, header=None, engine="openpyxl")
    except Exception as exc:  # openpyxl raises several types for a corrupt file
        raise DataError(f"{path}: cannot read as an .xlsx workbook: {exc}") from exc
    names = [sheet] if sheet in sheets else list(sheets)
    for name in names:
        raw = sheets[name]
        for i in range(min(len(raw), 60)):
            if normalise_text(raw.iat[i, 0]) == header_first_cell:
                header = [normalise_text(v) for v in raw.iloc[i]]
                body = raw.iloc[i + 1 :].reset_index(drop=True)
                body.columns = [h or f"unnamed_{k}" for k, h in enumerate(header)]
                body = body.dropna(how="all")
                return body, name
    raise DataError(
        f"{path}: no sheet has a header row starting with '{header_first_cell}' "
        f"(sheets: {list(sheets)}; looked for sheet {sheet!r} first)"
    )


def require_columns(df, path: Path, wanted: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Map canonical names to the sheet's actual column (aliases allowed); error lists every missing one."""
    found, missing = {}, []
    for key, aliases in wanted.items():
        col = next((a for a in aliases if a in df.columns), None)
        if col is None:
            missing.append(f"{key} (one of {list(aliases)})")
        else:
            found[key] = col
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the sheet has {list(df.columns)}")
    return found


def check_interval(onset: int, apex: int | None, offset: int, clip_id: str, quirks: QuirkLog) -> int:
    """Validate onset <= apex <= offset; a missing or outside apex falls back to the midpoint."""
    if apex is None or not onset <= apex <= offset:
        mid = (onset + offset) // 2
        quirks.add(
            "apex missing or outside onset..offset, using the midpoint", f"{clip_id} apex={apex} -> {mid}"
        )
        return mid
    return apex


def unique_id(clip_id: str, seen: Counter, quirks: QuirkLog) -> str:
    seen[clip_id] += 1
    if seen[clip_id] == 1:
        return clip_id
    new = f"{clip_id}_dup{seen[clip_id]}"
    quirks.add("duplicate clip id, suffixed", f"{clip_id} -> {new}")
    return new


def clip_from_row(
    dataset: str,
    subject: str,
    base_id: str,
    frames: dict[int, Path],
    onset: int,
    apex: int,
    offset: int,
    row,
    cols: dict[str, str],
    label3_map: dict[str, str],
    fps: float,
    seen: Counter,
    quirks: QuirkLog,
    objective_col: str | None = None,
) -> Clip | None:
    """The part every loader shares once a spreadsheet row is parsed: frames inside onset..offset,
    emotion and its 3-class label, a unique clip id. None (logged) when fewer than 2 frames exist."""
    numbers = [n for n in range(onset, offset + 1) if n in frames]
    expected = offset - onset + 1
    if len(numbers) < expected:
        quirks.add(
            "frames missing inside onset..offset", f"{base_id}: {expected - len(numbers)} of {expected}"
        )
    if len(numbers) < 2:
        quirks.add("fewer than 2 frames inside onset..offset, clip skipped", base_id)
        return None
    emotion = normalise_text(row[cols["emotion"]])
    if emotion not in label3_map:
        quirks.add("emotion outside the 3-class protocol, excluded from it", f"{base_id}: {emotion!r}")
    objective = row[objective_col] if objective_col else None
    aus = row[cols["aus"]]
    return Clip(
        dataset=dataset,
        subject=subject,
        clip_id=unique_id(base_id, seen, quirks),
        frame_paths=[frames[n] for n in numbers],
        frame_numbers=numbers,
        onset=onset,
        apex=apex,
        offset=offset,
        emotion=emotion,
        # NaN != NaN: empty spreadsheet cells arrive as float NaN.
        objective_class=None if objective is None or objective != objective else str(objective).strip(),
        action_units=str(aus).strip() if aus == aus else "",
        label3=label3_map.get(emotion),
        fps=fps,
    )


@dataclasses.dataclass
class SheetClips:
    """The clips one spreadsheet gives, collected row by row: what every loader keeps between rows (the
    dataset, its columns and 3-class map, the frame rate, the quirks met and the ids given so far)."""

    dataset: str
    sheet_path: Path
    cols: dict[str, str]
    label3_map: dict[str, str]
    fps: float
    quirks: QuirkLog
    objective_col: str | None = None
    seen: Counter = dataclasses.field(default_factory=Counter)
    clips: list[Clip] = dataclasses.field(default_factory=list)

    def add(
        self, subject: str, base_id: str, frames: dict[int, Path], onset: int, apex: int, offset: int, row
    ):
        """`clip_from_row` for one parsed row; the clip is kept unless the row had too few frames."""
        clip = clip_from_row(
            self.dataset, subject, base_id, frames, onset, apex, offset, row, self.cols, self.label3_map,
            self.fps, self.seen, self.quirks, objective_col=self.objective_col,
        )  # fmt: skip
        if clip is not None:
            self.clips.append(clip)

    def finish(self, frames_root: Path) -> ClipList:
        """The clips with the quirks met; an error naming the sheet when no row gave a usable clip."""
        if not self.clips:
            raise DataError(f"{self.sheet_path}: no usable clip (frames looked for under {frames_root})")
        return ClipList(self.clips, self.quirks.flush(), source=str(self.sheet_path))


def load_frames(
    clip: Clip, size: int | None = None, start: int | None = None, stop: int | None = None
) -> torch.Tensor:
    """Frames `clip.frame_paths[start:stop]` (positions, slice semantics) as float32 (T, 3, H, W) in [0, 1].

    Grayscale files come back as three equal channels; `size` resizes each frame to size x size
    (INTER_AREA), otherwise frames keep their stored size. Use `clip.frame_index(n)` for frame numbers.
    """
    import cv2

    paths = clip.frame_paths[start:stop]
    if not paths:
        raise DataError(f"clip {clip.clip_id}: no frames in positions [{start}:{stop}] of {len(clip)}")
    out = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)  # gray files are expanded to 3 equal channels
        if img is None:
            raise DataError(f"{p}: missing or unreadable frame (clip {clip.clip_id})")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if size is not None and img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        out.append(img)
    arr = np.stack(out).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def summary(clips: list[Clip]):
    """One-row-per-dataset summary: samples with a 3-class label, subjects, per-class counts, excluded."""
    import pandas as pd

    rows = []
    by_ds: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        by_ds[c.dataset].append(c)
    for ds, cs in by_ds.items():
        labelled = [c for c in cs if c.label3 is not None]
        counts = Counter(c.label3 for c in labelled)
        rows.append(
            {
                "dataset": ds,
                "clips": len(cs),
                "samples": len(labelled),
                "subjects": len({c.subject for c in labelled}),
                **{k: counts.get(k, 0) for k in LABELS3},
                "excluded": len(cs) - len(labelled),
            }
        )
    return pd.DataFrame(rows)
