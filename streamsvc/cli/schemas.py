"""`streamsvc schemas ...`: Avro schema evolution against git history and a schema registry.

Exit codes: 0 compatible (diff: no change), 1 incompatible or refused (diff: changes found), 2 an error
(bad arguments, an invalid schema, git or the registry unreachable), 3 the offline checker and the
registry disagree (a streamsvc bug: please report it with the schemas).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from streamsvc.errors import ConfigError, StreamsvcError
from streamsvc.registry.client import REGISTRY_URL_ENV
from streamsvc.registry.compat import Mode, check
from streamsvc.registry.diff import diff
from streamsvc.registry.layout import STRATEGIES, SchemaFile, SubjectRule, schema_files

if TYPE_CHECKING:  # the registry client pulls in an HTTP stack (~0.5 s): imported when a command needs it
    from streamsvc.registry.remote import Registry
    from streamsvc.registry.workflow import Verdict

OK, INCOMPATIBLE, ERROR, DISAGREEMENT = 0, 1, 2, 3
MODES = ", ".join(m.value for m in Mode)
REFS = "a schema is a file, git:REV:path/file.avsc, or registry:SUBJECT[:VERSION]"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schemas = sub.add_parser(
        "schemas",
        help="Avro schema compatibility, registration and diffs (CI: check on PR, register on merge)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = schemas.add_subparsers(dest="schemas_command", required=True)

    compat = verbs.add_parser(
        "compat",
        help="offline: is NEW compatible with the earlier versions under MODE?",
        description=f"Offline compatibility check, with the registry's verdicts. {REFS}. Earlier versions "
        "oldest first; non-transitive modes use the last one. Exit 0 compatible, 1 not, 2 error.",
    )
    compat.add_argument("--mode", type=_mode, default=Mode.BACKWARD, help=f"one of {MODES} (BACKWARD)")
    compat.add_argument("earlier", nargs="+", metavar="OLD", help="earlier version(s), oldest first")
    compat.add_argument("new", metavar="NEW", help="the proposed schema")
    _registry_arg(compat)
    compat.set_defaults(func=_guarded(_compat))

    check_ = verbs.add_parser(
        "check",
        help="every schema file against its git history and its registry subject (a CI step)",
        description="Check each *.avsc under --dir (or the files given) against its earlier committed "
        "versions (git) and against its subject's versions in the registry, in the mode the registry "
        "applies to that subject (transitive modes: every earlier version). Exit 0 all compatible, "
        "1 some incompatible, 2 error, 3 checker and registry disagree.",
    )
    _files_args(check_)
    check_.add_argument(
        "--mode",
        type=_mode,
        help="mode for the git comparison (default: the subject's registry mode, "
        "else BACKWARD); the registry always applies its own",
    )
    check_.add_argument(
        "--git-ref",
        default="HEAD",
        metavar="REV",
        help="compare with the file's versions reachable from REV, e.g. origin/main in a pull request (HEAD)",
    )
    check_.add_argument("--no-git", action="store_true", help="skip the git comparison")
    check_.add_argument("--no-registry", action="store_true", help="skip the registry comparison")
    check_.set_defaults(func=_guarded(_check))

    register = verbs.add_parser(
        "register",
        help="register every schema file under its subject (after `check`, e.g. on merge)",
        description="Register each schema under its subject; one already registered is left as it is. "
        "Exit 0 all registered, 1 the registry refused some (reasons printed), 2 error.",
    )
    _files_args(register)
    register.set_defaults(func=_guarded(_register))

    set_compat = verbs.add_parser(
        "set-compat",
        help="set the compatibility mode of subjects, or the registry's global mode",
        description="Set MODE on each --subject, or globally when none is given. Exit 0 done, 2 error.",
    )
    set_compat.add_argument("mode", type=_mode, metavar="MODE", help=f"one of {MODES}")
    set_compat.add_argument("--subject", action="append", default=[], help="a subject (repeatable)")
    _registry_arg(set_compat)
    set_compat.set_defaults(func=_guarded(_set_compat))

    diff_ = verbs.add_parser(
        "diff",
        help="what changed between two schemas, field by field, and whether it is compatible",
        description=f"{REFS}. Exit 0 no change, 1 changes found, 2 error.",
    )
    diff_.add_argument(
        "old", metavar="OLD", help="the earlier schema: a file, git:REV:path or registry:SUBJECT[:VERSION]"
    )
    diff_.add_argument("new", metavar="NEW", help="the later schema, same forms as OLD")
    _registry_arg(diff_)
    diff_.set_defaults(func=_guarded(_diff))


def _registry_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry-url",
        default=os.environ.get(REGISTRY_URL_ENV, ""),
        help=f"Confluent-API schema registry (default ${REGISTRY_URL_ENV})",
    )


def _files_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="schema files (default: all in --dir)"
    )
    parser.add_argument("--dir", type=Path, default=Path("schemas"), help="schema directory (schemas)")
    parser.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        help="subject strategy for every file: topic (<topic>-value), record (record full name), "
        "topic_record (<topic>-<record full name>); default: subjects.toml in --dir, else record",
    )
    parser.add_argument("--topic", help="topic for the topic and topic_record strategies")
    parser.add_argument("--key", action="store_true", default=None, help="the schemas are for record keys")
    _registry_arg(parser)


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except StreamsvcError as exc:
            print(f"streamsvc schemas: error: {exc}", file=sys.stderr)
            return ERROR

    return run


def _registry(args: argparse.Namespace) -> Registry | None:
    from streamsvc.registry.remote import Registry

    return Registry(args.registry_url) if args.registry_url else None


def _required_registry(args: argparse.Namespace) -> Registry:
    from streamsvc.registry.remote import Registry

    if not args.registry_url:
        raise ConfigError(f"no schema registry: give --registry-url or set {REGISTRY_URL_ENV}")
    return Registry(args.registry_url)


def _mode(text: str) -> Mode:
    try:
        return Mode.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _compat(args: argparse.Namespace) -> int:
    from streamsvc.registry.sources import load

    registry = _registry(args)
    earlier = [load(ref, registry) for ref in args.earlier]
    new = load(args.new, registry)
    problems = check(args.mode, earlier, new)
    compared = earlier if args.mode.transitive else earlier[-1:]
    against = ", ".join(v.label for v in compared)
    if not problems:
        print(f"{args.mode}: {new.label} is compatible with {against}")
        return OK
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    print(f"{args.mode}: {new.label} is NOT compatible with {against} ({count})")
    for problem in problems:
        print(f"  {problem}")
    return INCOMPATIBLE


def _files(args: argparse.Namespace) -> list[SchemaFile]:
    return schema_files(args.dir, args.files, SubjectRule(args.strategy, args.topic, args.key))


def _check(args: argparse.Namespace) -> int:
    from streamsvc.registry.workflow import check_files

    files = _files(args)
    registry = None if args.no_registry else _registry(args)
    if registry is None and not args.no_registry:
        print(f"registry: skipped (no --registry-url and no {REGISTRY_URL_ENV})")
    verdicts = check_files(files, registry, args.mode, None if args.no_git else args.git_ref)
    current = None
    for verdict in verdicts:
        if verdict.file is not current:
            current = verdict.file
            print(f"{verdict.file.schema.label}  (subject {verdict.file.subject})")
        _print_verdict(verdict)
    bad = [v for v in verdicts if not v.compatible]
    disagreements = [v for v in verdicts if v.disagreement]
    print(f"{len(files)} schema files checked: {len(bad)} incompatible")
    if disagreements:
        print(
            f"the offline checker and the registry disagree on {len(disagreements)} "
            "(the registry's verdict counts); please report it with the schemas",
            file=sys.stderr,
        )
        return DISAGREEMENT
    return INCOMPATIBLE if bad else OK


def _print_verdict(verdict: Verdict) -> None:
    where = f"{verdict.source:<8} {verdict.mode}"
    if not verdict.against:
        print(f"  {where}: {verdict.note}")
        return
    against = ", ".join(verdict.against)
    state = "compatible" if verdict.compatible else "INCOMPATIBLE"
    print(f"  {where} vs {against}: {state}")
    for problem in verdict.problems:
        print(f"    {problem}")
    if verdict.disagreement:
        said = "accepts" if verdict.registry_accepts else "refuses"
        print(f"    the registry {said} it but the offline checker does not agree")


def _register(args: argparse.Namespace) -> int:
    from streamsvc.registry.workflow import register_files

    registry = _required_registry(args)
    results = register_files(_files(args), registry)
    for result in results:
        label, subject = result.file.schema.label, result.file.subject
        if result.registered is not None:
            what = "already registered" if result.already else "registered"
            r = result.registered
            print(f"{label}: {what} as {subject} version {r.version} (id {r.schema_id})")
        elif result.refused is not None:
            print(f"{label}: REFUSED by the registry under {subject} ({result.refused.mode})")
            for problem in result.refused.problems:
                print(f"    {problem}")
    return INCOMPATIBLE if any(r.refused is not None for r in results) else OK


def _set_compat(args: argparse.Namespace) -> int:
    registry = _required_registry(args)
    for subject in args.subject or [None]:
        before = registry.mode(subject)
        registry.set_mode(args.mode, subject)
        print(f"{subject or 'global'}: {before} -> {registry.mode(subject)}")
    return OK


def _diff(args: argparse.Namespace) -> int:
    from streamsvc.registry.sources import load

    registry = _registry(args)
    old, new = load(args.old, registry), load(args.new, registry)
    changes = diff(old, new)
    if not changes:
        print(f"{old.label} and {new.label}: no change")
        return OK
    for change in changes:
        print(change)
    backward = "compatible" if not check(Mode.BACKWARD, [old], new) else "INCOMPATIBLE"
    forward = "compatible" if not check(Mode.FORWARD, [old], new) else "INCOMPATIBLE"
    print(f"backward (new reads old data): {backward}; forward (old reads new data): {forward}")
    return INCOMPATIBLE
