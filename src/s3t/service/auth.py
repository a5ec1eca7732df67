"""Bearer-token auth: a forget token for ``POST /forget``, a read token for everything that
names requests, records or subjects (issue 15: who asked to be forgotten is personal data).

Each token is, in order: the argument, the environment variable (``S3T_TOKEN`` /
``S3T_READ_TOKEN``), the file in the workspace (``token`` / ``read_token``); if none exists, a
random one is generated into that file (mode 0600) and its location (never its value) is logged.
Reads accept the read token or the forget token (whoever may forget may read); ``POST /forget``
accepts the forget token only. Every accepted token is compared, each with
:func:`hmac.compare_digest`, so neither the result nor which token matched shows in the timing.
The OpenAPI schema declares the two as bearer security schemes, ``ForgetToken`` and ``ReadToken``.
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


FORGET_SCHEME = "ForgetToken"  # the security schemes /openapi.json declares
READ_SCHEME = "ReadToken"
forget_bearer = HTTPBearer(
    scheme_name=FORGET_SCHEME, auto_error=False,
    description="`Authorization: Bearer <forget token>` (S3T_TOKEN or WORKSPACE/token): POST /forget; it reads too.",
)
read_bearer = HTTPBearer(
    scheme_name=READ_SCHEME, auto_error=False,
    description="`Authorization: Bearer <read token>` (S3T_READ_TOKEN or WORKSPACE/read_token): everything that names "
                "requests, records or subjects (request state, status, audit, dashboard data); not POST /forget.",
)


def _refuse() -> HTTPException:
    return HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def _nonempty(accepted: tuple[str, ...]) -> None:
    if not accepted or not all(accepted):
        raise ConfigError("a token dependency needs non-empty tokens")


def require_forget_token(forget: str) -> Callable[..., None]:
    """A FastAPI dependency: 401 (and nothing else happens) unless the bearer token is the forget
    token. The route's OpenAPI operation then requires the ``ForgetToken`` scheme."""
    _nonempty((forget,))

    def check(credentials: Optional[HTTPAuthorizationCredentials] = Depends(forget_bearer)) -> None:
        if credentials is None or not token_matches(credentials.credentials, forget):
            raise _refuse()

    return check


def require_read_token(read: str, forget: str) -> Callable[..., None]:
    """A FastAPI dependency: 401 (and nothing else happens) unless the bearer token is the read
    token or the forget token. The route's OpenAPI operation then accepts either scheme
    (``[{"ReadToken": []}, {"ForgetToken": []}]``: one of them, not both)."""
    _nonempty((read, forget))

    def check(by_read: Optional[HTTPAuthorizationCredentials] = Depends(read_bearer),
              by_forget: Optional[HTTPAuthorizationCredentials] = Depends(forget_bearer)) -> None:
        credentials = by_read or by_forget  # both schemes read the same Authorization header
        if credentials is None or not token_matches(credentials.credentials, read, forget):
            raise _refuse()

    return check
