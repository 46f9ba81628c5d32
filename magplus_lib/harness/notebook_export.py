"""Executed notebooks as small Markdown pages a reader opens without running anything.

`make paper` leaves one executed notebook per stage in `<results>/executed/` (6-7 MB on the default
profile, full of base64 figures, kernel metadata and progress bars). `export_all` turns each into
`<results>/notebooks/<stage>.md` (GitHub renders it): Markdown cells as they are, code cells fenced,
printed output and tables kept, and every figure written beside it as a palette PNG at most
`MAX_WIDTH` pixels wide. Left out because they change from run to run or only make noise: cell
metadata and execution counts, the kernel's stderr (tqdm bars, warnings) and figures' vector copies.
A notebook that failed is refused: a page must show what a finished run computed.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from magplus_lib.harness.atomicio import write_bytes, write_text_if_changed

MAX_WIDTH = 720  # px: readable on a laptop screen at a fraction of a 150-dpi figure's bytes
PALETTE_COLOURS = 256
_STYLE = re.compile(r"<style[^>]*>.*?</style>\s*", re.S)


class ExportError(ValueError):
    """An executed notebook that cannot be turned into a page (unreadable, or a failed run)."""


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def small_png(data: bytes, max_width: int = MAX_WIDTH) -> bytes:
    """A figure's PNG at most `max_width` wide, reduced to a 256-colour palette (deterministic)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    if img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)), Image.Resampling.LANCZOS)
    small = img.quantize(PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _fence(text: str, lang: str = "") -> str:
    text = text.rstrip("\n")
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text}\n{ticks}"


def _output_blocks(output: dict, figure) -> list[str]:
    kind = output.get("output_type")
    if kind == "stream":
        return [_fence(_text(output["text"]))] if output.get("name") == "stdout" else []
    if kind == "error":
        raise ExportError(f"an {output.get('ename')} was raised: {output.get('evalue')}")
    data = output.get("data", {})
    if "image/png" in data:
        return [figure(base64.b64decode(_text(data["image/png"])))]
    if "text/markdown" in data:
        return [_text(data["text/markdown"]).strip()]
    if "text/html" in data and "<table" in _text(data["text/html"]):
        return [_STYLE.sub("", _text(data["text/html"])).strip()]
    if "text/plain" in data:
        return [_fence(_text(data["text/plain"]))]
    return []


def to_markdown(notebook: dict, stem: str, image_dir: str) -> tuple[str, dict[str, bytes]]:
    """(page, {relative image path: PNG bytes}) for one executed notebook."""
    images: dict[str, bytes] = {}

    def figure(data: bytes) -> str:
        name = f"{image_dir}/{stem}-{len(images) + 1:02d}.png"
        images[name] = small_png(data)
        return f"![figure {len(images)}]({name})"

    parts = [
        f"<!-- executed notebook {stem}, exported by `make paper` (magplus_lib.harness.notebook_export); "
        "do not edit -->"
    ]
    for i, cell in enumerate(notebook.get("cells", [])):
        source = _text(cell.get("source", "")).strip()
        if cell.get("cell_type") == "markdown":
            parts.append(source)
        elif cell.get("cell_type") == "code":
            tags = cell.get("metadata", {}).get("tags", [])
            if source:
                label = (
                    "parameters of this run"
                    if "injected-parameters" in tags
                    else "the notebook's defaults, replaced by the run's below"
                    if "parameters" in tags
                    else ""
                )
                parts.append((f"*{label}*\n\n" if label else "") + _fence(source, "python"))
            for output in cell.get("outputs", []):
                try:
                    parts.extend(_output_blocks(output, figure))
                except ExportError as exc:
                    raise ExportError(f"{stem}: cell {i}: {exc}") from None
    return "\n\n".join(p for p in parts if p) + "\n", images


def export_notebook(ipynb: Path, out_dir: Path) -> Path:
    """Write `out_dir/<stem>.md` and its figures under `out_dir/img/`; figures of an earlier export of
    the same notebook that this one no longer has are removed."""
    try:
        notebook = json.loads(Path(ipynb).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{ipynb}: not a readable notebook ({exc})") from None
    stem = Path(ipynb).stem
    page, images = to_markdown(notebook, stem, "img")
    for old in (out_dir / "img").glob(f"{stem}-[0-9][0-9].png"):
        if f"img/{old.name}" not in images:
            old.unlink()
    for name, data in images.items():
        path = out_dir / name
        if not path.is_file() or path.read_bytes() != data:
            write_bytes(path, data)
    write_text_if_changed(out_dir / f"{stem}.md", page)  # an unchanged page keeps its mtime
    return out_dir / f"{stem}.md"


def export_all(results: Path) -> list[Path]:
    """Every finished notebook of `results/executed` as a page in `results/notebooks`; pages of
    notebooks no longer there are removed."""
    executed = sorted(p for p in (Path(results) / "executed").glob("*.ipynb") if not p.name.startswith("."))
    executed = [p for p in executed if not p.stem.endswith(".FAILED")]
    if not executed:
        raise ExportError(f"{results}/executed: no executed notebooks (run make paper first)")
    out_dir = Path(results) / "notebooks"
    (out_dir / "img").mkdir(parents=True, exist_ok=True)
    keep = {p.stem for p in executed}
    for page in out_dir.glob("*.md"):
        if page.stem not in keep:
            page.unlink()
            for img in (out_dir / "img").glob(f"{page.stem}-[0-9][0-9].png"):
                img.unlink()
    return [export_notebook(p, out_dir) for p in executed]
