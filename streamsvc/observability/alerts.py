"""Prometheus alert rules for streamsvc, generated from one parametrised definition.

`python -m streamsvc.observability.alerts` writes `prometheus/streamsvc-rules.yml` with the production
defaults (the file the Helm chart's PrometheusRule and docker-compose load). Tests render the same rules
with short windows and `for:` durations (`AlertParams.fast()`) to see them fire against a live
Prometheus in seconds instead of minutes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

RULES_FILE = Path(__file__).resolve().parents[2] / "prometheus" / "streamsvc-rules.yml"
BY = "app, agent"
OUTCOMES = "streamsvc_records_(emitted|filtered|dead_lettered|late)_total"


@dataclass(frozen=True)
class AlertParams:
    """Thresholds and durations of the rules (Prometheus duration strings)."""

    window: str = "10m"  # range of rate()/delta()
    lag_for: str = "15m"
    lag_min_records: int = 1000
    dlq_for: str = "5m"
    dlq_ratio: float = 0.01  # share of consumed records dead-lettered
    no_commit_s: int = 600
    no_commit_for: str = "1m"
    aborts_min: int = 5
    aborts_for: str = "2m"
    restore_for: str = "10m"
    invariant_for: str = "5m"
    poll_stall_s: int = 120

    @classmethod
    def fast(cls) -> AlertParams:
        """For tests against a live Prometheus scraping every second."""
        return replace(
            cls(),
            window="20s",
            lag_for="2s",
            lag_min_records=10,
            dlq_for="1s",
            no_commit_s=8,
            no_commit_for="1s",
            aborts_min=3,
            aborts_for="1s",
            restore_for="5s",
            invariant_for="3s",
            poll_stall_s=8,
        )


def _alert(
    name: str, expr: str, duration: str, severity: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity, "service": "streamsvc"},
        "annotations": {"summary": summary, "description": description},
    }


def rules(p: AlertParams = AlertParams()) -> dict[str, Any]:
    """The rules document (`groups:`), as loaded by Prometheus, promtool and the PrometheusRule CRD."""
    lag = f"sum by ({BY}) (streamsvc_consumer_lag_records)"
    alerts = [
        _alert(
            "StreamsvcConsumerLagGrowing",
            f"({lag} > {p.lag_min_records}) and (sum by ({BY}) "
            f"(delta(streamsvc_consumer_lag_records[{p.window}])) > 0)",
            p.lag_for,
            "warning",
            "{{ $labels.agent }} is falling behind",
            f"Consumer lag of {{{{ $labels.app }}}}/{{{{ $labels.agent }}}} is {{{{ $value }}}} records and "
            f"has grown over the last {p.window}.",
        ),
        _alert(
            "StreamsvcDeadLetterRate",
            f"sum by ({BY}, topic) (rate(streamsvc_records_dead_lettered_total[{p.window}])) / "
            f"sum by ({BY}, topic) (rate(streamsvc_records_consumed_total[{p.window}])) > {p.dlq_ratio}",
            p.dlq_for,
            "warning",
            "Dead letters on {{ $labels.topic }}",
            f"More than {p.dlq_ratio:.0%} of the records consumed from {{{{ $labels.topic }}}} by "
            "{{ $labels.agent }} go to the dead-letter topic ({{ $value | humanizePercentage }}).",
        ),
        _alert(
            "StreamsvcNoCommit",
            f"(time() - max by ({BY}) (streamsvc_last_commit_timestamp_seconds) > {p.no_commit_s}) "
            f"and on ({BY}) ({lag} > 0)",
            p.no_commit_for,
            "critical",
            "{{ $labels.agent }} has not committed for a while",
            f"{{{{ $labels.app }}}}/{{{{ $labels.agent }}}} has input waiting but no commit for more than "
            f"{p.no_commit_s} s (stalled poll loop, hung transaction or aborts).",
        ),
        _alert(
            "StreamsvcConsecutiveAborts",
            f"max by ({BY}) (streamsvc_consecutive_aborts) >= {p.aborts_min}",
            p.aborts_for,
            "critical",
            "{{ $labels.agent }} keeps aborting transactions",
            "{{ $value }} transactions in a row were aborted and rewound: the agent is livelocked.",
        ),
        _alert(
            "StreamsvcRestoreStuck",
            f"(sum by ({BY}, store) (streamsvc_state_restore_remaining_records) > 0) and "
            f"(sum by ({BY}, store) (delta(streamsvc_state_restore_remaining_records[{p.window}])) >= 0)",
            p.restore_for,
            "warning",
            "State restore of {{ $labels.store }} makes no progress",
            "{{ $value }} changelog records are still to restore and the number has not gone down.",
        ),
        _alert(
            "StreamsvcAccountingInvariantBroken",
            f"sum by ({BY}, topic) (streamsvc_records_consumed_total) != "
            f'sum by ({BY}, topic) ({{__name__=~"{OUTCOMES}"}})',
            p.invariant_for,
            "critical",
            "Records unaccounted for on {{ $labels.topic }}",
            "consumed != emitted + filtered + dead-lettered + late for {{ $labels.agent }}: records were "
            "lost or counted twice.",
        ),
        _alert(
            "StreamsvcPollLoopStalled",
            f"time() - max by ({BY}) (streamsvc_last_poll_timestamp_seconds) > {p.poll_stall_s}",
            "1m" if p == AlertParams() else p.no_commit_for,
            "critical",
            "{{ $labels.agent }}'s poll loop is stuck",
            f"No poll-loop turn for more than {p.poll_stall_s} s; the liveness probe will restart the pod.",
        ),
    ]
    return {"groups": [{"name": "streamsvc", "rules": alerts}]}


def render(p: AlertParams = AlertParams()) -> str:
    header = (
        "# Generated by `python -m streamsvc.observability.alerts`; edit streamsvc/observability/alerts.py.\n"
    )
    return header + yaml.safe_dump(rules(p), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or [str(RULES_FILE)])[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
