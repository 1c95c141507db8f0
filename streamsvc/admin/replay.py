"""Consumer-group offset resets with the semantics of `kafka-consumer-groups.sh --reset-offsets`.

Read from Kafka's own `ConsumerGroupCommand` (tools/.../consumer/group): a group is reset only while it
is Empty or Dead; `--all-topics` means the partitions the group has committed offsets for, `--topic t`
every partition of t, `--topic t:0,2` those partitions; `--to-offset`, `--shift-by` and `--from-file`
are clamped into [log-start, log-end] with a warning; `--to-datetime`/`--by-duration` take the first
offset whose timestamp is at or after the time, or the log end when there is none; `--to-current` keeps
the committed offset, or the log end where there is none; log ends are read_uncommitted (the high
watermark), as Kafka's admin client reads them. Datetimes without a zone are UTC.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from streamsvc.eos.errors import while_coordinator_moves
from streamsvc.errors import ConfigError, StreamsvcError
from streamsvc.runtime.topics import list_offsets, partition_counts

TP = tuple[str, int]
ScenarioKind = Literal[
    "to-earliest",
    "to-latest",
    "to-current",
    "to-offset",
    "to-datetime",
    "by-duration",
    "shift-by",
    "from-file",
]
SCENARIOS: tuple[ScenarioKind, ...] = (
    "to-earliest",
    "to-latest",
    "to-current",
    "to-offset",
    "to-datetime",
    "by-duration",
    "shift-by",
    "from-file",
)
INACTIVE_STATES = ("Empty", "Dead")
# confluent_kafka.ConsumerGroupState names -> the names Kafka's tools print (GroupState.toString()).
_STATE_NAMES = {
    "UNKNOWN": "Unknown",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "STABLE": "Stable",
    "DEAD": "Dead",
    "EMPTY": "Empty",
}
_DURATION = re.compile(
    r"^([-+]?)P(?:([-+]?\d+)D)?(T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?(?:([-+]?\d+)(?:[.,](\d{0,9}))?S)?)?$",
    re.IGNORECASE,
)


class GroupActiveError(StreamsvcError):
    """The group has members: its offsets cannot be reset (Kafka's wording)."""


@dataclass(frozen=True)
class Scenario:
    """One reset specification; `value` is the option's argument (None for the flag-only ones)."""

    kind: ScenarioKind
    value: str | None = None

    def __str__(self) -> str:
        return f"--{self.kind}" + (f" {self.value}" if self.value is not None else "")


@dataclass(frozen=True)
class Scope:
    """Which partitions: `--topic` arguments (`t` or `t:0,1`) or `--all-topics`."""

    topics: tuple[str, ...] = ()
    all_topics: bool = False


@dataclass
class GroupPlan:
    """The new offsets of one group, or why it was refused."""

    group: str
    state: str
    offsets: dict[TP, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def refused(self) -> bool:
        return self.error is not None


# ---- parsing ---------------------------------------------------------------------------------------


def parse_datetime(text: str) -> int:
    """`YYYY-MM-DDTHH:mm:SS[.sss][zone]` -> epoch ms; without a zone the time is UTC (as in Kafka)."""
    if "T" not in text:
        raise ConfigError(
            f"cannot parse datetime {text!r}: it does not contain a 'T' according to ISO8601 format "
            "(expected YYYY-MM-DDTHH:mm:SS.sss, optionally with Z or +hh:mm)"
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(
            f"cannot parse datetime {text!r}: expected YYYY-MM-DDTHH:mm:SS.sss[Z|+hh:mm]"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_duration(text: str) -> int:
    """An ISO-8601 duration as Java's `Duration.parse` reads it (`PnDTnHnMn.nS`, signs allowed) -> ms."""
    m = _DURATION.match(text.strip())
    if m is None or (m.group(3) is not None and not any(m.group(i) for i in (4, 5, 6))):
        raise ConfigError(f"cannot parse duration {text!r}: expected PnDTnHnMn.nS, e.g. PT1H or P1DT30M")
    if not any(m.group(i) for i in (2, 4, 5, 6)):
        raise ConfigError(f"cannot parse duration {text!r}: expected PnDTnHnMn.nS, e.g. PT1H or P1DT30M")
    days, hours, minutes, seconds = (int(m.group(i) or 0) for i in (2, 4, 5, 6))
    fraction = (m.group(7) or "").ljust(3, "0")[:3]
    millis = int(fraction) if fraction else 0
    if (m.group(6) or "").startswith("-"):
        millis = -millis
    total = ((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000 + millis
    return -total if m.group(1) == "-" else total


def parse_topic_args(args: Iterable[str]) -> tuple[list[TP], list[str]]:
    """`--topic` arguments -> (explicit partitions, whole topics), with Kafka's error texts."""
    explicit: list[TP] = []
    whole: list[str] = []
    for arg in args:
        if ":" not in arg:
            whole.append(arg)
            continue
        parts = arg.split(":")
        if len(parts) != 2:
            raise ConfigError(f"Invalid topic arg '{arg}', expected topic name and partitions")
        topic, partitions = parts
        for p in partitions.split(","):
            try:
                explicit.append((topic, int(p)))
            except ValueError:
                raise ConfigError(f"Invalid partition '{p}' specified in topic arg '{arg}'") from None
    return explicit, whole


def parse_plan_csv(text: str, groups: Sequence[str]) -> dict[str, dict[TP, int]]:
    """A reset plan in Kafka's CSV (`topic,partition,offset` for one `--group`, else
    `group,topic,partition,offset`; no header) -> group -> offsets."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    plan: dict[str, dict[TP, int]] = {}
    three = bool(rows) and len(groups) == 1 and _is_int_row(rows[0], 3)
    for n, row in enumerate(rows, 1):
        if three:
            if not _is_int_row(row, 3):
                raise ConfigError(f"reset plan line {n}: expected topic,partition,offset, got {row}")
            group, topic, partition, offset = groups[0], row[0], row[1], row[2]
        else:
            if not _is_int_row(row, 4):
                raise ConfigError(f"reset plan line {n}: expected group,topic,partition,offset, got {row}")
            group, topic, partition, offset = row
        plan.setdefault(group.strip(), {})[(topic.strip(), int(partition))] = int(offset)
    return plan


def _is_int_row(row: list[str], width: int) -> bool:
    if len(row) != width:
        return False
    try:
        int(row[-1])
        int(row[-2])
    except ValueError:
        return False
    return True


def export_csv(plans: Sequence[GroupPlan], single_group: bool) -> str:
    """Kafka's `--export` format: one `topic,partition,offset` line per partition for a single
    `--group`, `group,topic,partition,offset` otherwise; no header. Text fields are quoted the way
    Kafka's CSV writer (Jackson) quotes them, so the files are byte-identical."""
    lines = []
    for plan in plans:
        for (topic, partition), offset in sorted(plan.offsets.items()):
            fields = [_csv_text(topic), str(partition), str(offset)]
            lines.append(",".join(fields if single_group else [_csv_text(plan.group), *fields]) + "\n")
    return "".join(lines)


def _csv_text(value: str) -> str:
    # Jackson's CsvEncoder quotes any string longer than 24 characters without looking at it, and
    # shorter ones holding a character below '-' (the separator, the quote, spaces, controls...).
    if len(value) > 24 or any(ord(c) < ord("-") for c in value):
        return '"' + value.replace('"', '""') + '"'
    return value


def format_table(plans: Sequence[GroupPlan]) -> str:
    """The table Kafka's tool prints: `GROUP TOPIC PARTITION NEW-OFFSET`, same column widths."""
    fmt = "{:<30} {:<30} {:<10} {:<15}"
    lines = [fmt.format("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET")] if plans else []
    for plan in plans:
        for (topic, partition), offset in sorted(plan.offsets.items()):
            lines.append(fmt.format(plan.group, topic, partition, offset))
    return "\n".join(lines)


# ---- reading the cluster ---------------------------------------------------------------------------


def group_state(admin: AdminClient, group: str, timeout: float = 30.0) -> str:
    """The group's state as Kafka's tools name it; an unknown group is Dead."""
    try:
        description = while_coordinator_moves(
            lambda: admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(), timeout
        )
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
            return "Dead"
        raise
    name: str = description.state.name
    return _STATE_NAMES.get(name, name.title())


def committed_offsets(admin: AdminClient, group: str, timeout: float = 30.0) -> dict[TP, int]:
    """The group's committed offsets (partitions without one are left out)."""
    request = [ConsumerGroupTopicPartitions(group)]
    result = while_coordinator_moves(
        lambda: admin.list_consumer_group_offsets(request, request_timeout=timeout)[group].result(), timeout
    )
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or [] if tp.offset >= 0}


def refuse_message(group: str, state: str) -> str:
    return (
        f"Assignments can only be reset if the group '{group}' is inactive, but the current state is {state}."
    )


def require_inactive(admin: AdminClient, group: str) -> str:
    """The group's state; raises GroupActiveError (Kafka's message) unless it is Empty or Dead."""
    state = group_state(admin, group)
    if state not in INACTIVE_STATES:
        raise GroupActiveError(refuse_message(group, state))
    return state


def log_starts(admin: AdminClient, tps: Iterable[TP]) -> dict[TP, int]:
    return list_offsets(admin, tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]


def log_ends(admin: AdminClient, tps: Iterable[TP]) -> dict[TP, int]:
    return list_offsets(admin, tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]


def partitions_in_scope(admin: AdminClient, scope: Scope, committed: Mapping[TP, int]) -> list[TP]:
    """`--all-topics`: the partitions with committed offsets; `--topic`: as named (every partition of a
    topic given without partitions)."""
    if scope.all_topics:
        return sorted(committed)
    explicit, whole = parse_topic_args(scope.topics)
    counts = partition_counts(admin, whole)
    missing = [t for t in whole if t not in counts]
    if missing:
        raise ConfigError(f"topic(s) {', '.join(missing)} do not exist")
    return sorted({*explicit, *((t, p) for t in whole for p in range(counts[t]))})


# ---- planning --------------------------------------------------------------------------------------


def clamp(admin: AdminClient, requested: Mapping[TP, int]) -> tuple[dict[TP, int], list[str]]:
    """Requested offsets clamped into [log-start, log-end], with Kafka's warning for each clamp."""
    starts, ends = log_starts(admin, requested), log_ends(admin, requested)
    out: dict[TP, int] = {}
    warnings: list[str] = []
    for tp, offset in requested.items():
        name = f"{tp[0]}-{tp[1]}"
        if tp not in ends:
            raise ConfigError(f"partition {name} does not exist")
        if offset > ends[tp]:
            warnings.append(
                f"New offset ({offset}) is higher than latest offset for topic partition {name}. "
                f"Value will be set to {ends[tp]}"
            )
            out[tp] = ends[tp]
        elif offset < starts[tp]:
            warnings.append(
                f"New offset ({offset}) is lower than earliest offset for topic partition {name}. "
                f"Value will be set to {starts[tp]}"
            )
            out[tp] = starts[tp]
        else:
            out[tp] = offset
    return out, warnings


def offsets_for_time(
    admin: AdminClient, tps: Sequence[TP], timestamp_ms: int
) -> tuple[dict[TP, int], list[str]]:
    """First offset at or after `timestamp_ms` per partition; the log end where no record is that late."""
    found = list_offsets(admin, tps, OffsetSpec.for_timestamp(timestamp_ms))
    empty = [tp for tp in tps if found.get(tp, -1) < 0]
    warnings = [
        f"Partition {p} from topic {t} is empty. Falling back to latest known offset." for t, p in empty
    ]
    found.update(log_ends(admin, empty))
    return {tp: found[tp] for tp in tps}, warnings


def prepare(
    admin: AdminClient,
    group: str,
    partitions: Sequence[TP],
    scenario: Scenario,
    committed: Mapping[TP, int],
    plan: Mapping[str, Mapping[TP, int]] | None = None,
    now_ms: int | None = None,
) -> tuple[dict[TP, int], list[str]]:
    """The new offsets of `partitions` under `scenario` (Kafka's `prepareOffsetsToReset`)."""
    kind, value = scenario.kind, scenario.value
    if kind == "to-earliest":
        return log_starts(admin, partitions), []
    if kind == "to-latest":
        return log_ends(admin, partitions), []
    if kind == "to-offset":
        return clamp(admin, dict.fromkeys(partitions, int(value or 0)))
    if kind == "shift-by":
        missing = [tp for tp in partitions if tp not in committed]
        if missing:
            t, p = missing[0]
            raise ConfigError(
                f"Cannot shift offset for partition {t}-{p} since there is no current committed offset"
            )
        return clamp(admin, {tp: committed[tp] + int(value or 0) for tp in partitions})
    if kind == "to-datetime":
        return offsets_for_time(admin, partitions, parse_datetime(value or ""))
    if kind == "by-duration":
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return offsets_for_time(admin, partitions, now - parse_duration(value or ""))
    if kind == "from-file":
        wanted = (plan or {}).get(group)
        if wanted is None:
            return {}, [f"No reset plan for group {group} found"]
        return clamp(admin, dict(wanted))
    if kind == "to-current":
        ends = log_ends(admin, [tp for tp in partitions if tp not in committed])
        return {tp: committed[tp] if tp in committed else ends[tp] for tp in partitions}, []
    raise ConfigError(f"unknown reset scenario {kind!r}")


def plan_group(
    admin: AdminClient,
    group: str,
    scope: Scope,
    scenario: Scenario,
    plan: Mapping[str, Mapping[TP, int]] | None = None,
    now_ms: int | None = None,
) -> GroupPlan:
    """Plan one group's reset; a group that is not Empty/Dead gets Kafka's refusal as its `error`."""
    state = group_state(admin, group)
    if state not in INACTIVE_STATES:
        return GroupPlan(group, state, error=refuse_message(group, state))
    committed = committed_offsets(admin, group)
    if scenario.kind == "from-file" and not scope.topics and not scope.all_topics:
        partitions: list[TP] = []
    else:
        partitions = partitions_in_scope(admin, scope, committed)
    offsets, warnings = prepare(admin, group, partitions, scenario, committed, plan, now_ms)
    return GroupPlan(group, state, offsets, warnings)


def apply(admin: AdminClient, plan: GroupPlan, timeout: float = 30.0) -> None:
    """Commit `plan.offsets` for its group; refused again if a member joined since planning."""
    if plan.refused or not plan.offsets:
        return
    require_inactive(admin, plan.group)
    tps = [TopicPartition(t, p, o) for (t, p), o in sorted(plan.offsets.items())]
    request = [ConsumerGroupTopicPartitions(plan.group, tps)]
    try:
        result = while_coordinator_moves(
            lambda: admin.alter_consumer_group_offsets(request, request_timeout=timeout)[plan.group].result(),
            timeout,
        )
    except KafkaException as exc:
        if exc.args[0].code() in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS):
            raise GroupActiveError(refuse_message(plan.group, group_state(admin, plan.group))) from exc
        raise
    failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
    if failed:
        raise StreamsvcError(f"offsets of {plan.group} not reset for {failed}")


def reset_groups(
    admin: AdminClient,
    groups: Sequence[str],
    scope: Scope,
    scenario: Scenario,
    execute: bool,
    plan_csv: str | None = None,
    now_ms: int | None = None,
) -> list[GroupPlan]:
    """Plan (and with `execute`, apply) the reset of every group; refused groups are kept with their
    error so the caller can report them and exit non-zero."""
    plan = parse_plan_csv(plan_csv, groups) if plan_csv is not None else None
    results = []
    for group in groups:
        planned = plan_group(admin, group, scope, scenario, plan, now_ms)
        if execute:
            apply(admin, planned)
        results.append(planned)
    return results
