"""README numbers come from results files: include blocks are filled from them and checked."""

import pytest

from magplus_lib.harness import readme

README = (
    "intro\n<!-- include results/t.md -->\nold\n<!-- end include -->\n"
    "middle\n<!-- include b.md -->\n<!-- end include -->\n"
)


def test_blocks_are_filled_from_their_files_and_the_rest_is_kept(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "t.md").write_text("| a |\n|---|\n| 1.00 |\n\n")
    (tmp_path / "b.md").write_text("b")
    path = tmp_path / "README.md"
    path.write_text(README)
    assert readme.stale_blocks(path, tmp_path) == ["results/t.md", "b.md"]
    assert readme.refresh(path, tmp_path) == ["results/t.md", "b.md"]
    assert path.read_text() == (
        "intro\n<!-- include results/t.md -->\n| a |\n|---|\n| 1.00 |\n<!-- end include -->\n"
        "middle\n<!-- include b.md -->\nb\n<!-- end include -->\n"
    )
    assert readme.stale_blocks(path, tmp_path) == [] and readme.refresh(path, tmp_path) == []


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(README)
    with pytest.raises(FileNotFoundError, match="results/t.md"):
        readme.stale_blocks(path, tmp_path)


def test_the_repository_readme_and_findings_match_the_committed_results():
    for page in readme.DOCUMENTS:
        assert readme.stale_blocks(readme.REPO_ROOT / page) == [], (
            f"{page}: run `make readme` after regenerating results"
        )
