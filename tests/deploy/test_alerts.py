"""`promtool check rules` and `promtool test rules` on the committed rule file."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.ops
RULES = ROOT / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: run .ci/ops-tools.sh"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=RULES)


def test_rules_check_and_unit_tests(tools: object) -> None:
    checked = promtool("check", "rules", "streamsvc-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "streamsvc-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr
