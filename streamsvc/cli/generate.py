"""`streamsvc generate shop|nexmark`: deterministic (seeded) traffic for the shop pipeline or Nexmark.

    streamsvc generate shop [--records N] [--seed S] [--malformed F] [--late F] [--rate N] [--prefix P]
    streamsvc generate nexmark [--records N] [--seed S] [--rate N] [--topic T]

`shop` creates the input topics when missing (one partition each), registers the Avro schemas of
`schemas/shop/` under `<topic>-value` (v1, then the compatible v2 the customers switch to half-way),
and produces Debezium CDC to `shop.public.customers`/`shop.public.orders` and JSON clicks to
`shop.clicks` (names prefixed with `<prefix>.` when given). `--rate 0` (the default) produces as fast as
possible. A progress line goes to stderr; the per-topic counts to stdout at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator

import orjson

from streamsvc.dev import kafka, registry
from streamsvc.generate.produce import Encoder, KafkaRecord, Progress, produce
from streamsvc.generate.shop import TOPICS, ShopConfig, iter_shop_events
from streamsvc.registry.client import REGISTRY_URL_ENV, registry_client
from streamsvc.runtime.topics import admin_client, ensure_topics


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gen = sub.add_parser("generate", help="produce deterministic shop or Nexmark traffic to Kafka")
    kinds = gen.add_subparsers(dest="traffic", required=True)
    shop = kinds.add_parser("shop", help="Debezium CDC customers/orders (Avro) and JSON clicks")
    shop.add_argument("--records", type=int, default=10_000, help="events after the customer snapshot")
    shop.add_argument("--customers", type=int, default=60, help="customers in the CDC snapshot (default 60)")
    shop.add_argument("--malformed", type=float, default=0.03, help="share of poison records (every kind)")
    shop.add_argument("--late", type=float, default=0.02, help="share of clicks late beyond the grace")
    shop.add_argument("--out-of-order", type=float, default=0.1, help="share of clicks out of order")
    shop.add_argument("--prefix", default="", help="prefix topic names with '<prefix>.'")
    nex = kinds.add_parser("nexmark", help="Nexmark bids (JSON, keyed by auction)")
    nex.add_argument("--records", type=int, default=100_000, help="bids to produce (default 100,000)")
    nex.add_argument("--topic", default="nexmark.bids", help="topic to write (default nexmark.bids)")
    nex.add_argument("--partitions", type=int, default=4, help="partitions when the topic is created")
    for p in (shop, nex):
        p.add_argument("--seed", type=int, default=7, help="same seed, same bytes (default 7)")
        p.add_argument("--rate", type=float, default=0.0, help="records per second (0: as fast as possible)")
        p.add_argument(
            "--bootstrap-servers", help="default: $STREAMSVC_BOOTSTRAP_SERVERS or the local broker"
        )
    shop.add_argument("--registry-url", help=f"default: ${REGISTRY_URL_ENV} or the local registry")
    shop.set_defaults(func=run_shop)
    nex.set_defaults(func=run_nexmark)


def bootstrap_servers(given: str | None = None) -> str:
    """The given servers, $STREAMSVC_BOOTSTRAP_SERVERS, or the local broker (started if needed)."""
    return given or os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS") or kafka.start(kafka.LocalKafka.from_env())


def registry_url(given: str | None = None) -> str:
    """The given URL, $STREAMSVC_REGISTRY_URL, or the local registry (started if needed)."""
    return given or os.environ.get(REGISTRY_URL_ENV) or registry.start(registry.LocalRegistry.from_env())


def _progress(line: Progress) -> Callable[[Counter[str], float], None]:
    def show(counts: Counter[str], elapsed: float) -> None:
        total = sum(counts.values())
        line.show(f"generated {total:>9,} records  {total / max(elapsed, 1e-9):>9,.0f}/s")

    return show


def _finish(line: Progress, counts: Counter[str]) -> int:
    line.done()
    for topic, n in sorted(counts.items()):
        print(f"{topic:<40} {n:>9}")
    return 0


def run_shop(args: argparse.Namespace) -> int:
    bootstrap, url = bootstrap_servers(args.bootstrap_servers), registry_url(args.registry_url)
    topics = {t: f"{args.prefix}.{t}" if args.prefix else t for t in TOPICS}
    ensure_topics(admin_client(bootstrap), dict.fromkeys(topics.values(), 1))
    encoder = Encoder(registry_client(url), topics)
    encoder.register()
    config = ShopConfig(
        records=args.records,
        customers=args.customers,
        seed=args.seed,
        malformed=args.malformed,
        late=args.late,
        out_of_order=args.out_of_order,
    )
    line = Progress(sys.stderr)
    records = (encoder.encode(e) for e in iter_shop_events(config))
    counts = produce(bootstrap, records, args.rate, _progress(line))
    return _finish(line, counts)


def _bid_records(args: argparse.Namespace) -> Iterator[KafkaRecord]:
    from streamsvc.generate.nexmark import bids

    for bid in bids(args.records, seed=args.seed):
        yield args.topic, str(bid.auction).encode(), orjson.dumps(bid.to_json_dict()), bid.date_time


def run_nexmark(args: argparse.Namespace) -> int:
    bootstrap = bootstrap_servers(args.bootstrap_servers)
    ensure_topics(admin_client(bootstrap), {args.topic: args.partitions})
    line = Progress(sys.stderr)
    counts = produce(bootstrap, _bid_records(args), args.rate, _progress(line))
    return _finish(line, counts)
