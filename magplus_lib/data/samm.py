"""SAMM loader: `SAMM/<subject 3 digits>/<Filename>/<subject>_<frame>.jpg` + `SAMM_Micro_FACS_Codes_v2.xlsx`.

Layout and quirks as in reference/datasets.md: the `MICRO_ONLY` sheet may carry a 13-row preamble (the
header is found by scanning for `Subject`), frame files use 4- or 5-digit padding (numbers are parsed,
not formatted), an apex can be missing or outside onset..offset (midpoint, warned), an offset can be
wrong (the clip folder holds exactly onset..offset, so its last frame is used, warned), emotions carry
stray spaces and case. Emotions map to the MEGC 2019 3-class protocol; `Other` is excluded.
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

SPREADSHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"
SHEET = "MICRO_ONLY"
FPS = 200.0
EMOTIONS = ("happiness", "surprise", "anger", "contempt", "disgust", "fear", "sadness", "other")
LABEL3 = {
    "happiness": "Positive",
    "surprise": "Surprise",
    "anger": "Negative",
    "contempt": "Negative",
    "disgust": "Negative",
    "fear": "Negative",
    "sadness": "Negative",
    "other": None,
}
COLUMNS = {
    "subject": ("subject",),
    "filename": ("filename",),
    "onset": ("onset frame", "onset"),
    "apex": ("apex frame", "apex"),
    "offset": ("offset frame", "offset"),
    "aus": ("action units", "au"),
    "emotion": ("estimated emotion", "emotion"),
}


def find_spreadsheet(root: Path) -> Path:
    """The spreadsheet beside the subject folders' parent: in root, root/SAMM (where the frames may
    be) or root's parent, by its official name or any .xlsx whose name says SAMM."""
    folders = (root, root / "SAMM", root.parent)
    for cand in (f / SPREADSHEET for f in folders):
        if cand.is_file():
            return cand
    for folder in folders[:2]:
        found = sorted(p for p in folder.glob("*.xlsx") if "samm" in p.name.lower())
        if found:
            return found[0]
    raise DataError(
        f"{root}: no SAMM spreadsheet ({SPREADSHEET}) in {root}, {root / 'SAMM'} or {root.parent}"
    )


def find_frames_root(root: Path) -> Path:
    """The folder that holds the 3-digit subject folders (root/SAMM, root/SAMM_CROP or root itself)."""
    for cand in (root / "SAMM", root / "SAMM_CROP", root):
        if cand.is_dir() and any(p.is_dir() and p.name.isdigit() for p in cand.iterdir()):
            return cand
    raise DataError(f"{root}: no SAMM frame tree (expected {root}/SAMM/<subject>/<clip>/*.jpg)")


def load_samm(root: str | Path, spreadsheet: str | Path | None = None, fps: float = FPS) -> ClipList:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: SAMM root folder does not exist")
    sheet_path = Path(spreadsheet) if spreadsheet else find_spreadsheet(root)
    frames_root = find_frames_root(root)
    df, _ = read_sheet(sheet_path, SHEET)
    cols = require_columns(df, sheet_path, COLUMNS)
    objective_col = next((c for c in ("objective classes", "objective class") if c in df.columns), None)
    sheet = SheetClips(
        "samm", sheet_path, cols, LABEL3, fps, QuirkLog(f"SAMM {sheet_path.name}"), objective_col
    )
    quirks = sheet.quirks
    for row_no, row in df.iterrows():
        where = f"row {row_no + 1} of the data"
        subj_num = parse_int(row[cols["subject"]])
        filename = (
            str(row[cols["filename"]]).strip() if row[cols["filename"]] == row[cols["filename"]] else ""
        )
        if subj_num is None or not filename:
            quirks.add("row without subject or filename, skipped", where)
            continue
        subject = f"{subj_num:03d}"
        onset, apex, offset = (parse_int(row[cols[k]]) for k in ("onset", "apex", "offset"))
        folder = frames_root / subject / filename
        if not folder.is_dir():
            quirks.add("clip folder missing, clip skipped", str(folder))
            continue
        frames = list_frames(folder)
        if not frames:
            quirks.add("clip folder without frames, clip skipped", str(folder))
            continue
        if onset is None:
            quirks.add("onset missing, using the first frame in the folder", filename)
            onset = min(frames)
        if offset is None or offset < onset:
            new = max(frames)
            quirks.add(
                "offset missing or before onset, using the last frame in the folder",
                f"{filename} {offset} -> {new}",
            )
            offset = new
        apex = check_interval(onset, apex, offset, filename, quirks)
        sheet.add(subject, filename, frames, onset, apex, offset, row)
    return sheet.finish(frames_root)
