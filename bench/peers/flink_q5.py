"""Nexmark Q5-lite on Apache Flink SQL (PyPI `apache-flink`, local mode), the peer of bench/run.

Runs in .venv-peers/flink (bench/peers/requirements-flink.txt) with the Kafka SQL connector jar from
Maven Central; imports nothing from streamsvc. HOP window of 10 s every 2 s counted per auction,
watermark 1 s behind the largest event time, exactly-once Kafka sink, 1 s checkpoints, parallelism 1.

One job per output topic in this JVM (cold, then warm); a job is cancelled when the harness writes a
line on stdin. A SQL job cannot report its first record, so "first_record" is printed when the job is
submitted: the active period includes Flink's job start.

Flink fires a window when the watermark reaches end - 1 ms; the watermark is therefore 1.001 s behind
the largest event time, so a window closes at end + 1 s of event time as in the other engines (grace 1 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("bootstrap", "source", "outputs", "app-id", "work", "connector-jar"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args()
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("pipeline.jars", f"file://{args.connector_jar}")
    conf.set("parallelism.default", "1")
    conf.set("execution.checkpointing.interval", "1s")
    conf.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set("table.local-time-zone", "UTC")
    conf.set("state.checkpoints.dir", f"file://{args.work}/checkpoints")
    for i, output in enumerate(args.outputs.split(",")):
        env.execute_sql(f"""
            CREATE TABLE bids_{i} (
                auction BIGINT, bidder BIGINT, price BIGINT, date_time BIGINT,
                ts AS TO_TIMESTAMP_LTZ(date_time, 3),
                WATERMARK FOR ts AS ts - INTERVAL '1.001' SECOND
            ) WITH (
                'connector' = 'kafka', 'topic' = '{args.source}',
                'properties.bootstrap.servers' = '{args.bootstrap}',
                'properties.group.id' = '{args.app_id}-{i}',
                'properties.isolation.level' = 'read_committed',
                'scan.startup.mode' = 'earliest-offset', 'format' = 'json'
            )""")
        env.execute_sql(f"""
            CREATE TABLE counts_{i} (k STRING, `start` BIGINT, `end` BIGINT, `value` BIGINT) WITH (
                'connector' = 'kafka', 'topic' = '{output}',
                'properties.bootstrap.servers' = '{args.bootstrap}',
                'key.format' = 'raw', 'key.fields' = 'k',
                'value.format' = 'json', 'value.fields-include' = 'EXCEPT_KEY',
                'sink.delivery-guarantee' = 'exactly-once',
                'sink.transactional-id-prefix' = '{args.app_id}-{i}-{int(time.time())}',
                'properties.transaction.timeout.ms' = '600000'
            )""")
        result = env.execute_sql(f"""
            INSERT INTO counts_{i}
            SELECT CAST(auction AS STRING),
                   CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', window_start)
                        AS BIGINT) * 1000,
                   CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', window_end) AS BIGINT) * 1000,
                   COUNT(*)
            FROM TABLE(HOP(TABLE bids_{i}, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
            GROUP BY auction, window_start, window_end""")
        print(json.dumps({"event": "first_record", "pass": i, "at": time.time()}), flush=True)
        sys.stdin.readline()  # the harness has seen this pass's results
        client = result.get_job_client()
        if client is not None:
            client.cancel().result()
    print(json.dumps({"event": "done"}), flush=True)


if __name__ == "__main__":
    main()
