"""The status page: server-rendered HTML with the topology as an inline SVG graph, refreshed every two
seconds by a few lines of JavaScript from `/api/status`. No build step, no external assets."""

from __future__ import annotations

import time
from html import escape
from typing import Any

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 230, 58, 290, 78, 20
COLOURS = {
    "source": "#dbeafe",
    "operator": "#f1f5f9",
    "sink": "#dcfce7",
    "dlq": "#fee2e2",
    "changelog": "#fef9c3",
    "repartition": "#ede9fe",
    "table": "#e0f2fe",
    "iceberg": "#ccfbf1",
}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _counts_text(counts: dict[str, float]) -> str:
    return " · ".join(f"{k.replace('_', ' ')} {_num(v)}" for k, v in counts.items())


def _dom_id(node_id: str) -> str:
    return "node-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in node_id)


def render_graph(agent: dict[str, Any]) -> str:
    """The agent's topology as SVG: one column per depth, edges as arrows left to right."""
    nodes = agent["graph"]["nodes"]
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for node in nodes:
        col = node["column"]
        row = rows.get(col, 0)
        rows[col] = row + 1
        pos[node["id"]] = (PAD + col * COL_GAP, PAD + row * ROW_GAP)
    width = PAD * 2 + (max((n["column"] for n in nodes), default=0)) * COL_GAP + NODE_W
    height = PAD * 2 + max(rows.values(), default=1) * ROW_GAP
    out = [
        f'<svg class="graph" data-agent="{escape(agent["agent"])}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#64748b"/>'
        "</marker></defs>",
    ]
    for edge in agent["graph"]["edges"]:
        (x1, y1), (x2, y2) = pos[edge["from"]], pos[edge["to"]]
        ax, ay, bx, by = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        if bx <= ax:  # same column (e.g. a table feeding a join below it): go around the left side
            ax, bx = x1, x2
        mid = (ax + bx) / 2
        out.append(
            f'<path class="edge" d="M {ax} {ay} C {mid} {ay}, {mid} {by}, {bx} {by}" fill="none" '
            f'stroke="#64748b" marker-end="url(#arrow)"/>'
        )
        if edge["label"]:
            out.append(
                f'<text class="edge-label" x="{mid}" y="{(ay + by) / 2 - 4}" text-anchor="middle">'
                f"{escape(edge['label'])}</text>"
            )
    counts = agent["counts"]
    for node in nodes:
        x, y = pos[node["id"]]
        fill = COLOURS.get(node["kind"], "#ffffff")
        label = node["label"] if len(node["label"]) <= 34 else "…" + node["label"][-33:]
        out.append(
            f'<g class="node {escape(node["kind"])}" id="{_dom_id(node["id"])}" '
            f'data-node="{escape(node["id"])}"><title>{escape(node["label"])}</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8" fill="{fill}" '
            'stroke="#475569"/>'
            f'<text x="{x + 8}" y="{y + 18}" class="kind">{escape(node["kind"])}</text>'
            f'<text x="{x + 8}" y="{y + 34}" class="label">{escape(label)}</text>'
            f'<text x="{x + 8}" y="{y + 50}" class="counts" data-counts="{escape(node["id"])}">'
            f"{escape(_counts_text(counts.get(node['id'], {})))}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _table(cls: str, head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _when(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + "Z"


def _agent_tables(agent: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    return {
        "lag": (
            ["topic", "partition", "lag (records)"],
            [[r["topic"], str(r["partition"]), _num(r["lag"])] for r in agent["lag"]],
        ),
        "dlq": (
            ["topic", "stage", "error class", "records"],
            [[r["topic"], r["stage"], r["error_class"], _num(r["count"])] for r in agent["dlq"]],
        ),
        "commits": (
            ["at (UTC)", "duration (ms)", "records"],
            [[_when(c["at"]), f"{c['seconds'] * 1000:.1f}", str(c["records"])] for c in agent["commits"]],
        ),
        "watermarks": (
            ["partition", "watermark (UTC)"],
            [
                [str(w["partition"]), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(w["watermark"]))]
                for w in agent["watermarks"]
            ],
        ),
    }


def render_agent(agent: dict[str, Any]) -> str:
    t = agent["transactions"]
    parts = [
        f'<section class="agent" data-agent="{escape(agent["agent"])}">',
        f"<h2>{escape(agent['agent'])} <small>{escape(agent['kind'])} · {escape(agent['guarantee'])}"
        f" · app {escape(agent['app'])}"
        + (f" · transactional.id {escape(agent['transactional_id'])}" if agent["transactional_id"] else "")
        + "</small></h2>",
        f'<p class="txn">transactions committed <b data-txn="committed">{_num(t["committed"])}</b> · '
        f'aborted <b data-txn="aborted">{_num(t["aborted"])}</b> · consecutive aborts '
        f'<b data-txn="consecutive_aborts">{_num(t["consecutive_aborts"])}</b></p>',
        render_graph(agent),
        '<div class="tables">',
    ]
    titles = {
        "lag": "Lag per partition",
        "dlq": "Dead letters by reason",
        "commits": "Last commits",
        "watermarks": "Watermark per partition",
    }
    for key, (head, rows) in _agent_tables(agent).items():
        parts.append(f"<div><h3>{titles[key]}</h3>{_table(key, head, rows)}</div>")
    parts.append("</div></section>")
    return "".join(parts)


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#0f172a;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}small{color:#475569;font-weight:normal}
.graph{border:1px solid #e2e8f0;border-radius:6px;background:#f8fafc;max-width:100%;height:auto}
.graph text{font-size:12px}.graph .kind{fill:#475569;font-size:10px;text-transform:uppercase}
.graph .counts{fill:#0f172a;font-size:11px}.edge-label{fill:#64748b;font-size:10px}
.tables{display:flex;flex-wrap:wrap;gap:2em}table{border-collapse:collapse;margin-top:.3em}
td,th{border:1px solid #cbd5e1;padding:2px 8px;text-align:left}th{background:#f1f5f9}
.state{padding:2px 8px;border-radius:4px}.ok{background:#dcfce7}.bad{background:#fee2e2}
"""

_SCRIPT = """
const num = v => Number.isInteger(v) ? String(v) : v.toFixed(3);
const counts = c => Object.entries(c || {})
  .map(([k, v]) => k.replaceAll('_', ' ') + ' ' + num(v)).join(' · ');
let refreshed = 0;
async function refresh() {
  try {
    const r = await fetch('/api/status', {cache: 'no-store'});
    const s = await r.json();
    for (const a of s.agents) {
      const sec = document.querySelector(`section.agent[data-agent="${CSS.escape(a.agent)}"]`);
      if (!sec) continue;
      for (const el of sec.querySelectorAll('[data-counts]'))
        el.textContent = counts(a.counts[el.dataset.counts]);
      for (const el of sec.querySelectorAll('[data-txn]'))
        el.textContent = num(a.transactions[el.dataset.txn]);
      const rows = {
        lag: a.lag.map(x => [x.topic, x.partition, num(x.lag)]),
        dlq: a.dlq.map(x => [x.topic, x.stage, x.error_class, num(x.count)]),
        commits: a.commits.map(c => [new Date(c.at * 1000).toISOString().slice(11, 19) + 'Z',
                                     (c.seconds * 1000).toFixed(1), c.records]),
        watermarks: a.watermarks.map(w => [
          w.partition, new Date(w.watermark * 1000).toISOString().slice(0, 19).replace('T', ' ')]),
      };
      for (const [cls, data] of Object.entries(rows)) {
        const body = sec.querySelector(`table.${cls} tbody`);
        body.replaceChildren(...data.map(r => {
          const tr = document.createElement('tr');
          for (const c of r) { const td = document.createElement('td'); td.textContent = c; tr.append(td); }
          return tr;
        }));
      }
    }
    const st = document.getElementById('state');
    st.textContent = s.not_ready.length ? 'not ready: ' + s.not_ready.join('; ') : 'ready';
    st.className = 'state ' + (s.not_ready.length ? 'bad' : 'ok');
    document.body.dataset.refreshed = String(++refreshed);
  } catch (e) { document.body.dataset.error = String(e); }
}
refresh(); setInterval(refresh, 2000);
"""


def render_page(status: dict[str, Any]) -> str:
    """The whole page for a `StatusBoard.snapshot()` (plus `not_ready` reasons)."""
    not_ready = status.get("not_ready", [])
    state = "not ready: " + "; ".join(not_ready) if not_ready else "ready"
    agents = "".join(render_agent(a) for a in status["agents"]) or "<p>No agent registered yet.</p>"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>streamsvc status</title>"
        f"<style>{_STYLE}</style></head><body data-refreshed='0'>"
        f"<h1>streamsvc <span id='state' class='state {'bad' if not_ready else 'ok'}'>"
        f"{escape(state)}</span></h1>"
        f"{agents}<script>{_SCRIPT}</script></body></html>"
    )
