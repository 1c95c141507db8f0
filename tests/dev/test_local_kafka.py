"""The local broker's pure helpers."""

from __future__ import annotations

from streamsvc.dev import kafka


def test_cluster_ids_never_start_with_a_dash() -> None:
    ids = [kafka._cluster_id() for _ in range(5000)]
    assert not any(cid.startswith("-") for cid in ids)
    assert all(len(cid) == 22 for cid in ids)
    assert len(set(ids)) == len(ids)


def test_server_properties_use_one_replica_for_internal_topics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    props = kafka._server_properties(kafka.LocalKafka(home=tmp_path, port=29092))
    lines = set(props.splitlines())
    for expected in (
        "process.roles=broker,controller",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093",
    ):
        assert expected in lines
