"""Bearer-token auth: a forget token for ``POST /forget``, a read token for everything that
names requests, records or subjects (issue 15: who asked to be forgotten is personal data).

Each token is, in order: the argument, the environment variable (``S3T_TOKEN`` /
``S3T_READ_TOKEN``), the file in the workspace (``token`` / ``read_token``); if none exists, a
random one is generated into that file (mode 0600) and its location (never its value) is logged.
Reads accept the read token or the forget token (whoever may forget may read); ``POST /forget``
accepts the forget token only. Every accepted token is compared, each with
:func:`hmac.compare_digest`, so neither the result nor which token matched shows in the timing.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Callable, Optional

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import ConfigError

log = logging.getLogger("s3t")

ENV_VAR = "S3T_TOKEN"
TOKEN_FILE = "token"
READ_ENV_VAR = "S3T_READ_TOKEN"
READ_TOKEN_FILE = "read_token"


def resolve_token(workspace: str | Path, token: str | None = None) -> str:
    """The forget token (see the module docstring for the order)."""
    return _resolve(Path(workspace), token, ENV_VAR, TOKEN_FILE, "POST /forget")


def resolve_read_token(workspace: str | Path, token: str | None = None) -> str:
    """The read token (see the module docstring for the order)."""
    return _resolve(Path(workspace), token, READ_ENV_VAR, READ_TOKEN_FILE, "reads (deletion log, receipts, status, audit)")


def _resolve(workspace: Path, token: Optional[str], env_var: str, filename: str, purpose: str) -> str:
    if token:
        return token
    if os.environ.get(env_var):
        return os.environ[env_var]
    path = workspace / filename
    if not path.exists():
        return _generate(path, env_var, purpose)
    if path.stat().st_mode & 0o077:
        log.warning("token file %s is readable by other users; chmod 600 it", path)
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"token file {path} is empty; put a token in it, set {env_var}, or delete it to generate one")
    return value


def _generate(path: Path, env_var: str, purpose: str) -> str:
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process generated it first
        return _resolve(path.parent, None, env_var, path.name, purpose)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("generated a bearer token for %s in %s (mode 0600)", purpose, path)
    return value


def token_matches(given: Optional[str], *accepted: str) -> bool:
    """Constant-time: ``given`` is compared with every accepted token, with no early exit."""
    if given is None:
        return False
    raw = given.encode("utf-8")
    results = [hmac.compare_digest(raw, t.encode("utf-8")) for t in accepted]
    return any(results)


bearer_scheme = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <token>`: the forget token (S3T_TOKEN or WORKSPACE/token) for POST /forget; "
                "the read token (S3T_READ_TOKEN or WORKSPACE/read_token) or the forget token for reads.",
)


def require_token(*accepted: str) -> Callable[..., None]:
    """A FastAPI dependency: 401 (and nothing else happens) unless the bearer token is one of ``accepted``."""
    if not accepted or not all(accepted):
        raise ConfigError("require_token needs at least one non-empty token")

    def check(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer_scheme)) -> None:
        if credentials is None or not token_matches(credentials.credentials, *accepted):
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    return check
