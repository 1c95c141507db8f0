"""The state of one stream task's partitions: restore, flush to the changelogs, local checkpoints,
revocation (BRIEF §3.6). `StreamTask` calls it; `TaskManager` decides when.

- Restore (assignment, and every rewind): a partition that came straight back after an eager revoke,
  with nobody committing in between, keeps its state as it is. A store with a local RocksDB copy
  (`store="rocksdb"`) reads only the changelog's tail past its checkpoint; other stores replay the
  whole changelog partition. Either way only entries tagged at or below the committed source offset
  are applied. Progress is logged (`state_restore_progress`) and exported
  (`streamsvc_state_restore_*`); a read that makes no progress for `restore_stall_timeout_s` fails.
- Commit: the changes flushed into the transaction become the local committed state, with a
  checkpoint (the changelog offset after the last record written, from the delivery reports), only
  once the transaction has committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Producer

from streamsvc.config import Settings
from streamsvc.eos.delivery import DeliveryReports
from streamsvc.observability import metrics as m
from streamsvc.observability.recorder import AgentMetrics
from streamsvc.runtime.compiled import CompiledStore
from streamsvc.runtime.processor import Processor
from streamsvc.state.changelog import read_changelog_from, write_changes
from streamsvc.state.local import LocalState

TP = tuple[str, int]
PROGRESS_LOG_INTERVAL_S = 5.0


class TaskState:
    def __init__(
        self,
        processor: Processor,
        settings: Settings,
        reports: DeliveryReports,
        log: Any,
        labels: dict[str, str],
        obs: AgentMetrics,
        stall_timeout_s: float = 120.0,
    ) -> None:
        self.processor = processor
        self.settings = settings
        self.reports = reports
        self.log, self.labels, self.obs = log, labels, obs
        self.stall_timeout_s = stall_timeout_s
        self.stores: list[CompiledStore] = processor.stores
        self.parked: dict[TP, int | None] = {}  # revoked clean: the committed offset they reflect
        self.offsets: dict[TP, int] = {}  # committed offset of each partition with state
        self.clean = True  # nothing processed since the last commit
        self._flushed: list[tuple[CompiledStore, int, dict[bytes, bytes | None], int]] = []
        self._positions: dict[TP, int] = {}
        reports.watched = frozenset(s.changelog_topic for s in self.stores if s.persistent)

    def _local(self, store: CompiledStore, partition: int) -> LocalState:
        states = self.processor.local_states
        assert states is not None
        return states.open(store.name, partition)

    # ---- restore --------------------------------------------------------------------------------

    def restore(self, partitions: set[TP], committed: Mapping[TP, int]) -> None:
        """Make the state of `partitions` what it was at their committed offsets."""
        for tp in partitions:
            if tp in committed:
                self.offsets[tp] = committed[tp]
        kept = {tp for tp in partitions if tp in self.parked and self.parked[tp] == committed.get(tp)}
        stale = set(self.parked) - kept
        self.parked = {}
        self._forget(stale)
        if kept:
            self.log.info("state_kept", partitions=[f"{t}:{p}" for t, p in sorted(kept)])
        for store in self.stores:
            for topic, partition in sorted(partitions - kept):
                if topic == store.source_topic:
                    self._restore(store, partition, committed.get((topic, partition), 0))

    def _restore(self, store: CompiledStore, partition: int, up_to: int) -> None:
        started = time.monotonic()
        local = self._local(store, partition) if store.persistent else None
        start: int | None = None
        if local is not None:
            local.discard()
            cp = local.checkpoint()
            if cp is not None and cp.source_offset <= up_to:
                start = cp.changelog_offset
            elif cp is not None:
                local.wipe()  # the offsets went back past the checkpoint: rebuild from the log
        entries, end = self._read(store, partition, up_to, start)
        if local is not None and start is not None and end < start:
            self.log.warning("changelog_behind_checkpoint", store=store.name, partition=partition)
            local.wipe()
            start = None
            entries, end = self._read(store, partition, up_to, None)
        if local is None:
            store.engine.restore(partition, entries)
        else:
            local.load(entries, end, up_to)
            if store.resident:
                store.engine.restore_local(partition)  # type: ignore[union-attr]
            else:
                store.engine.restore(partition, local.items())
        m.STATE_RESTORED.labels(**self.labels, store=store.name).inc(len(entries))
        self.log.info(
            "state_restored",
            store=store.name,
            partition=partition,
            entries=len(entries),
            from_offset=start or 0,
            to_offset=end,
            local=local is not None and start is not None,
            up_to=up_to,
            seconds=round(time.monotonic() - started, 3),
        )

    def _read(
        self, store: CompiledStore, partition: int, up_to: int, start: int | None
    ) -> tuple[list[tuple[bytes, bytes | None]], int]:
        return read_changelog_from(
            self.settings.bootstrap_servers,
            store.changelog_topic,
            partition,
            up_to,
            start,
            stall_timeout=self.stall_timeout_s,
            progress=self._progress(store.name, partition),
        )

    def _progress(self, store: str, partition: int) -> Callable[[int, int], None]:
        export = self.obs.restore_progress(store, partition)
        last = [time.monotonic()]

        def progress(done: int, total: int) -> None:
            export(done, total)
            now = time.monotonic()
            if now - last[0] >= PROGRESS_LOG_INTERVAL_S and total:
                last[0] = now
                self.log.info(
                    "state_restore_progress",
                    store=store,
                    partition=partition,
                    records=done,
                    of=total,
                    percent=round(100.0 * done / total, 1),
                )

        return progress

    # ---- revoke ---------------------------------------------------------------------------------

    def drop(self, partitions: set[TP]) -> None:
        """Revoked `partitions`: kept aside while their state is the committed one (an eager revoke
        that hands them straight back keeps it), else forgotten."""
        if self.clean:
            for tp in partitions:
                if any(s.source_topic == tp[0] for s in self.stores):
                    self.parked[tp] = self.offsets.pop(tp, None)
            return
        for tp in partitions:
            self.offsets.pop(tp, None)
        self._forget(partitions)

    def _forget(self, partitions: set[TP]) -> None:
        for store in self.stores:
            for topic, partition in partitions:
                if topic == store.source_topic:
                    store.engine.drop(partition)
                    if store.persistent and self.processor.local_states is not None:
                        self.processor.local_states.close(store.name, partition)

    # ---- commit ---------------------------------------------------------------------------------

    def flush(self, producer: Producer, positions: Mapping[TP, int], committed: Mapping[TP, int]) -> None:
        """Write the state changed since the last commit to the changelogs, inside the open transaction,
        tagged with the source offset it reflects. Once per commit, so each changed entry goes once."""
        self._flushed = []
        self._positions = dict(positions)
        self.reports.take_last_offsets()  # what an aborted transaction delivered says nothing now
        for store in self.stores:
            for partition in sorted(store.engine.partitions):
                changes = store.engine.changes(partition)
                key = (store.source_topic, partition)
                source_offset = positions.get(key, committed.get(key, 0))
                if changes:
                    write_changes(producer, store.changelog_topic, partition, changes, source_offset)
                if store.persistent and (changes or key in positions):
                    self._flushed.append((store, partition, changes, source_offset))

    def committed(self) -> None:
        """The transaction committed: the flushed changes become the local committed state."""
        last = self.reports.take_last_offsets()
        self.offsets.update(self._positions)
        for store, partition, changes, source_offset in self._flushed:
            end = last.get((store.changelog_topic, partition))
            self._local(store, partition).commit(changes, None if end is None else end + 1, source_offset)
        self._flushed = []
        self.clean = True

    def aborted(self) -> None:
        """The transaction was aborted: forget what it changed (the manager restores the partitions)."""
        self._flushed = []
        self.clean = False
        states = self.processor.local_states
        for store in self.stores:
            if store.persistent and states is not None:
                for partition in store.engine.partitions:
                    local = states.get(store.name, partition)
                    if local is not None:
                        local.discard()

    def close(self) -> None:
        if self.processor.local_states is not None:
            self.processor.local_states.close_all()
