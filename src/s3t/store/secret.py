"""The workspace secret: the key of the ledger's text fingerprints (issue 15, finding 3).

A plain sha256 of a short text lets anyone who reads it confirm a guessed text (hash the guess,
compare). So the ledger keeps no unkeyed hash of any text: ``records.text_hmac`` is
``HMAC-SHA256(secret, "s3t-text\\0" + text)`` for a live record, and NULL once the record is
forgotten (the forget's transaction erases the text and its fingerprint together). Record ids
s3t derives for data without an id column are positions (``row-N`` / ``val-N``), not hashes.

Where the secret is
    ``S3T_SECRET`` (hex, at least 16 bytes) if set, else the file ``WORKSPACE/secret``: 32 random
    bytes as hex, mode 0600, created with ``O_EXCL`` when the workspace is created (or when a
    schema-1 ledger is migrated). It lives in the workspace directory for every ledger, PostgreSQL
    included, never in the database: whoever can read the database alone cannot confirm a text.
What it is for
    Recomputing a fingerprint: ``fingerprint(load_secret(ws), text)`` tells whether a text is
    (still) in the ledger without storing it twice. Nothing else needs it: serving, forgetting,
    retraining and the audit work without it.
Backup
    Copy ``WORKSPACE/secret`` (or the variable) with the same care as the token, apart from the
    ledger backups. Losing it loses only the ability to recompute fingerprints; run
    ``s3t rotate-secret`` to make a new one and re-key the live texts' fingerprints.
Rotation
    :func:`rotate_secret` (``s3t rotate-secret -w WS``): a new key is written to ``secret.new``
    (0600, fsynced), then ONE ledger transaction re-keys every live text's fingerprint, clears
    any fingerprint of an erased one and records ``secret_check`` (an HMAC of a constant: which
    key the fingerprints use) and ``secret_rotated_at``; then ``secret.new`` replaces ``secret``.
    A crash in between is resolved by the next :func:`resolve`: ``secret.new`` is moved into place
    if the ledger committed with it, else dropped. With ``S3T_SECRET`` set, set the new value
    first and run the command: it re-keys with the variable and leaves the files alone. The
    superseded fingerprints are scrubbed from the database files (see :mod:`.migrate`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, update

from ..errors import WorkspaceError
from .atomic import fsync_dir
from .schema import Record

log = logging.getLogger("s3t")

ENV_VAR = "S3T_SECRET"
SECRET_FILE = "secret"
PENDING_FILE = "secret.new"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
CHECK_META = "secret_check"
ROTATED_META = "secret_rotated_at"


def fingerprint(key: bytes, text: str) -> str:
    """The keyed fingerprint of a text: HMAC-SHA256 hex (domain-separated from every other use of the key)."""
    return hmac.new(key, b"s3t-text\x00" + text.encode("utf-8"), hashlib.sha256).hexdigest()


def key_check(key: bytes) -> str:
    """Names a key without revealing it or any text: which key the stored fingerprints use."""
    return hmac.new(key, b"s3t-key-check", hashlib.sha256).hexdigest()[:16]


def _parse(value: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        raise WorkspaceError(f"{where} must be hex (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)") from None
    if len(key) < MIN_KEY_BYTES:
        raise WorkspaceError(f"{where} holds {len(key)} bytes; a secret needs at least {MIN_KEY_BYTES} (32 recommended)")
    return key


def _write_new(path: Path, key: bytes) -> bool:
    """Create ``path`` holding ``key`` (hex), mode 0600, only if it does not exist; durable. False if it existed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # whatever the umask
        fh.write(key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(path.parent)
    return True


def load_secret(workspace: str | Path, create: bool = False) -> bytes:
    """The workspace secret: ``S3T_SECRET``, else ``WORKSPACE/secret`` (generated if ``create``)."""
    if os.environ.get(ENV_VAR):
        return _parse(os.environ[ENV_VAR], f"the environment variable {ENV_VAR}")
    path = Path(workspace) / SECRET_FILE
    if not path.exists():
        if not create:
            raise WorkspaceError(f"no secret in {path.parent} ({SECRET_FILE} missing, {ENV_VAR} not set); "
                                 "restore it from your backup, or run `s3t rotate-secret` to make a new one")
        if _write_new(path, secrets.token_bytes(KEY_BYTES)):
            log.warning("generated the workspace secret (text fingerprints' key) in %s (mode 0600): back it up", path)
    if path.stat().st_mode & 0o077:
        log.warning("secret file %s is readable by other users; chmod 600 it", path)
    return _parse(path.read_text(), str(path))


def _install(workspace: Path) -> None:
    """Move a committed rotation's ``secret.new`` over ``secret`` (atomic, durable)."""
    os.replace(workspace / PENDING_FILE, workspace / SECRET_FILE)
    fsync_dir(workspace)


def resolve(workspace: str | Path, ledger: Any) -> bytes:
    """The secret, after finishing (or dropping) a rotation a crash cut short; warns when the
    ledger's fingerprints were made with another key."""
    workspace = Path(workspace)
    pending = workspace / PENDING_FILE
    stored = ledger.meta(CHECK_META)
    if pending.exists() and not os.environ.get(ENV_VAR):
        if stored == key_check(_parse(pending.read_text(), str(pending))):
            _install(workspace)
            log.warning("finished an interrupted secret rotation: %s now holds the new secret", workspace / SECRET_FILE)
        else:
            pending.unlink()
            log.warning("dropped an interrupted secret rotation that never committed (%s)", pending)
    key = load_secret(workspace, create=True)
    if stored is not None and stored != key_check(key):
        log.warning("the ledger's text fingerprints were made with another secret than %s; restore that one from "
                    "your backup, or run `s3t rotate-secret` to re-key them (nothing else depends on it)",
                    ENV_VAR if os.environ.get(ENV_VAR) else workspace / SECRET_FILE)
    return key


def _rekey(ledger: Any, key: bytes, reason: str) -> tuple[int, int]:
    """ONE transaction: fingerprint every live text with ``key``, clear every erased one's, record the key."""
    from .ledger import utcnow

    table = Record.__table__
    with ledger.write() as s:
        conn = s.connection()
        live = conn.execute(select(table.c.id, table.c.text).where(table.c.text.is_not(None))).all()
        if live:
            conn.execute(update(table).where(table.c.id == bindparam("rid")).values(text_hmac=bindparam("fp")),
                         [{"rid": rid, "fp": fingerprint(key, text)} for rid, text in live])
        cleared = conn.execute(update(table).where(table.c.text.is_(None), table.c.text_hmac.is_not(None))
                               .values(text_hmac=None)).rowcount
        ledger.set_meta(s, CHECK_META, key_check(key))
        ledger.set_meta(s, ROTATED_META, f"{utcnow()} {reason}")
    return len(live), cleared


@dataclass(frozen=True)
class RotationReport:
    rekeyed: int  # live texts whose fingerprint now uses the new secret
    cleared: int  # erased records that still had a fingerprint (none after a forget of this version)
    source: str  # "file" (a new WORKSPACE/secret) or the environment variable's name

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rotate_secret(ws: Any) -> RotationReport:
    """Re-key the ledger's text fingerprints with a new secret (see the module docstring)."""
    from .migrate import scrub

    if os.environ.get(ENV_VAR):
        key, source = load_secret(ws.path), ENV_VAR
        rekeyed, cleared = _rekey(ws.ledger, key, f"re-keyed with {ENV_VAR}")
    else:
        resolve(ws.path, ws.ledger)  # a rotation cut short is finished or dropped first
        key, source = secrets.token_bytes(KEY_BYTES), "file"
        pending = ws.path / PENDING_FILE
        pending.unlink(missing_ok=True)
        _write_new(pending, key)
        rekeyed, cleared = _rekey(ws.ledger, key, "new secret file")
        _install(ws.path)
    scrub(ws.ledger, ("records",))  # the superseded fingerprints leave the database files too
    log.warning("rotated the workspace secret (%s): %d live fingerprint(s) re-keyed; back up the new secret",
                source, rekeyed)
    return RotationReport(rekeyed, cleared, source)
