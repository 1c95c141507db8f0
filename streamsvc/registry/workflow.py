"""The schema-evolution workflow: `check` a change (pull request), `register` it (merge).

`check` compares every schema file with its earlier committed versions (git) and with the versions of its
subject in the registry; `register` registers what `check` accepted. The registry's verdict comes from
the registry itself (its compatibility endpoint, asked the way registering decides) and the reasons from
the offline checker, which must agree with it: a disagreement is reported as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from streamsvc.registry.compat import Incompatibility, Mode, check
from streamsvc.registry.layout import SchemaFile
from streamsvc.registry.remote import IncompatibleSchemaError, Registered, Registry
from streamsvc.registry.sources import GitError, earlier_versions

DEFAULT_MODE = Mode.BACKWARD  # the Confluent Schema Registry's default


@dataclass
class Verdict:
    """One schema file checked against one source of earlier versions (`git` or `registry`)."""

    file: SchemaFile
    source: str
    mode: Mode
    against: list[str] = field(default_factory=list)  # labels of the versions compared with
    problems: list[Incompatibility] = field(default_factory=list)
    note: str = ""  # why nothing was compared, or what else is worth knowing
    registry_accepts: bool | None = None  # the registry's own verdict (source "registry")

    @property
    def compatible(self) -> bool:
        if self.registry_accepts is not None:
            return self.registry_accepts
        return not self.problems

    @property
    def disagreement(self) -> bool:
        """The offline checker and the registry came to different verdicts (a bug to report)."""
        return self.registry_accepts is not None and self.registry_accepts == bool(self.problems)


def check_git(file: SchemaFile, mode: Mode, rev: str) -> Verdict:
    """`file` as it is now against its committed versions reachable from `rev`."""
    try:
        earlier = earlier_versions(file.path, file.schema, rev)
    except GitError as exc:
        return Verdict(file, "git", mode, note=f"skipped: {exc}")
    if not earlier:
        return Verdict(file, "git", mode, note=f"no earlier committed version (in {rev})")
    compared = earlier if mode.transitive else earlier[-1:]
    return Verdict(file, "git", mode, [v.label for v in compared], check(mode, earlier, file.schema))


def check_registry(file: SchemaFile, registry: Registry) -> Verdict:
    """`file` against its subject's registered versions, in the mode the registry applies to it."""
    mode = registry.mode(file.subject)
    existing = registry.lookup(file.subject, file.schema)
    if existing is not None:
        note = f"already registered as version {existing.version} (id {existing.schema_id})"
        return Verdict(file, "registry", mode, note=note)
    earlier = registry.versions(file.subject)
    if not earlier:
        return Verdict(file, "registry", mode, note="new subject: nothing to be compatible with")
    compared = earlier if mode.transitive else earlier[-1:]
    verdict = Verdict(file, "registry", mode, [v.label for v in compared], check(mode, earlier, file.schema))
    verdict.registry_accepts = registry.accepts(file.subject, file.schema, mode)
    return verdict


def check_files(
    files: Sequence[SchemaFile], registry: Registry | None, mode: Mode | None, rev: str | None
) -> list[Verdict]:
    """Every file against git (unless `rev` is None) and the registry (unless None).

    The git comparison uses `mode`, else the subject's mode in the registry, else BACKWARD.
    """
    verdicts = []
    for file in files:
        from_registry = check_registry(file, registry) if registry is not None else None
        if rev is not None:
            git_mode = mode or (from_registry.mode if from_registry else DEFAULT_MODE)
            verdicts.append(check_git(file, git_mode, rev))
        if from_registry is not None:
            verdicts.append(from_registry)
    return verdicts


@dataclass
class Registration:
    file: SchemaFile
    registered: Registered | None = None
    already: bool = False
    refused: Verdict | None = None  # why the registry refused it (409)


def register_files(files: Sequence[SchemaFile], registry: Registry) -> list[Registration]:
    """Register every file under its subject, in order; a refused file does not stop the others."""
    out = []
    for file in files:
        existing = registry.lookup(file.subject, file.schema)
        if existing is not None:
            out.append(Registration(file, existing, already=True))
            continue
        try:
            out.append(Registration(file, registry.register(file.subject, file.schema)))
        except IncompatibleSchemaError:
            refused = check_registry(file, registry)
            refused.registry_accepts = False
            out.append(Registration(file, refused=refused))
    return out
