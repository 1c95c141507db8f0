"""`streamsvc schemas`: exit codes, reasons with field paths, git history, and the PR=check / merge=register
workflow against the real registry."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from streamsvc.cli.main import build_parser
from streamsvc.registry.avsc import InvalidSchemaError, parse_avro
from streamsvc.registry.layout import SubjectRule, schema_files
from tests.conftest import Subjects

V1: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "qty", "type": "int"}],
}
WITH_DEFAULT = {**V1, "fields": [*V1["fields"], {"name": "region", "type": "string", "default": "eu"}]}
WITHOUT_DEFAULT = {**V1, "fields": [*V1["fields"], {"name": "region", "type": "string"}]}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    # Not `main()`: it configures logging onto this test's captured stderr, which later tests would hit.
    args = build_parser().parse_args(["schemas", *argv])
    code: int = args.func(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def write(path: Path, schema: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, indent=2))
    return path


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree with a `schemas/` directory, as the current directory."""
    git(tmp_path, "init", "-q", "-b", "main")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STREAMSVC_REGISTRY_URL", raising=False)
    return tmp_path


def test_compat_offline_exit_codes_and_reasons(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, added = write(Path("v1.avsc"), V1), write(Path("v2.avsc"), WITHOUT_DEFAULT)
    code, out, _ = run(capsys, "compat", "--mode", "BACKWARD", str(old), str(added))
    assert code == 1
    assert "BACKWARD: v2.avsc is NOT compatible with v1.avsc (1 problem)" in out
    assert "Order.region: the writer has no such field and the reader's field has no default" in out
    assert run(capsys, "compat", "--mode", "forward", str(old), str(added))[0] == 0
    # Transitive: every earlier file counts; non-transitive: the last one only.
    middle = write(Path("v1b.avsc"), WITH_DEFAULT)
    later = write(Path("v3.avsc"), WITHOUT_DEFAULT)
    assert run(capsys, "compat", "--mode", "BACKWARD", str(old), str(middle), str(later))[0] == 0
    code, out, _ = run(capsys, "compat", "--mode", "BACKWARD_TRANSITIVE", str(old), str(middle), str(later))
    assert code == 1 and "(reading data written with v1.avsc using v3.avsc)" in out
    code, _, err = run(capsys, "compat", str(old), "missing.avsc")
    assert code == 2 and "schema file missing.avsc does not exist" in err
    (repo / "bad.avsc").write_text(
        '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}'
    )
    code, _, err = run(capsys, "compat", str(old), "bad.avsc")
    assert code == 2 and "bad.avsc: invalid default for field R.a" in err
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["schemas", "compat", "--mode", "SIDEWAYS", str(old), str(added)])
    assert exit_.value.code == 2


def test_check_against_the_git_history(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = write(repo / "schemas" / "order.avsc", V1)
    code, out, _ = run(capsys, "check", "--no-registry")
    assert code == 0 and "no earlier committed version" in out
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    write(schema, WITH_DEFAULT)
    git(repo, "commit", "-qam", "v2: region with a default")
    write(schema, WITHOUT_DEFAULT)  # the pull request's change: the default is dropped

    code, out, _ = run(capsys, "check", "--no-registry")
    assert code == 0, out  # BACKWARD against the latest committed version (v2)
    assert "schemas/order.avsc  (subject shop.Order)" in out
    code, out, _ = run(capsys, "check", "--no-registry", "--mode", "BACKWARD_TRANSITIVE")
    assert code == 1
    assert "INCOMPATIBLE" in out and "Order.region: the writer has no such field" in out
    assert out.count("git:") >= 2, "transitive: compared with both committed versions"
    # Against an explicit base revision (a PR's target branch): there v1 is the latest.
    code, out, _ = run(capsys, "check", "--no-registry", "--git-ref", "HEAD~1")
    assert code == 1 and "Order.region" in out
    # Once committed, the file is checked against the version before its last change.
    git(repo, "commit", "-qam", "v3")
    assert run(capsys, "check", "--no-registry", "--mode", "FULL_TRANSITIVE")[0] == 1
    assert run(capsys, "check", "--no-registry", "--mode", "FORWARD_TRANSITIVE")[0] == 0


def test_pull_request_check_then_merge_register_on_the_real_registry(
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    registry_url: str,
    subjects: Subjects,
    schema_registry: SchemaRegistryClient,
) -> None:
    subject = subjects("orders-value")
    topic = subject.removesuffix("-value")
    schema = write(repo / "schemas" / "order.avsc", V1)
    (repo / "schemas" / "subjects.toml").write_text(
        f'[files."order.avsc"]\nstrategy = "topic"\ntopic = "{topic}"\n'
    )
    url = ["--registry-url", registry_url, "--no-git"]

    code, out, _ = run(capsys, "check", *url)
    assert code == 0 and "new subject" in out and f"(subject {subject})" in out
    code, out, _ = run(capsys, "register", *url[:2])
    assert code == 0 and f"registered as {subject} version 1" in out
    code, out, _ = run(capsys, "register", *url[:2])
    assert code == 0 and "already registered" in out

    code, out, _ = run(capsys, "set-compat", "FULL_TRANSITIVE", "--subject", subject, *url[:2])
    assert code == 0 and f"{subject}: " in out and "-> FULL_TRANSITIVE" in out
    assert schema_registry.get_compatibility(subject) == "FULL_TRANSITIVE"

    write(schema, WITHOUT_DEFAULT)  # a pull request adds a field without a default
    code, out, _ = run(capsys, "check", *url)
    assert code == 1
    assert f"registry FULL_TRANSITIVE vs {subject} v1: INCOMPATIBLE" in out
    assert "Order.region: the writer has no such field" in out
    code, out, _ = run(capsys, "register", *url[:2])
    assert code == 1 and "REFUSED by the registry" in out and "Order.region" in out
    assert schema_registry.get_versions(subject) == [1]

    write(schema, WITH_DEFAULT)  # fixed: the field has a default
    assert run(capsys, "check", *url)[0] == 0
    code, out, _ = run(capsys, "register", *url[:2])
    assert code == 0 and f"registered as {subject} version 2" in out

    code, out, _ = run(capsys, "diff", f"registry:{subject}:1", f"registry:{subject}", *url[:2])
    assert code == 1
    assert '+ Order.region: field string = "eu"' in out
    assert "backward (new reads old data): compatible; forward (old reads new data): compatible" in out


def test_check_uses_the_subjects_mode_for_git_too(
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    registry_url: str,
    subjects: Subjects,
    schema_registry: SchemaRegistryClient,
) -> None:
    subject = subjects("orders-value")
    schema_registry.register_schema(subject, Schema(json.dumps(V1), "AVRO"))
    schema_registry.set_compatibility(subject, "FORWARD")
    schema = write(repo / "schemas" / "order.avsc", V1)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    write(schema, {**V1, "fields": V1["fields"][:1]})  # qty removed: BACKWARD yes, FORWARD no
    args = [
        "check",
        "--registry-url",
        registry_url,
        "--strategy",
        "topic",
        "--topic",
        subject[: -len("-value")],
    ]
    code, out, _ = run(capsys, *args)
    assert code == 1
    assert "git      FORWARD vs git:" in out and "Order.qty" in out
    assert f"registry FORWARD vs {subject} v1: INCOMPATIBLE" in out


def test_registry_errors_are_clear(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / "schemas" / "order.avsc", V1)
    code, _, err = run(capsys, "register", "--registry-url", "http://127.0.0.1:9/apis/ccompat/v7")
    assert code == 2 and "cannot reach the registry at http://127.0.0.1:9" in err
    code, _, err = run(capsys, "register")
    assert code == 2 and "no schema registry: give --registry-url or set STREAMSVC_REGISTRY_URL" in err
    code, _, err = run(capsys, "check", "--no-git", "--dir", "elsewhere")
    assert code == 2 and "schema directory elsewhere does not exist" in err


def test_subject_strategies(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    order = write(root / "shop" / "order.avsc", V1)
    key = write(
        root / "shop" / "order_key.avsc",
        {
            "type": "record",
            "name": "OrderKey",
            "namespace": "shop",
            "fields": [{"name": "id", "type": "long"}],
        },
    )
    envelope = write(root / "cdc.avsc", {**V1, "name": "Envelope", "namespace": "db.orders"})
    (root / "subjects.toml").write_text(
        '[defaults]\nstrategy = "record"\n'
        '[files."shop/order_key.avsc"]\nstrategy = "topic_record"\ntopic = "orders"\nkey = true\n'
        '[files."cdc.avsc"]\ntopic = "db.orders"\n'
    )
    found = {f.path: f.subject for f in schema_files(root, [], SubjectRule())}
    assert found == {order: "shop.Order", key: "orders-shop.OrderKey", envelope: "db.orders-value"}
    # The command line wins over subjects.toml.
    cli = SubjectRule("topic", "payments", True)
    assert {f.subject for f in schema_files(root, [order, key], cli)} == {"payments-key"}
    with pytest.raises(Exception, match="needs a topic"):
        schema_files(root, [order], SubjectRule("topic_record"))
    (root / "subjects.toml").write_text('[files."cdc.avsc"]\nstrategy = "sideways"\n')
    with pytest.raises(Exception, match="unknown strategy 'sideways'"):
        schema_files(root, [], SubjectRule())


def test_the_registry_refuses_what_the_offline_parser_refuses(
    schema_registry: SchemaRegistryClient, subjects: Subjects
) -> None:
    bad_default = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}
    with pytest.raises(InvalidSchemaError):
        parse_avro(json.dumps(bad_default), "bad")
    with pytest.raises(SchemaRegistryError) as refused:
        schema_registry.register_schema(subjects("bad"), Schema(json.dumps(bad_default), "AVRO"))
    assert refused.value.http_status_code == 422
