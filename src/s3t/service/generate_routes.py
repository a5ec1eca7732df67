"""``POST /generate``: the served ensemble of a causal-LM workspace answers prompts (an APIRouter).

Same conventions as ``POST /predict``: open by default, behind the read (or forget) token with
``protect_predict``; errors in the one JSON shape of :mod:`s3t.service.app`; a body is checked
before anything runs (422). Each answer comes from one manifest snapshot and says which
(``manifest_version``, ``served``), so an answer that starts after a forget's 202 never uses a
member that saw the forgotten records.

Bounds: at most ``S3T_MAX_PROMPTS`` prompts (default :data:`~s3t.service.schemas.MAX_PROMPTS`)
and ``S3T_MAX_NEW_TOKENS`` tokens per answer (default :data:`~s3t.service.schemas.MAX_NEW_TOKENS`),
read when the app is built; /openapi.json shows the server's own. A prompt whose tokens and
``max_new_tokens`` do not fit in the model's positions is a 422.

On a classification workspace ``POST /generate`` is a 409 ``TaskMismatchError`` that points at
``POST /predict``, and ``POST /predict`` on a causal-LM workspace is the same 409 pointing here
(:func:`require_task`).
"""

import os  # no `from __future__ import annotations`: FastAPI reads the body model from the endpoint's annotation
from typing import Optional, Sequence

from fastapi import APIRouter, Request
from pydantic import Field

from .. import errors
from . import schemas as sc

MAX_PROMPTS_ENV = "S3T_MAX_PROMPTS"
MAX_NEW_TOKENS_ENV = "S3T_MAX_NEW_TOKENS"
ENDPOINT = {"classification": "POST /predict", "causal-lm": "POST /generate"}


class TaskMismatchError(errors.WorkspaceError):
    """The request needs another task than the workspace's (a 409: the body is fine, the workspace is not that kind)."""


def require_task(model, task: str) -> None:
    """Refuse (409) a request for ``task``'s endpoint on a workspace of another task, naming the right endpoint."""
    have = model.config.train.task
    if have != task:
        raise TaskMismatchError(f"this workspace's model is {have} (train.task {have!r}); {ENDPOINT[task]} serves "
                                f"{task} workspaces only: use {ENDPOINT.get(have, 'another endpoint')}")


def _bound(env: str, default: int) -> int:
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise errors.ConfigError(f"{env} must be an integer >= 1; got {raw!r}")
    return value


def limits() -> tuple[int, int]:
    """(prompts per request, tokens per answer) a server built now accepts."""
    return _bound(MAX_PROMPTS_ENV, sc.MAX_PROMPTS), _bound(MAX_NEW_TOKENS_ENV, sc.MAX_NEW_TOKENS)


def request_model(max_prompts: int, max_new_tokens: int) -> type[sc.GenerateRequest]:
    """:class:`~s3t.service.schemas.GenerateRequest` with this server's bounds (what /openapi.json shows)."""
    from pydantic import create_model

    return create_model(
        "GenerateRequest", __base__=sc.GenerateRequest, __doc__=sc.GenerateRequest.__doc__,
        prompts=(list[sc.Prompt], Field(..., min_length=1, max_length=max_prompts, description=(
            f"1 to {max_prompts} prompts, each answered as one user turn in the model's chat template."))),
        max_new_tokens=(sc.JsonInt, Field(min(64, max_new_tokens), ge=1, le=max_new_tokens,
                                         description="Tokens generated per answer at most.")),
    )


def _fence(request: Request, model) -> None:
    """As /predict: with the app's manifest fence (replicas), catch up with the latest committed manifest first."""
    from .fence import pass_fence

    pass_fence(getattr(request.app.state, "fence", None), model)


def generate_router(model, dependencies: Optional[Sequence] = None, protected: bool = False) -> APIRouter:
    """The router of ``POST /generate`` over ``model`` (an :class:`s3t.S3T`). ``dependencies``: what
    /predict depends on (the read-token check under ``protect_predict``, then ``protected=True``)."""
    from .app import AUTH_ERRORS, ERRORS, TOO_LARGE

    body_model = request_model(*limits())
    wrong_task = {409: {"model": sc.ErrorResponse, "description": "The workspace is a classifier (train.task "
                        "classification): use POST /predict"}}
    router = APIRouter()

    @router.post("/generate", response_model=sc.GenerateResponse, operation_id="generate",
                 summary="Answer prompts with the served ensemble (causal-LM workspaces)",
                 dependencies=list(dependencies or []),
                 responses={**(AUTH_ERRORS if protected else ERRORS), **wrong_task, **TOO_LARGE})
    def generate(req: body_model, request: Request) -> sc.GenerateResponse:  # type: ignore[valid-type]
        require_task(model, "causal-lm")
        _fence(request, model)
        answers = model.generate(req.prompts, max_new_tokens=req.max_new_tokens, combine=req.combine,
                                 temperature=req.temperature, top_k=req.top_k, seed=req.seed, details=True)
        shards = model.config.plan.shards
        return sc.GenerateResponse(answers=[sc.GeneratedAnswer(
            text=g.text, tokens=len(g.tokens), finish_reason=g.finish_reason, manifest_version=g.manifest_version,
            served={str(s): g.served.get(str(s), 0) for s in range(shards)}) for g in answers])

    return router
