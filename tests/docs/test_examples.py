"""Every fenced ```python block of README.md and docs/*.md runs as written.

The blocks of one page run in order in one namespace (a page reads like a notebook), in a fresh working
directory, against the real broker (`STREAMSVC_BOOTSTRAP_SERVERS`, from the `bootstrap` fixture) and the
real schema registry. Examples name their topics `docs.<random>.<name>`; topics with the `docs.` prefix
that a page created are deleted after it. A block preceded by the line `<!-- not run: <reason> -->` is an
illustrative fragment and is skipped (keep those rare).
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from streamsvc.runtime.topics import delete_topics
from tests.support import ROOT

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = "<!-- not run:"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the first code line
    code: str
    run: bool


def blocks(page: Path) -> list[Block]:
    """The ```python blocks of `page`, each with the line its code starts on."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        line = text.count("\n", 0, match.start(1)) + 1
        found.append(Block(page, line, match.group(1), not before.strip().startswith(NOT_RUN)))
    return found


def run_page(page_blocks: list[Block]) -> dict[str, Any]:
    """Execute the blocks in order in one namespace; a failure names the page and the block's line."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in page_blocks:
        if not block.run:
            continue
        where = f"{block.page.relative_to(ROOT) if block.page.is_relative_to(ROOT) else block.page}"
        # Pad with newlines so tracebacks point at the line in the Markdown file.
        code = compile("\n" * (block.line - 1) + block.code, where, "exec")
        try:
            exec(code, namespace)
        except Exception as exc:
            raise AssertionError(f"{where}:{block.line}: the example fails: {exc!r}") from exc
    return namespace


def _docs_topics(admin: AdminClient) -> set[str]:
    return {t for t in admin.list_topics(timeout=10).topics if t.startswith("docs.")}


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.name)
def test_the_examples_of_a_page_run(
    page: Path,
    bootstrap: str,
    registry_url: str,
    admin: AdminClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMSVC_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("STREAMSVC_REGISTRY_URL", registry_url)
    monkeypatch.setenv("STREAMSVC_METRICS_PORT", "0")
    monkeypatch.setenv("STREAMSVC_STATE_DIR", str(tmp_path / "state"))
    # `python -m streamsvc.cli.main` in an example runs this checkout's streamsvc.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    before = _docs_topics(admin)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run_page(blocks(page))
    finally:
        for sig, handler in handlers.items():  # Worker.run() installs its own
            signal.signal(sig, handler)
        delete_topics(admin, sorted(_docs_topics(admin) - before))


def test_the_pages_have_examples_and_few_are_skipped() -> None:
    every = [b for p in PAGES for b in blocks(p)]
    skipped = [f"{b.page.name}:{b.line}" for b in every if not b.run]
    assert len(skipped) <= len(every) // 5, f"too many blocks not run: {skipped}"
    concepts = ("topology", "windows", "joins", "state", "exactly-once", "dlq", "iceberg", "operations")
    without = [c for c in concepts if not any(b.run for b in blocks(ROOT / "docs" / f"{c}.md"))]
    assert not without, f"concept pages without a runnable example: {without}"


def test_a_broken_example_fails(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text(
        "# Broken\n\n```python\nx = 1\n```\n\n<!-- not run: a fragment -->\n```python\nnot valid(\n```\n\n"
        "```python\ny = x + normalise(2)\n```\n"
    )
    found = blocks(page)
    assert [(b.line, b.run) for b in found] == [(4, True), (9, False), (13, True)]
    with pytest.raises(AssertionError, match=r"broken.md:13: the example fails: NameError"):
        run_page(found)
