"""schemathesis against the OpenAPI description of a running `relay serve`: a thousand generated
requests over every operation (valid, invalid, stateful sequences), with the operator token; not one
may be answered with a server error (docs/RELIABILITY.md, "Password guessing" and "Bad input").
Skipped when schemathesis is not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_serve import start_serve, stop_serve

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed")
    serve = start_serve(tmp_path / "data", 1)
    try:
        done = subprocess.run(
            [st, "run", f"{serve.url}/openapi.json", "--checks", "not_a_server_error"]
            + ["--header", f"Authorization: Bearer {serve.token}"]
            + ["--max-examples", "25", "--seed", "1", "--request-timeout", "10"]
            # Event streams never end by themselves: tests/test_web.py tests them. Draining
            # the node would answer every later join 503 `draining`, as it should
            # (tests/test_nodes.py tests it).
            + ["--exclude-path-regex", "/events$|/drain$"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop_serve(serve)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "generated" in done.stdout and "ST101" not in done.stdout
