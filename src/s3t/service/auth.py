"""Bearer-token auth for the state-changing endpoints.

The token is, in order: the ``token`` argument, the ``S3T_TOKEN`` environment variable, the
``token`` file in the workspace; if none exists, a random one is generated into
``WORKSPACE/token`` (mode 0600) and its location (never its value) is logged.
Comparison is constant-time (:func:`hmac.compare_digest`).
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


def resolve_token(workspace: str | Path, token: str | None = None) -> str:
    """The service's bearer token (see the module docstring for the order)."""
    if token:
        return token
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    path = Path(workspace) / TOKEN_FILE
    if not path.exists():
        return _generate(path)
    if path.stat().st_mode & 0o077:
        log.warning("token file %s is readable by other users; chmod 600 it", path)
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"token file {path} is empty; put a token in it, set {ENV_VAR}, or delete it to generate one")
    return value


def _generate(path: Path) -> str:
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process generated it first
        return resolve_token(path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("generated a bearer token for POST /forget in %s (mode 0600)", path)
    return value


def token_matches(given: Optional[str], expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


bearer_scheme = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>` (S3T_TOKEN or WORKSPACE/token).")


def require_token(expected: str) -> Callable[..., None]:
    """A FastAPI dependency: 401 (and nothing else happens) unless the bearer token matches."""

    def check(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer_scheme)) -> None:
        if credentials is None or not token_matches(credentials.credentials, expected):
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    return check
