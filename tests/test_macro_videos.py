"""The user's real macro-expression clips (magplus_lib.data.macro_videos): layout, readers, apex, errors."""

import cv2
import numpy as np
import pytest

from magplus_lib.backbones import competence
from magplus_lib.backbones.training import SourceCopy
from magplus_lib.data.clips import DataError
from magplus_lib.data.macro_videos import find_clips, load_macro_videos, read_clip

CENTRE = {"detector": "center", "fallback_fraction": 1.0}


def clip_frames(seed: int, n: int = 6, size: int = 48, peak: int = 3) -> list[np.ndarray]:
    """A blurred random texture whose content shifts right by up to 4 px, most at frame `peak`."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), 2)
    base = np.clip((base - 128) * 4 + 128, 0, 255).astype(np.uint8)
    shifts = [0, 1, 2, 4, 2, 1][:n] if peak == 3 else [0, 4, 1, 1, 1, 1][:n]
    return [np.roll(base, s, axis=1) for s in shifts]


def write_tree(root, kinds=("avi", "frames")):
    for k, kind in enumerate(kinds):
        ident = root / f"p{k}"
        ident.mkdir(parents=True)
        frames = clip_frames(k)
        if kind == "frames":
            (ident / "c").mkdir()
            for t, f in enumerate(frames):
                cv2.imwrite(str(ident / "c" / f"{t + 1}.png"), f)
        else:
            w = cv2.VideoWriter(str(ident / "c.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (48, 48))
            for f in frames:
                w.write(f)
            w.release()
    return root


def test_find_clips_lists_videos_and_frame_folders_per_identity(tmp_path):
    write_tree(tmp_path)
    (tmp_path / "p0" / "notes.txt").write_text("not a clip")
    assert [(i, p.name) for i, p in find_clips(tmp_path)] == [("p0", "c.avi"), ("p1", "c")]


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda r: None, "does not exist"),
        (lambda r: r.mkdir(), "holds no"),
        (lambda r: write_tree(r, kinds=("frames",)), "one identity"),
    ],
)
def test_find_clips_errors_name_the_folder(tmp_path, make, words):
    root = tmp_path / "macro"
    make(root)
    with pytest.raises(DataError, match=words) as err:
        find_clips(root)
    assert str(root) in str(err.value)


def test_read_clip_reads_frames_in_numeric_order(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    for t in (1, 2, 10):  # 10 after 2, not after 1
        cv2.imwrite(str(folder / f"{t}.png"), np.full((8, 8, 3), t * 10, np.uint8))
    assert read_clip(folder)[:, 0, 0, 0].tolist() == [10, 20, 100]


def test_a_corrupt_frame_or_video_is_named(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="2.png"):
        read_clip(folder)
    bad = tmp_path / "v.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="v.mp4"):
        read_clip(bad)


def test_load_finds_the_apex_keeps_size_and_greys(tmp_path):
    write_tree(tmp_path)
    colour = load_macro_videos(tmp_path, 32, CENTRE, max_frames=6)
    assert [c.subject for c in colour] == ["p0", "p1"]
    assert all(c.apex == 3 for c in colour)  # the 4 px shift, read by Farneback
    assert colour[1].frames.shape == (6, 3, 32, 32)
    grey = load_macro_videos(tmp_path, 32, CENTRE, max_frames=6, grey=True)
    assert competence.greyness(grey[1].frames) == 0.0 and competence.greyness(colour[1].frames) > 0.05
    # the competence check runs on them: copying the source gains nothing and transfers no motion
    rows = competence.per_clip(SourceCopy(), colour)
    assert (rows["recon_psnr"] == rows["copy_psnr"]).all() and (rows["transfer_mmr"] < 0.05).all()
