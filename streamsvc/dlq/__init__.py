"""Dead-letter routing (BRIEF §3.2)."""

from streamsvc.dlq.records import STAGES, OutputRecord, Stage, dead_letter, dlq_headers

__all__ = ["STAGES", "OutputRecord", "Stage", "dead_letter", "dlq_headers"]
