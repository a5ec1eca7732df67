"""Error types of s3t.

Every error s3t raises on purpose derives from :class:`S3TError`; each subclass also
inherits the nearest builtin, so ``except ValueError`` keeps working for callers that
do not know about s3t. The CLI and the HTTP layer map these to exit codes / status
codes in exactly one place each.
"""

from __future__ import annotations


class S3TError(Exception):
    """Base class of all s3t errors."""


class ConfigError(S3TError, ValueError):
    """A configuration value is invalid; the message names the field, what is allowed and what was given."""


class DataError(S3TError, ValueError):
    """Input data is malformed (missing column, duplicate id, empty set, unknown label...)."""


class UnknownRecordError(S3TError, KeyError):
    """A forget request names a record or subject the ledger does not hold. Nothing was changed."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown record"


class NotFittedError(S3TError, RuntimeError):
    """The estimator or workspace has no trained model yet."""


class NoLiveModelError(S3TError, RuntimeError):
    """Every shard is dead (each of its lineages holds a deleted record): retraining is needed."""


class WorkspaceError(S3TError, RuntimeError):
    """The workspace is missing, locked, of another version, or inconsistent."""


class IntegrityError(S3TError, RuntimeError):
    """A checkpoint file does not match its recorded sha256, or the receipt chain is broken."""


class LedgerBusyError(WorkspaceError):
    """Another process held the ledger's write lock longer than the lock timeout. Nothing was changed."""
