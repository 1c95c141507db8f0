"""`streamsvc demo` at a small size, as a user runs it: the summary is complete, every table it lists
equals the oracle, and the terminal gets no librdkafka or log lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from streamsvc.generate.harness import ShopRun
from streamsvc.generate.shop import ShopConfig, default_start_ms, shop_events
from streamsvc.sinks.iceberg.catalog import make_catalog
from tests.generate.shop_checks import check_tables, oracle
from tests.support import ROOT

pytestmark = pytest.mark.kafka
SECTIONS = (
    "records per topic (inputs, outputs committed, dead letters):",
    "dead letters by reason",
    "windows emitted:",
    "Iceberg tables (rows; offsets in the latest snapshot):",
    "consumer lag of the pipeline: 0",
    "invariant consumed = emitted + dead-lettered + filtered + late:",
    "streamsvc dlq inspect",
    "pyiceberg",
)


def test_demo_summary_and_tables_equal_the_oracle(bootstrap, registry_url, names, tmp_path) -> None:  # type: ignore[no-untyped-def]
    start = default_start_ms()
    args = ["--records", "800", "--seconds", "3", "--seed", "5", "--start-ms", str(start)]
    argv = [sys.executable, "-m", "streamsvc.cli.main", "--log-level", "warning", "demo", *args]
    argv += ["--prefix", names.prefix, "--dir", str(tmp_path), "--keep", "--port", "0"]
    env = {**os.environ, "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap, "STREAMSVC_REGISTRY_URL": registry_url}
    run = ShopRun(bootstrap, registry_url, names.prefix, tmp_path)
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        out = proc.stdout
        assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
        for section in SECTIONS:
            assert section in out, f"summary lacks {section!r}:\n{out[-3000:]}"
        assert " holds" in out and "BROKEN" not in out
        assert not re.search(r"%\d\|", out + proc.stderr), "librdkafka log lines reached the terminal"
        assert not re.search(r'"level": ?"', out + proc.stderr), "log lines reached the terminal"
        for reason in ("late", "validate", "decode", "process"):
            assert re.search(rf"shop\.\S+\s+pipeline\s+{reason}\s", out), f"no DLQ reason {reason}"
        listed = re.findall(r"^  (shop_\w+\.\w+)\s+(\d[\d,]*)\s", out, re.M)
        assert len(listed) == 7, out
        want = oracle.expected(shop_events(ShopConfig(records=800, seed=5, malformed=0.03, start_ms=start)))
        for topic, values in want.outputs.items():
            line = re.search(rf"^  {re.escape(run.topic(topic))}\s+([\d,]+)$", out, re.M)
            assert line and int(line.group(1).replace(",", "")) == sum(values.values()), topic
        catalog = make_catalog(run.catalog_config)
        for table, rows in listed:
            assert catalog.load_table(table).scan().to_arrow().num_rows == int(rows.replace(",", ""))
        check_tables(catalog, want)
    finally:
        run.cleanup()


def test_demo_removes_what_it_created(bootstrap, registry_url, names, schema_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "demo"
    argv = [sys.executable, "-m", "streamsvc.cli.main", "demo", "--records", "300", "--seconds", "1"]
    argv += ["--prefix", names.prefix, "--dir", str(work), "--port", "0"]
    env = {**os.environ, "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap, "STREAMSVC_REGISTRY_URL": registry_url}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not work.exists()
    admin = names.admin
    assert not [t for t in admin.list_topics(timeout=10).topics if t.startswith(names.prefix)]
    assert not [s for s in schema_registry.get_subjects() if s.startswith(names.prefix)]
    groups = admin.list_consumer_groups().result(30).valid
    left = [g.group_id for g in groups if g.group_id.startswith(names.prefix)]
    assert not left or "left to expire:" in proc.stdout, proc.stdout[-2000:]
