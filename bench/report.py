"""The tables, the JSON summary and the chart of a bench run."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stats

# ------------------------------------------------------------------------------------------- reports


@dataclass
class Row:
    engine: str
    label: str
    rep: int
    status: str  # "ok", "wrong", "not run: ..." or "failed: ..."
    records: int = 0
    active_s: float = math.nan
    events_per_s: float = math.nan
    cpu_active_s: float = math.nan
    cpu_total_s: float = math.nan
    per_cpu_active: float = math.nan
    per_cpu_total: float = math.nan
    peak_rss_mb: float = math.nan
    gate: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


COLUMNS = [
    ("events/s (active)", "events_per_s", ",.0f"),
    ("events per active CPU-s", "per_cpu_active", ",.0f"),
    ("events per process CPU-s", "per_cpu_total", ",.0f"),
    ("CPU s (active)", "cpu_active_s", ",.1f"),
    ("peak RSS MB", "peak_rss_mb", ",.0f"),
]


def summarise(rows: list[Row], order: list[str]) -> list[dict[str, Any]]:
    out = []
    names = []
    for name in order:
        for r in rows:
            if (r.engine == name or r.engine.startswith(name + "-")) and r.engine not in names:
                if name == "streamsvc-eos" and r.engine.startswith("streamsvc-eos-"):
                    continue
                if name == "streamsvc-alo" and r.engine.startswith("streamsvc-alo-"):
                    continue
                names.append(r.engine)
    for name in names:
        mine = [r for r in rows if r.engine == name]
        ok = [r for r in mine if r.status == "ok"]
        entry: dict[str, Any] = {"engine": name, "label": mine[0].label, "reps": len(mine), "ok": len(ok)}
        bad = [r for r in mine if r.status != "ok"]
        entry["status"] = (
            "ok"
            if not bad
            else bad[0].status
            if not ok
            else f"{len(bad)} of {len(mine)} reps: {bad[0].status}"
        )
        entry["gate"] = sorted({r.gate for r in mine if r.gate})
        for _, key, _ in COLUMNS:
            s = stats.spread([getattr(r, key) for r in ok])
            entry[key] = {"median": s.median, "min": s.lo, "max": s.hi}
        out.append(entry)
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    lines = ["| engine | " + " | ".join(c for c, _, _ in COLUMNS) + " | correctness gate |"]
    lines.append("|---|" + "---:|" * len(COLUMNS) + "---|")
    for e in summary:
        if not e["ok"]:
            why = "; ".join(e["gate"]) if e["status"] == "wrong" else e["status"]
            lines.append(f"| {e['label']} | " + " | ".join("-" for _ in COLUMNS) + f" | {why} |")
            continue
        cells = [stats.Spread(e[k]["median"], e[k]["min"], e[k]["max"]).fmt(spec) for _, k, spec in COLUMNS]
        gate = "; ".join(e["gate"]) if e["gate"] else "n/a (no output)"
        if e["status"] != "ok":
            gate += f"; {e['status']}"
        lines.append(f"| {e['label']} | " + " | ".join(cells) + f" | {gate} |")
    return "\n".join(lines)


def latency_markdown(latency: list[dict[str, Any]]) -> str:
    lines = [
        "| engine (latency phase) | input events/s (half its max) | windows | p50 ms | p99 ms | max ms "
        "| correctness gate |"
    ]
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for lat in latency:
        if "error" in lat:
            lines.append(f"| {lat['label']} | - | - | - | - | - | failed: {lat['error']} |")
            continue
        lines.append(
            f"| {lat['label']} | {lat['rate']:,.0f} | {lat['windows']:,} | {lat['p50_ms']:,.0f} "
            f"| {lat['p99_ms']:,.0f} "
            f"| {lat['max_ms']:,.0f} | {lat['gate']} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GB, {system}"


def chart(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in summary if e["ok"]]
    labels = [e["label"] for e in shown]
    med = [e["per_cpu_active"]["median"] for e in shown]
    lo = [m - e["per_cpu_active"]["min"] for m, e in zip(med, shown, strict=True)]
    hi = [e["per_cpu_active"]["max"] - m for m, e in zip(med, shown, strict=True)]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.6))
    colors = [
        "#888888" if e["engine"] == "raw" else "#1f77b4" if e["engine"].startswith("streamsvc") else "#ff7f0e"
        for e in shown
    ]
    ax.barh(labels, med, xerr=[lo, hi], color=colors, capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel("events per CPU-second of the engine's process tree, active period (median, min-max)")
    ax.set_title(title, fontsize=10)
    for y, m in enumerate(med):
        ax.text(m, y, f" {m:,.0f}", va="center", fontsize=8)
    not_run = [e["label"] + ": " + e["status"][:70] for e in summary if not e["ok"]]
    if not_run:
        fig.text(0.01, 0.01, "not shown: " + "; ".join(not_run), fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.05 if not_run else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
