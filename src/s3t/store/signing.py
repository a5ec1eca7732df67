"""The workspace's signing key: Ed25519, for deletion certificates a third party can check offline.

Files (in the workspace directory, never in the database)
    ``signing_key.pem``  the private key (PKCS#8 PEM, mode 0600, created with ``O_EXCL``).
    ``signing_keys.json``  every public key this workspace has signed with: key id, PEM, and
    ``valid_from`` / ``valid_until`` (None while current). Rotation keeps the old public keys
    listed, so certificates issued before a rotation still verify.

The key id is the first 16 hex digits of sha256 over the raw 32-byte public key.

Example
-------
>>> import tempfile
>>> ws = tempfile.mkdtemp()
>>> key = load_signing_key(ws, create=True)
>>> sig = key.sign(b"hello")
>>> verify_signature(public_pem(ws), sig, b"hello")
True
>>> verify_signature(public_pem(ws), sig, b"hellO")
False
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from s3t.errors import WorkspaceError
from s3t.store.atomic import atomic_write_bytes, fsync_dir

KEY_FILE = "signing_key.pem"
KEYS_FILE = "signing_keys.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def public_keys(workspace: str | Path) -> list[dict[str, Any]]:
    """Every public key the workspace has signed with (newest last)."""
    path = Path(workspace) / KEYS_FILE
    try:
        return json.loads(path.read_text())["keys"]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError) as exc:
        raise WorkspaceError(f"{path} is not a signing key list: {exc}") from exc


def _save_keys(workspace: Path, keys: list[dict[str, Any]]) -> None:
    atomic_write_bytes(workspace / KEYS_FILE, (json.dumps({"keys": keys}, indent=2) + "\n").encode())


def load_signing_key(workspace: str | Path, create: bool = False) -> Ed25519PrivateKey:
    """The current private key; with ``create``, made (and listed) if the workspace has none."""
    ws = Path(workspace)
    path = ws / KEY_FILE
    if not path.exists():
        if not create:
            raise WorkspaceError(f"{ws} has no signing key ({KEY_FILE}); `s3t certificate key -w {ws}` creates one")
        key = Ed25519PrivateKey.generate()
        try:
            _write_private(path, key)
        except FileExistsError:  # another process made it first: use theirs
            return load_signing_key(ws)
        _save_keys(ws, public_keys(ws) + [{"key_id": key_id(key.public_key()), "public_pem": _pem(key.public_key()),
                                           "valid_from": _now(), "valid_until": None}])
        return key
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise WorkspaceError(f"{path} is not an Ed25519 private key")
    if not any(k["key_id"] == key_id(key.public_key()) for k in public_keys(ws)):  # listed, whatever happened
        _save_keys(ws, public_keys(ws) + [{"key_id": key_id(key.public_key()), "public_pem": _pem(key.public_key()),
                                           "valid_from": _now(), "valid_until": None}])
    return key


def rotate_signing_key(workspace: str | Path) -> dict[str, Any]:
    """A new key pair; the old public key stays listed with its validity period closed."""
    ws = Path(workspace)
    old = load_signing_key(ws, create=True)
    now = _now()
    keys = [dict(k, valid_until=k["valid_until"] or now) if k["key_id"] == key_id(old.public_key()) else k
            for k in public_keys(ws)]
    new = Ed25519PrivateKey.generate()
    tmp = ws / (KEY_FILE + ".new")
    tmp.unlink(missing_ok=True)
    _write_private(tmp, new)
    keys.append({"key_id": key_id(new.public_key()), "public_pem": _pem(new.public_key()), "valid_from": now,
                 "valid_until": None})
    _save_keys(ws, keys)  # listed before it signs anything
    os.replace(tmp, ws / KEY_FILE)
    fsync_dir(ws)
    return {"retired": key_id(old.public_key()), "current": key_id(new.public_key()), "at": now}


def public_pem(workspace: str | Path) -> str:
    """The current public key as PEM (what a verifier needs)."""
    return _pem(load_signing_key(workspace, create=True).public_key())


def load_public(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify_signature(pem: str | bytes, signature: bytes, message: bytes) -> bool:
    try:
        load_public(pem).verify(signature, message)
        return True
    except InvalidSignature:
        return False
