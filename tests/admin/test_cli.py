"""Every operator command has `--help`, usage errors exit 2, user errors exit 1 with one line and no
traceback, and `--command-config` reaches the Kafka clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.admin.support import streamsvc_cli
from tests.support import ROOT

COMMANDS = [
    ["replay"],
    ["reset-app"],
    ["dlq"],
    ["dlq", "inspect"],
    ["dlq", "redrive"],
    ["topics"],
    ["topics", "plan"],
    ["topics", "create"],
    ["topics", "describe"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help(capsys, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = streamsvc_cli(capsys, *command, "--help")
    assert code == 0 and "usage: streamsvc" in out
    if command[0] in ("replay", "reset-app"):
        assert "exit codes" in out and "--to-datetime" in out and "--command-config" in out


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--topic", "t", "--to-earliest"],  # no --group
        ["replay", "--group", "g", "--topic", "t"],  # no scenario
        ["replay", "--group", "g", "--topic", "t", "--to-earliest", "--to-latest"],  # two scenarios
        ["replay", "--group", "g", "--topic", "t", "--to-earliest", "--dry-run", "--execute"],
        ["replay", "--group", "g", "--topic", "t", "--all-topics", "--to-earliest"],
    ],
)
def test_usage_errors_exit_2(capsys, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    code, _, err = streamsvc_cli(capsys, *args)
    assert code == 2 and "usage:" in err


def test_user_errors_are_one_line(bootstrap: str, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (["replay", "--group", "g", "--topic", "t:x", "--to-earliest"], "Invalid partition 'x'"),
        (["replay", "--group", "g", "--topic", "t", "--to-offset", "ten"], "whole number"),
        (["replay", "--group", "g", "--topic", "t", "--by-duration", "1h"], "cannot parse duration"),
        (["replay", "--group", "g", "--from-file", str(tmp_path / "none.csv")], "does not exist"),
        (["reset-app", str(tmp_path / "none.py")], "does not exist"),
        (["topics", "plan", str(ROOT / "tests" / "admin" / "support.py")], "expected attribute 'topology'"),
    ]
    for args, message in cases:
        code, _, err = streamsvc_cli(capsys, *args, "--bootstrap-server", bootstrap)
        assert code == 1, (args, err)
        assert message in err and "Traceback" not in err, (args, err)


def test_command_config_reaches_the_clients(bootstrap: str, names, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("t")
    good = tmp_path / "client.properties"
    good.write_text(
        "# Kafka client properties\nclient.id=streamsvc-admin-test\nsecurity.protocol=PLAINTEXT\n"
    )
    code, out, err = streamsvc_cli(
        capsys, "replay", "--group", names("g"), "--topic", topic, "--to-latest",
        "--bootstrap-server", bootstrap, "--command-config", str(good),
    )  # fmt: skip
    assert code == 0 and topic in out, err
    bad = tmp_path / "bad.properties"
    bad.write_text("no.such.setting=1\n")
    code, _, err = streamsvc_cli(
        capsys, "replay", "--group", names("g"), "--topic", topic, "--to-latest",
        "--bootstrap-server", bootstrap, "--command-config", str(bad),
    )  # fmt: skip
    assert code == 1 and "no.such.setting" in err and "Traceback" not in err
