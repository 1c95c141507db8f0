"""Where schemas come from: files, git history, and registry versions, by one reference syntax.

A schema reference is `path/to/file.avsc`, `git:REV:path/to/file.avsc` (the file as of git revision
REV, path relative to the current directory) or `registry:SUBJECT[:VERSION]` (default: the latest).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from streamsvc.errors import ConfigError
from streamsvc.registry.avsc import SchemaVersion, parse_avro
from streamsvc.registry.remote import Registry


class GitError(ConfigError):
    """git is missing, the file is outside a repository, or a revision does not exist."""


def _git(args: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def committed_versions(path: Path, rev: str = "HEAD") -> list[SchemaVersion]:
    """Every committed version of `path` reachable from `rev`, oldest first (renames not followed)."""
    folder = path.resolve().parent
    if _git(["rev-parse", "--is-inside-work-tree"], folder).strip() != "true":
        raise GitError(f"{path} is not in a git work tree")
    try:
        _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], folder)
    except GitError:
        if rev == "HEAD":
            return []  # a repository without commits yet
        raise GitError(f"unknown git revision {rev!r}") from None
    commits = _git(["log", "--format=%H", "--reverse", rev, "--", path.name], folder).split()
    versions: list[SchemaVersion] = []
    for commit in commits:
        try:
            text = _git(["show", f"{commit}:./{path.name}"], folder)
        except GitError:
            continue  # the commit deleted the file
        if versions and versions[-1].text == text:
            continue
        versions.append(parse_avro(text, f"git:{commit[:10]}"))
    return versions


def earlier_versions(path: Path, current: SchemaVersion, rev: str = "HEAD") -> list[SchemaVersion]:
    """The committed versions before `current` (the file as it is now): the history reachable from
    `rev` without its trailing versions equal to `current` (an unchanged file is checked against the
    version before its last change)."""
    versions = committed_versions(path, rev)
    while versions and versions[-1].text == current.text:
        versions.pop()
    return versions


def load(ref: str, registry: Registry | None) -> SchemaVersion:
    """The schema a reference names (module docstring)."""
    if ref.startswith("git:"):
        rev, sep, name = ref[len("git:") :].partition(":")
        if not sep or not rev or not name:
            raise ConfigError(f"{ref!r}: write git:REV:path/to/file.avsc")
        path = Path(name)
        return parse_avro(_git(["show", f"{rev}:./{path.name}"], path.resolve().parent), ref)
    if ref.startswith("registry:"):
        subject, version = _registry_ref(ref)
        if registry is None:
            raise ConfigError(f"{ref!r} needs a registry: give --registry-url or set STREAMSVC_REGISTRY_URL")
        return registry.version(subject, version)
    path = Path(ref)
    if not path.is_file():
        raise ConfigError(f"schema file {ref} does not exist")
    return parse_avro(path.read_text(), ref)


def _registry_ref(ref: str) -> tuple[str, int | None]:
    body = ref[len("registry:") :]
    subject, sep, version = body.rpartition(":")
    if sep and (version.isdigit() or version == "latest"):
        return subject, int(version) if version.isdigit() else None
    if not body:
        raise ConfigError(f"{ref!r}: write registry:SUBJECT[:VERSION]")
    return body, None
