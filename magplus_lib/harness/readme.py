"""README (and docs/findings.md) blocks copied from results files, so no number in them is typed by hand.

A block is ``<!-- include PATH -->`` on its own line, the file's text, then ``<!-- end include -->``;
PATH is relative to the repository root. `refresh` rewrites every block from its file (`make readme`),
`stale_blocks` names the blocks that differ from their files (a test keeps the README in step).
"""

from __future__ import annotations

import re
from pathlib import Path

from magplus_lib.harness.atomicio import write_text
from magplus_lib.harness.profiles import REPO_ROOT

DOCUMENTS = ("README.md", "docs/findings.md")  # the pages `make readme` keeps in step with results/
BLOCK = re.compile(r"(<!-- include (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def _content(path: str, root: Path) -> str:
    file = root / path
    if not file.is_file():
        raise FileNotFoundError(f"README include {path}: no such file under {root}")
    return file.read_text().rstrip("\n") + "\n"


def render(text: str, root: Path = REPO_ROOT) -> str:
    """`text` with every include block's body replaced by its file's current text."""
    return BLOCK.sub(lambda m: m.group(1) + _content(m.group("path"), root) + m.group(4), text)


def stale_blocks(readme: Path = REPO_ROOT / "README.md", root: Path = REPO_ROOT) -> list[str]:
    """Paths of the include blocks whose body differs from their file."""
    return [
        m.group("path")
        for m in BLOCK.finditer(readme.read_text())
        if m.group("body") != _content(m.group("path"), root)
    ]


def refresh(readme: Path = REPO_ROOT / "README.md", root: Path = REPO_ROOT) -> list[str]:
    """Rewrite the stale blocks (atomically); returns their paths."""
    stale = stale_blocks(readme, root)
    if stale:
        write_text(readme, render(readme.read_text(), root))
    return stale
