"""The shop pipeline on the real broker and registry: every output, dead letter and Iceberg table equals
the oracle computed from the generated input."""

from __future__ import annotations

import pytest

from streamsvc.generate.harness import ShopRun
from streamsvc.generate.shop import CLICKS, ORDERS, ShopConfig, shop_events
from streamsvc.sinks.iceberg.catalog import make_catalog
from tests.generate.shop_checks import check_tables, dlq_stages, oracle, topic_values

pytestmark = pytest.mark.kafka


def test_shop_pipeline_and_tables_equal_the_oracle(bootstrap, registry_url, names, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = ShopRun(bootstrap, registry_url, names.prefix, tmp_path)
    try:
        run.create_topics()
        run.register_schemas()
        events = shop_events(ShopConfig(records=1_500, seed=11))
        produced = run.produce(events)
        want = oracle.expected(events)

        run.run_pipeline(run.input_counts(produced))
        for topic in run.pipeline.OUTPUTS:
            assert topic_values(run, topic) == want.outputs[topic], f"{topic} != oracle"
        assert all(want.outputs[t] for t in run.pipeline.OUTPUTS), "a small run still fills every output"
        assert dlq_stages(run, CLICKS) == want.dlq[CLICKS]
        assert dlq_stages(run, ORDERS) == want.dlq[ORDERS]
        assert want.late > 0

        sinks = run.worker(sinks=True)
        assert sinks.run() == 0, sinks.errors
        check_tables(make_catalog(run.catalog_config), want)
    finally:
        run.cleanup()
