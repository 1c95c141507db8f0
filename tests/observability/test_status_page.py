"""The status page in real headless Chromium: it loads, draws the topology graph, its JavaScript refreshes
from /api/status, and the numbers it shows match /metrics. The screenshot is kept as a test artifact
(under $STREAMSVC_ARTIFACTS, default .streamsvc/artifacts; never committed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.observability.support import ObservedRun, poison_and_good, scrape, total
from tests.support import ROOT, produce

pytestmark = pytest.mark.ops
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=8000",
    "--window-size=1400,1600",
]


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[str] = []
        self.counts: dict[str, str] = {}
        self.body: dict[str, str | None] = {}
        self._counts_for: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "g" and a.get("data-node"):
            self.nodes.append(str(a["data-node"]))
        if tag == "text" and a.get("data-counts"):
            self._counts_for = a["data-counts"]
        if tag == "body":
            self.body = a

    def handle_data(self, data: str) -> None:
        if self._counts_for is not None:
            self.counts[self._counts_for] = self.counts.get(self._counts_for, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self._counts_for = None


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium missing: run .ci/ops-tools.sh"
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


def test_status_page_in_headless_chromium(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = ObservedRun(bootstrap, names, tmp_path)
    try:
        run.wait_ready()
        records, exp = poison_and_good(int(time.time() * 1000), 0, 40)
        produce(bootstrap, run.input, records)
        samples = run.wait_consumed(exp.consumed)
        dom = chromium("--dump-dom", run.worker_url + "/", profile=tmp_path / "profile-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        page = Page()
        page.feed(dom.stdout)
        source = f"source:{run.input}"
        assert {source, f"dlq:{run.input}.dlq", f"sink:{names('output')}", f"sink:{names('counts')}"} <= set(
            page.nodes
        )
        assert any(n.startswith("changelog:") for n in page.nodes)
        assert any(n.startswith("op:") for n in page.nodes)
        assert int(page.body.get("data-refreshed") or 0) >= 1, "the page's JavaScript did not refresh"
        shown = dict(re.findall(r"([a-z ]+?) (\d+)(?: · |$)", page.counts[source]))
        for label, metric in (
            ("consumed", "streamsvc_records_consumed_total"),
            ("emitted", "streamsvc_records_emitted_total"),
            ("filtered", "streamsvc_records_filtered_total"),
            ("dead lettered", "streamsvc_records_dead_lettered_total"),
        ):
            assert int(shown[label.strip()]) == total(samples, metric, app=run.app, topic=run.input), label
        assert "Dead letters by reason" in dom.stdout and "MalformedPayloadError" in dom.stdout

        artifacts = Path(os.environ.get("STREAMSVC_ARTIFACTS", ROOT / ".streamsvc" / "artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = artifacts / "status-page.png"
        shot.unlink(missing_ok=True)
        done = chromium(f"--screenshot={shot}", run.worker_url + "/", profile=tmp_path / "profile-shot")
        assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
        assert scrape(run.sink_url)  # the sink serves the same control plane
    finally:
        run.close()
