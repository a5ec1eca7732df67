"""The HTTP contract: ``/openapi.json`` describes the API that answers (issue 21).

Schemathesis (a property-based API tester) reads the service's own schema and runs every phase of
``st run`` in-process against the ASGI app (no network, no server): the schema's examples, the
coverage phase (boundary and invalid values of every parameter and body field), random fuzzing,
and the stateful phase, which follows the schema's OpenAPI links (``POST /forget`` ->
``GET /forget/{request_id}``). Every response goes through all of Schemathesis' checks: no 5xx,
every status documented, body and content type as documented for that status, valid data
accepted, invalid data rejected, auth not ignored (each security scheme gets its own token),
a linked resource found, undocumented methods refused with ``Allow``.

It runs three times: over the fitted tiny workspace with /predict open (SQLite ledger), over the
same fit on PostgreSQL with /predict behind the read token (PostgreSQL refuses some strings SQLite
stores, e.g. a NUL), and over a causal-LM workspace (a tiny random Llama; SQLite), where /generate
answers (behind the read token) and /predict is the documented 409 (on the classifier workspaces it
is the other way round). The seed is fixed and the examples are bounded, so a run is reproducible
(one Schemathesis worker; about 1,600 requests, 20 s each on two cores). Forget bodies that name
record ids may name real ones instead (drawn by Hypothesis, so seeded): from shard 0 only, so that
shard 1 keeps /predict and /generate live (a 503 there is documented, but the fuzzer would learn
nothing more). The causal-LM server runs with its own small bounds (S3T_MAX_NEW_TOKENS=3,
S3T_MAX_PROMPTS=3), which its schema shows, so each generation the fuzzer asks for is short.

The engine is Schemathesis' own (``schemathesis.engine``, what ``st run`` drives): its pytest
integration for schemas loaded from a fixture does not run under pytest 9.
"""

from __future__ import annotations

import json
from collections import Counter

import hypothesis.strategies as st
import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from s3t.service import create_app
from tests.conftest import chat_rows, make_tiny_llama, tiny_config
from tests.fitted_copy import copy_workspace, fitted_template, fitted_ws  # noqa: F401  (fixtures)
from tests.pg import pg, require_pg  # noqa: F401  (fixture)
from tests.service.conftest import READ_TOKEN, TOKEN

SEED = 21_2026
MAX_EXAMPLES = 100  # per operation, for the fuzzing and the stateful phase
STATEFUL_STEPS = 8
SCHEMES = {"ForgetToken": TOKEN, "ReadToken": READ_TOKEN}  # the security schemes the schema must declare


def contract_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "workers": 1,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {
            "examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
        },
        "checks": {"enabled": True},
        "auth": {"openapi": {name: {"bearer": token} for name, token in SCHEMES.items()}},
    })


def real_forgets(record_ids: list[str]):
    """A schema hook: a POST /forget body that names record ids may name 1-3 of ``record_ids``
    instead (chosen by Hypothesis). Schemathesis re-validates a changed body, so a body that was
    invalid for another reason (an extra field, both keys) stays a negative case."""

    def flatmap_body(context, body):
        if context.operation is None or context.operation.label != "POST /forget":
            return st.just(body)
        if not (isinstance(body, dict) and isinstance(body.get("record_ids"), list)):
            return st.just(body)
        real = st.lists(st.sampled_from(record_ids), min_size=1, max_size=3).map(lambda ids: {**body, "record_ids": ids})
        return st.one_of(st.just(body), real)

    return flatmap_body


@pytest.fixture(scope="module")
def chat_contract_template(tmp_path_factory):
    """A fitted causal-LM workspace on a tiny random Llama with 4,096 positions (the fixture's Llama has
    256: a long generated prompt would not fit, a documented 422 the fuzzer would call valid data refused)."""
    from s3t import S3T

    root = tmp_path_factory.mktemp("chat-contract")
    model = make_tiny_llama(root / "llama", 6)
    cfg_file = root / "llama" / "config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "max_position_embeddings": 4096}))
    est = S3T(tiny_config(model, shards=2, slices=2, budget=1, epochs=1, task="causal-lm"), workspace=root / "ws")
    est.fit(chat_rows(8), validation=[{**r, "id": f"val-{r['id']}"} for r in chat_rows(2, seed=5)])
    est.ws_.ledger.close()
    return root / "ws"


@pytest.fixture(params=["sqlite", "postgres", "causal-lm"],
                ids=["sqlite-open-predict", "postgres-protected-predict", "causal-lm-sqlite"])
def contract_app(request, tmp_path, monkeypatch):
    """The app as ``make_client`` builds it, over the fitted tiny workspace (SQLite ledger, /predict
    open), over the same fit on PostgreSQL with /predict behind the read token, or over a causal-LM
    workspace (SQLite, /predict and /generate behind the read token). Schemathesis starts the app's
    lifespan on the first request and its pytest plugin ends it after the test."""
    kwargs = {"token": TOKEN, "read_token": READ_TOKEN, "background": False}
    if request.param == "sqlite":
        workspace, db = request.getfixturevalue("fitted_ws").ws_.path, None
    elif request.param == "causal-lm":
        workspace, db = copy_workspace(request.getfixturevalue("chat_contract_template"), tmp_path / "chat-ws"), None
        monkeypatch.setenv("S3T_MAX_NEW_TOKENS", "3")
        monkeypatch.setenv("S3T_MAX_PROMPTS", "3")
        kwargs["protect_predict"] = True  # /generate's answers are checked for an ignored token too
    else:
        from s3t import S3T

        require_pg()
        db = request.getfixturevalue("pg").url
        workspace = tmp_path / "pg-ws"
        template = request.getfixturevalue("fitted_template")
        est = S3T(tiny_config(template.model), workspace=workspace, db=db).fit(template.train, validation=template.val)
        est.ws_.ledger.close()
        kwargs["protect_predict"] = True
    app = create_app(workspace, db=db, **kwargs)
    app.state.protect_predict = kwargs.get("protect_predict", False)
    yield app
    assert app.state.model.flush(timeout=60), "file steps still pending after 60 s"
    app.state.model.ws_.ledger.close()


@pytest.fixture
def api_schema(contract_app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", contract_app, config=contract_config())
    shard0 = sorted(r.id for r in contract_app.state.model.ws_.ledger.records("train") if r.shard == 0)
    schema.hook(real_forgets(shard0))
    return schema


def run_schemathesis(schema) -> dict:
    """Run every phase, as ``st run`` does: per phase the scenarios and requests, the responses
    seen per (operation, status), the failures (one line each, with a curl to replay it) and the
    engine's own errors."""
    out: dict = {"phases": {}, "statuses": Counter(), "failures": set(), "errors": [], "requests": 0}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            phase = out["phases"].setdefault(event.phase.value, {"scenarios": 0, "requests": 0})
            phase["scenarios"] += 1
            phase["requests"] += len(recorder.interactions)
            out["requests"] += len(recorder.interactions)
            for case_id, interaction in recorder.interactions.items():
                if interaction.response is not None and case_id in recorder.cases:
                    out["statuses"][recorder.cases[case_id].value.operation.label, interaction.response.status_code] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        f = check.failure_info.failure
                        out["failures"].add(f"[{event.phase.value}] {f.operation}: {check.name}: {f.title}: {f.message}"
                                            f"\n    {check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError):
            out["errors"].append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            out["errors"].append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            out["stop"] = event.stop_reason.value
    return out


def test_the_schema_declares_both_tokens(make_client):
    spec = make_client().get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == set(SCHEMES)  # else Schemathesis would send no token


def test_the_api_keeps_its_documented_contract(api_schema, contract_app):
    report = run_schemathesis(api_schema)
    print(f"schemathesis: {report['requests']} requests, per phase {report['phases']}, stop: {report.get('stop')}")
    assert not report["errors"], "\n".join(report["errors"])
    assert not report["failures"], f"{len(report['failures'])} contract failures:\n" + "\n".join(sorted(report["failures"]))
    assert report["stop"] == "completed"
    assert set(report["phases"]) >= {"examples", "coverage", "fuzzing", "stateful"}
    # the run reached the API's behaviour, not only its refusals: authenticated calls answered,
    # real forgets accepted and their state read back through the link
    seen = report["statuses"]
    # the workspace's own task answers; the other task's endpoint is the documented 409 for a valid body
    answers, refuses = (("POST /predict", "POST /generate") if contract_app.state.model.config.train.task == "classification"
                        else ("POST /generate", "POST /predict"))
    for label, status in [(answers, 200), ("POST /forget", 202), ("GET /forget/{request_id}", 200),
                          ("GET /status", 200), ("GET /audit", 200), ("GET /dashboard/data", 200), ("GET /healthz", 200),
                          ("POST /forget", 401), ("GET /status", 401), ("POST /predict", 422), ("POST /forget", 422),
                          ("POST /generate", 422), (refuses, 409)]:
        assert seen[label, status], (label, status, dict(seen))
    assert not seen[answers, 409] and not seen[refuses, 200]
    # Schemathesis checks that the token is not ignored by re-sending a request that succeeded without it
    assert bool(seen[answers, 401]) == contract_app.state.protect_predict
    assert contract_app.state.model.ws_.ledger.deleted_ids(), "no generated forget named a real record"
