"""Commit protocols: exactly-once transactions and at-least-once."""

from streamsvc.eos.transactions import AtLeastOnceCommitter, Committer, TransactionalCommitter

__all__ = ["AtLeastOnceCommitter", "Committer", "TransactionalCommitter"]
