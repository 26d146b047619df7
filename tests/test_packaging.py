"""The wheel, as a user gets it (README.md, "Install and deploy"): built from a copy of the
source tree with `pip wheel`, installed in a fresh virtual environment with its dependencies
from pip's index, and `relay demo` run from there, in a directory outside the source tree, so
that nothing is imported from the checkout.

It checks what pyproject.toml lists: the compiled core (relay/_core*.so) and the benchmark's
compiled modules that `relay demo` plays the webinar with, every package of the source tree
(a package missing from `[tool.setuptools] packages` is missing from the wheel, and only an
installed wheel shows it), the store's schema, and the web pages' assets (control/web/assets,
whatever is there when the test runs).

It needs pip's index (the build's isolated environment and relay's dependencies come from
there; pip's cache serves what it has): without it the test skips, unless
RELAY_REQUIRE_PACKAGING=1 (scripts/test sets it as root) makes that a failure. It skips in the
debug pass of scripts/test (RELAY_CORE_DIR set): the wheel carries its own release build, so a
second run would test nothing new.

Time: compiling the core is most of it. The build runs setup.py's three extensions in parallel
(DIST_EXTRA_CONFIG names a distutils config file with `[build_ext] parallel`, for this build
only), which takes the compile from the sum of the three to the core's alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("relay", "control", "node", "bench", "cli")  # every package below these is shipped
COMPILED = ("relay/_core", "bench/_loadgen", "bench/_ceiling")  # setup.py's extensions
ASSETS = Path("control", "web", "assets")
# Files the code reads beside its modules (pyproject.toml's package-data), where the tree has them.
DATA = ("relay/py.typed", "relay/_core.pyi", "control/store/schema.sql", "cli/demo_chime.bin")
REQUIRE_ENV = "RELAY_REQUIRE_PACKAGING"

# What a clean clone does not have: build outputs, environments, caches (.gitignore).
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.so",
    "*.egg-info",
    "__pycache__",
    "node_modules",
    ".*_cache",
    ".hypothesis",
    ".benchmarks",
    ".schemathesis",
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("RELAY_CORE_DIR")),
    reason="the debug pass (RELAY_CORE_DIR): the wheel carries its own release build, which "
    "the release pass has tested",
)


def _index_url() -> str:
    """The index pip installs from: PIP_INDEX_URL, pip's configuration, or PyPI."""
    url = os.environ.get("PIP_INDEX_URL", "")
    if not url:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        url = done.stdout.strip() if done.returncode == 0 else ""
    return url or "https://pypi.org/simple/"


def _need_index() -> None:
    """Skip (or fail, with RELAY_REQUIRE_PACKAGING=1) when pip's index cannot be reached."""
    url = _index_url().rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(url, timeout=15) as answer:
            answer.read(1)
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        why = f"pip's index ({url}) cannot be reached: {exc}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{why}; {REQUIRE_ENV}=1 requires it", pytrace=False)
        pytest.skip(f"{why}; set {REQUIRE_ENV}=1 to make this a failure")


def _clean_env(tmp: Path) -> dict[str, str]:
    """The environment without anything that would lead Python back to the checkout, its
    virtual environment or the debug build."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "RELAY_CORE_DIR", "LD_PRELOAD")
    }
    config = tmp / "build.cfg"
    config.write_text(f"[build_ext]\nparallel = {os.cpu_count() or 1}\n")
    env["DIST_EXTRA_CONFIG"] = str(config)  # read by setuptools' distutils: this build only
    return env


def _run(what: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{what} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


def _packages(tree: Path) -> list[Path]:
    return sorted(
        init.parent.relative_to(tree)
        for top in PACKAGES
        for init in (tree / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    )


def test_the_wheel_installs_in_a_fresh_environment_and_runs_the_demo(tmp_path: Path) -> None:
    _need_index()
    env = _clean_env(tmp_path)
    took: dict[str, float] = {}
    started = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal started
        took[phase] = time.monotonic() - started
        started = time.monotonic()

    # The build: from a copy of the source tree, as a clean clone has it.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist)]
    _run("pip wheel", [*pip_wheel, str(source)], tmp_path, env, 600)
    wheels = list(dist.glob("relay-*.whl"))
    assert len(wheels) == 1, f"pip wheel built {wheels}"
    lap("build the wheel")

    # A fresh virtual environment, the wheel and its dependencies in it.
    venv = tmp_path / "venv"
    _run("python -m venv", [sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    python, relay = venv / "bin" / "python", venv / "bin" / "relay"
    install = [str(python), "-m", "pip", "install", "-q", str(wheels[0])]
    _run("pip install", install, tmp_path, env, 600)
    lap("install it")

    # What the installed package holds.
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run("site-packages", [str(python), "-c", where], tmp_path, env, 60).strip())
    assert site.is_relative_to(venv), site
    for module in COMPILED:
        found = list(site.glob(f"{module}*.so"))
        assert found, f"the installed package has no {module}*.so (setup.py's extension)"
    # Compared with the copy the wheel was built from: the checkout may change meanwhile.
    missing = [str(p) for p in _packages(source) if not (site / p / "__init__.py").is_file()]
    assert not missing, f"packages not in the wheel (pyproject.toml, [tool.setuptools]): {missing}"
    for data in DATA:
        if (source / data).is_file():
            assert (site / data).is_file(), f"{data} is not in the wheel (package-data)"
    assets = [p.relative_to(source) for p in (source / ASSETS).rglob("*") if p.is_file()]
    for asset in assets:
        installed = site / asset
        assert installed.is_file(), f"{asset} is not in the wheel"
        assert installed.read_bytes() == (source / asset).read_bytes(), installed

    # `relay demo` from the fresh environment, in a directory outside the source tree.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    demo = [str(relay), "demo", "--attendees", "3", "--seconds", "1"]
    out = _run("relay demo", demo, elsewhere, env, 180)
    lap("relay demo")
    assert "1 presenter and 3 attendees joined over the API" in out, out
    assert "the host ended the webinar; its usage record:" in out, out
    usage = dict(
        line.split(None, 1) for line in out.split("its usage record:")[1].strip().splitlines()
    )
    assert int(usage["total_participants"].replace(",", "")) >= 4, out  # the 3, a presenter
    assert "webinar" in usage["features"], out
    modules = ("relay._core", "bench._loadgen", "control.web", "cli.main")
    imported = f"import importlib; print(*(importlib.import_module(m).__file__ for m in {modules}))"
    for path in _run("imports", [str(python), "-c", imported], elsewhere, env, 60).split():
        assert Path(path).is_relative_to(site), f"{path} is not from the installed wheel"

    summary = ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in took.items())
    print(f"packaging: {summary} ({len(assets)} web assets)")
