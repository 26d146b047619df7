"""The layers, and what each may import (README, "Where things are").

From the bottom up: `relay` (the data plane), `control` (the control plane), `node` (one
node's processes: `relay serve`'s server as a library), `bench` (the measuring kit), `cli` (the
`relay` command, on top). Each package may import itself and the packages below it, never one
above: no cycle between packages, and the data plane runs without anything above it.

What counts as importing: every `import` and `from ... import` anywhere in a module (inside
functions and `if TYPE_CHECKING:` blocks too), the imports of the Cython sources compiled into
a package (ext/ is `relay._core`), and a process started by module path (`-m control.server`):
a dependency the code cannot run without. A dependency that no import states is refused
outright: `importlib.import_module`, `__import__`, `runpy` and entry-point groups, which would
let a package use one above it while looking as if it did not.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

ROOT = Path(__file__).resolve().parent.parent

LAYERS = ("relay", "control", "node", "bench", "cli")  # bottom first
SOURCES = {name: [ROOT / name] for name in LAYERS} | {"relay": [ROOT / "relay", ROOT / "ext"]}

# Ways to reach a module without an import statement.
HIDDEN = {"import_module", "__import__", "entry_points", "run_module", "run_path"}

CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import\b|c?import\s+([\w.]+))", re.M)


def allowed(package: str) -> set[str]:
    return set(LAYERS[: LAYERS.index(package) + 1])


def files(package: str) -> list[Path]:
    found = []
    for folder in SOURCES[package]:
        for pattern in ("*.py", "*.pyx", "*.pxi"):
            found += [f for f in folder.rglob(pattern) if "build" not in f.relative_to(ROOT).parts]
    return sorted(found)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for what the file imports, and for the modules it starts as `-m M`."""
    text = path.read_text()
    if path.suffix != ".py":
        for match in CYTHON_IMPORT.finditer(text):
            yield text.count("\n", 0, match.start()) + 1, match.group(1) or match.group(2)
        return
    tree = ast.parse(text, str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: within its own package
                continue
            yield node.lineno, node.module or ""
        elif isinstance(node, ast.List | ast.Tuple):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for flag, module in zip(words, words[1:], strict=False):
                if flag == "-m" and isinstance(module, str):
                    yield node.lineno, module


def hidden(path: Path) -> Iterator[tuple[int, str]]:
    if path.suffix != ".py":
        return
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in HIDDEN:
                yield node.lineno, name
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(m == "runpy" or m.startswith("runpy.") for m in modules):
                yield node.lineno, "runpy"


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_only_itself_and_those_below_it(package: str) -> None:
    may = allowed(package)
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files(package)
        for line, module in imports(path)
        if module.split(".")[0] in LAYERS and module.split(".")[0] not in may
    ]
    assert files(package), f"no sources found for {package}"
    assert not wrong, f"{package} may import only {sorted(may)}; it imports:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_reaches_a_module_without_an_import(package: str) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {how}"
        for path in files(package)
        for line, how in hidden(path)
    ]
    assert not found, "import what is used, where the layering can see it:\n" + "\n".join(found)


def test_the_relay_command_is_the_top_package_and_nothing_plugs_into_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"relay": "cli.main:main"}
    assert "entry-points" not in project  # the command's parser is whole in cli/main.py


def test_the_check_sees_an_import_against_the_layering(tmp_path: Path) -> None:
    """The walk finds imports wherever they are, so a breach cannot hide from it."""
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import cli.main\n"
        "def f():\n    from node import serve\n"
        "    return ['python', '-m', 'control.server']\n"
        "import importlib\nimportlib.import_module('bench.run')\n"
    )
    found = sorted(m for _, m in imports(module))
    assert found == ["cli.main", "control.server", "importlib", "node", "typing"]
    assert [how for _, how in hidden(module)] == ["import_module"]
    pyx = tmp_path / "m.pyx"
    pyx.write_text("from netio cimport *\nfrom control.settings import Settings\n")
    assert [m for _, m in imports(pyx)] == ["netio", "control.settings"]
