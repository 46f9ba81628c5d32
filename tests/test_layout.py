"""The library's layout: subpackages that match the architecture, no import cycle, no oversized module,
and the runner's dependency walk (which keys every cached stage) following imports through packages."""

from __future__ import annotations

from pathlib import Path

from magplus_lib.harness import runner
from magplus_lib.harness.profiles import REPO_ROOT

LIB = REPO_ROOT / "magplus_lib"
PACKAGES = ("harness", "data", "magnifier", "backbones", "evaluation")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _graph() -> dict[str, set[str]]:
    """module -> the library modules it imports (at any depth of the file), without its own packages."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = {d for d in runner._imported_modules(path) if d in mods and not name.startswith(d + ".")}
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_lives_in_an_architecture_package():
    top = sorted(p.name for p in LIB.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
    for pkg in PACKAGES:
        assert (LIB / pkg / "__init__.py").is_file()
        doc = (LIB / pkg / "__init__.py").read_text()
        assert doc.startswith('"""') and len(doc) > 80, f"{pkg}/__init__.py should say what the package holds"


def test_no_import_cycle_and_no_module_over_about_600_lines():
    assert _cycles(_graph()) == []
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: k for n, k in long.items() if k > 620} == {}


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_dependency_walk_follows_packages_and_submodule_imports(tmp_path):
    nb = tmp_path / "nb.py"
    nb.write_text(
        "from magplus_lib.data import splits\nfrom magplus_lib.harness.atomicio import write_json\n"
    )
    deps = {str(p.relative_to(REPO_ROOT)) for p in runner._module_dependencies(nb)}
    # the modules named, the packages their import runs, and what they import in turn
    assert {
        "magplus_lib/data/__init__.py",
        "magplus_lib/data/splits.py",
        "magplus_lib/data/clips.py",
        "magplus_lib/harness/__init__.py",
        "magplus_lib/harness/atomicio.py",
    } <= deps
    assert "magplus_lib/magnifier/training.py" not in deps
    # a package that re-exports (synthme) brings its modules along
    nb.write_text("from magplus_lib.data import synthme\n")
    deps = {str(p.relative_to(REPO_ROOT)) for p in runner._module_dependencies(nb)}
    assert {"magplus_lib/data/synthme/__init__.py", "magplus_lib/data/synthme/render.py"} <= deps
