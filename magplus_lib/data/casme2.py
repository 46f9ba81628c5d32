"""CASME II loader (optional, for the MEGC 2019 composite): `CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`.

Spreadsheet `CASME2-coding-20140508.xlsx` (header on row 1): Subject, Filename, OnsetFrame, ApexFrame,
OffsetFrame, Action Units, Estimated Emotion; apex '/' falls back to the midpoint (warned). The cropped
copy `Cropped/sub01/EP02_01f/reg_img46.jpg` is read when the raw tree is absent. 3-class mapping of
MEGC 2019: happiness -> Positive, surprise -> Surprise, disgust/repression -> Negative, rest excluded.
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

SPREADSHEET = "CASME2-coding-20140508.xlsx"
FPS = 200.0
LABEL3 = {"happiness": "Positive", "surprise": "Surprise", "disgust": "Negative", "repression": "Negative"}
COLUMNS = {
    "subject": ("subject",),
    "filename": ("filename",),
    "onset": ("onsetframe", "onset frame"),
    "apex": ("apexframe", "apex frame"),
    "offset": ("offsetframe", "offset frame"),
    "aus": ("action units",),
    "emotion": ("estimated emotion",),
}


def load_casme2(root: str | Path, spreadsheet: str | Path | None = None, fps: float = FPS) -> ClipList:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: CASME II root folder does not exist")
    sheet_path = Path(spreadsheet) if spreadsheet else root / SPREADSHEET
    df, _ = read_sheet(sheet_path, None)
    cols = require_columns(df, sheet_path, COLUMNS)
    frames_root = next(
        (p for p in (root / "CASME2_RAW_selected", root / "Cropped", root) if p.is_dir()), root
    )
    sheet = SheetClips("casme2", sheet_path, cols, LABEL3, fps, QuirkLog(f"CASME II {sheet_path.name}"), None)
    quirks = sheet.quirks
    for _, row in df.iterrows():
        subj = parse_int(row[cols["subject"]])
        subject = f"sub{subj:02d}" if subj is not None else str(row[cols["subject"]]).strip()
        filename = str(row[cols["filename"]]).strip()
        onset, apex, offset = (parse_int(row[cols[k]]) for k in ("onset", "apex", "offset"))
        if onset is None or offset is None or offset < onset:
            quirks.add("onset/offset missing or reversed, clip dropped", f"{subject}/{filename}")
            continue
        apex = check_interval(onset, apex, offset, f"{subject}/{filename}", quirks)
        folder = frames_root / subject / filename
        if not folder.is_dir():
            quirks.add("clip folder missing, clip skipped", str(folder))
            continue
        frames = list_frames(folder)
        sheet.add(subject, f"{subject}_{filename}", frames, onset, apex, offset, row)
    return sheet.finish(frames_root)
