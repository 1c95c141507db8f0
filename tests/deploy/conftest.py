"""The deployment tools (helm, kubeconform, compose-check), built by `.ci/ops-tools.sh` when missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT


@pytest.fixture(scope="session")
def tools() -> Path:
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "ops-tools.sh")], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])
