"""CAS(ME)^3 Part A loader: `part_A/spNO.<k>/<letter>/color/<n>.jpg` + the JpgIndex label spreadsheet.

Layout and quirks as in reference/datasets.md: sheet `label` (other sheets empty), frames are whole
videos with unpadded numbers from 1, so one video letter can hold several micro-expressions (clip ids
are `<subject>_<letter>_<onset>`, made unique), one letter is written uppercase, apex may lie outside
onset..offset (midpoint, warned), offset 0 cannot be recovered (clip dropped, warned), emotions carry
case and spaces ('Others'). The per-clip distribution `Part_A_ME_clip/frame/<Subject>_<letter>_<Onset>/`
is read too. Emotions map to the MEGC 2019 3-class protocol; `others` is excluded.
"""

from __future__ import annotations

from pathlib import Path

from magplus_lib.data.clips import (
    ClipList,
    DataError,
    QuirkLog,
    SheetClips,
    check_interval,
    list_frames,
    parse_int,
    read_sheet,
    require_columns,
)

SPREADSHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
SHEET = "label"
FPS = 30.0
EMOTIONS = ("happy", "surprise", "disgust", "fear", "anger", "sad", "others")
LABEL3 = {
    "happy": "Positive",
    "surprise": "Surprise",
    "disgust": "Negative",
    "fear": "Negative",
    "anger": "Negative",
    "sad": "Negative",
    "others": None,
}
COLUMNS = {
    "subject": ("subject",),
    "filename": ("filename",),
    "onset": ("onset",),
    "apex": ("apex",),
    "offset": ("offset",),
    "aus": ("au", "action units"),
    "emotion": ("emotion",),
}


def find_spreadsheet(root: Path) -> Path:
    for cand in (root / SPREADSHEET, root.parent / SPREADSHEET):
        if cand.is_file():
            return cand
    found = sorted(
        p for p in list(root.glob("*.xlsx")) + list(root.parent.glob("*.xlsx")) if "label" in p.name.lower()
    )
    if found:
        return found[0]
    raise DataError(f"{root}: no CAS(ME)^3 label spreadsheet ({SPREADSHEET}) in the folder or its parent")


def _video_folder(root: Path, subject: str, letter: str) -> Path | None:
    for base in (root / "part_A", root):
        for name in (letter.lower(), letter):
            cand = base / subject / name / "color"
            if cand.is_dir():
                return cand
    return None


def load_casme3(root: str | Path, spreadsheet: str | Path | None = None, fps: float = FPS) -> ClipList:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: CAS(ME)^3 root folder does not exist")
    sheet_path = Path(spreadsheet) if spreadsheet else find_spreadsheet(root)
    df, _ = read_sheet(sheet_path, SHEET)
    cols = require_columns(df, sheet_path, COLUMNS)
    objective_col = next((c for c in ("objective class", "objective classes") if c in df.columns), None)
    per_clip_root = root / "Part_A_ME_clip" / "frame"
    sheet = SheetClips(
        "casme3", sheet_path, cols, LABEL3, fps, QuirkLog(f"CAS(ME)^3 {sheet_path.name}"), objective_col
    )
    quirks = sheet.quirks
    frame_cache: dict[Path, dict[int, Path]] = {}
    for row_no, row in df.iterrows():
        subject = str(row[cols["subject"]]).strip() if row[cols["subject"]] == row[cols["subject"]] else ""
        letter_raw = (
            str(row[cols["filename"]]).strip() if row[cols["filename"]] == row[cols["filename"]] else ""
        )
        if not subject or not letter_raw:
            quirks.add("row without subject or filename, skipped", f"data row {row_no + 1}")
            continue
        letter = letter_raw.lower()
        if letter != letter_raw:
            quirks.add("uppercase video letter, lowercased", f"{subject} {letter_raw!r}")
        onset, apex, offset = (parse_int(row[cols[k]]) for k in ("onset", "apex", "offset"))
        base_id = f"{subject}_{letter}_{onset}"
        if onset is None or offset is None or offset <= 0 or offset < onset:
            quirks.add("onset/offset missing, zero or reversed, clip dropped", f"{base_id} offset={offset}")
            continue
        apex = check_interval(onset, apex, offset, base_id, quirks)
        folder = per_clip_root / f"{subject}_{letter_raw}_{onset}"
        if not folder.is_dir():
            folder = per_clip_root / f"{subject}_{letter}_{onset}"
        if not folder.is_dir():
            folder = _video_folder(root, subject, letter)
        if folder is None:
            quirks.add("video folder missing, clip skipped", f"{root}/part_A/{subject}/{letter}/color")
            continue
        if folder not in frame_cache:
            frame_cache[folder] = list_frames(folder)
        frames = frame_cache[folder]
        sheet.add(subject, base_id, frames, onset, apex, offset, row)
    return sheet.finish(root)
