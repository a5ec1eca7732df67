"""``POST /generate`` (issue 17): a causal-LM workspace's served ensemble answers over HTTP, with the
conventions of ``/predict`` (auth, one error shape, 422 before anything runs), answers that name the
manifest that wrote them, and a clear 409 when the workspace is the other task. A tiny random Llama."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3t import S3T
from s3t.client import APIError, Client
from s3t.service.schemas import GenerateResponse
from tests.conftest import chat_rows, tiny_config
from tests.fitted_copy import copy_workspace
from tests.service.conftest import AUTH, READ, READ_TOKEN, TOKEN, started_clients

PROMPTS = ["where does person1 live ?", "what colour does person4 like ?"]

# one fit per session (a session fixture imported into several modules gets one cache per module)
_CHAT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def chat_template(tmp_path_factory, tiny_llama) -> Path:
    """A fitted causal-LM workspace on the tiny Llama: m=2, L=2, B=1, chat facts about 12 people (subjects)."""
    if tiny_llama not in _CHAT:
        root = tmp_path_factory.mktemp("chat-template")
        cfg = tiny_config(tiny_llama, shards=2, slices=2, budget=1, epochs=2, task="causal-lm")
        validation = [{**r, "id": f"val-{r['id']}"} for r in chat_rows(2, seed=5)]
        est = S3T(cfg, workspace=root / "ws").fit(chat_rows(12), validation=validation)
        est.ws_.ledger.close()
        _CHAT[tiny_llama] = root / "ws"
    return _CHAT[tiny_llama]


@pytest.fixture
def chat_client(tmp_path, chat_template):
    """``chat_client(**create_app kwargs)``: a started TestClient over a private copy of the chat workspace."""
    yield from started_clients(lambda n: copy_workspace(chat_template, tmp_path / f"chat-ws-{n}"))


def test_each_prompt_is_answered_as_the_library_answers_it(chat_client):
    client = chat_client()
    r = client.post("/generate", json={"prompts": PROMPTS, "max_new_tokens": 6})
    assert r.status_code == 200, r.text
    answers = r.json()["answers"]
    model = client.app.state.model
    want = model.generate(PROMPTS, max_new_tokens=6, details=True)
    assert [a["text"] for a in answers] == [g.text for g in want]
    assert [a["tokens"] for a in answers] == [len(g.tokens) for g in want]
    for a in answers:
        assert (a["finish_reason"] == "length") == (a["tokens"] == 6) and a["finish_reason"] in ("stop", "length")
        assert a["served"] == {"0": 2, "1": 2}
        assert a["manifest_version"] == model.ensemble_.manifest_version


def test_every_decoding_option_reaches_the_model(chat_client, monkeypatch):
    client = chat_client()
    model = client.app.state.model
    seen = []
    real = model.generate

    def spy(prompts, **kwargs):
        seen.append((list(prompts), kwargs))
        return real(prompts, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    body = {"prompts": PROMPTS[:1], "max_new_tokens": 5, "combine": "logprobs", "temperature": 1.5, "top_k": 7, "seed": 11}
    first = client.post("/generate", json=body)
    assert first.status_code == 200, first.text
    assert seen == [(PROMPTS[:1], {"max_new_tokens": 5, "combine": "logprobs", "temperature": 1.5, "top_k": 7, "seed": 11,
                                    "details": True})]
    assert client.post("/generate", json=body).json() == first.json()  # seeded: the same answer again
    integral = client.post("/generate", json={**body, "max_new_tokens": 5.0, "seed": 11.0})  # JSON Schema integers
    assert integral.status_code == 200 and integral.json() == first.json()
    defaults = client.post("/generate", json={"prompts": PROMPTS[:1]})
    assert defaults.status_code == 200
    assert seen[-1][1] == {"max_new_tokens": 64, "combine": "probs", "temperature": 0.0, "top_k": 0, "seed": 0,
                           "details": True}


def test_answers_after_a_forget_come_from_the_surviving_prefixes(chat_client):
    client = chat_client()
    before = client.post("/generate", json={"prompts": PROMPTS[:1], "max_new_tokens": 4}).json()["answers"][0]
    r = client.post("/forget", json={"subject": "person1"}, headers=AUTH)
    assert r.status_code == 202, r.text
    receipt = r.json()
    after = client.post("/generate", json={"prompts": PROMPTS[:1], "max_new_tokens": 4}).json()["answers"][0]
    assert after["manifest_version"] == receipt["manifest_version"] > before["manifest_version"]
    assert after["served"] == receipt["served_after"] != before["served"]
    assert sum(after["served"].values()) < sum(before["served"].values())  # person1's shard serves a shorter prefix


def test_the_wrong_task_is_a_409_that_names_the_right_endpoint(chat_client, make_client):
    chat = chat_client()
    r = chat.post("/predict", json={"texts": ["a great film"]})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["type"] == "TaskMismatchError" and "POST /generate" in r.json()["error"]["message"]
    classifier = make_client()
    r = classifier.post("/generate", json={"prompts": ["hello"]})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["type"] == "TaskMismatchError" and "POST /predict" in r.json()["error"]["message"]
    assert classifier.post("/predict", json={"texts": ["a great film"]}).status_code == 200
    bad = classifier.post("/generate", json={"prompts": []})  # a bad body is a 422 whatever the workspace
    assert bad.status_code == 422


@pytest.mark.parametrize("body", [
    {"prompts": []},
    {"prompts": ["a"] * 17},
    {"prompts": "where does person1 live ?"},
    {"prompts": ["  \n\t"]},
    {"prompts": [""]},
    {"prompts": [7]},
    '{"prompts": ["\\ud800"]}',  # a lone surrogate, as JSON escapes it
    '{"prompts": ["hi"',
    {"prompts": ["x" * 4_001]},
    {"prompts": ["hi"], "max_new_tokens": 0},
    {"prompts": ["hi"], "max_new_tokens": 513},
    {"prompts": ["hi"], "max_new_tokens": "5"},
    {"prompts": ["hi"], "max_new_tokens": True},
    {"prompts": ["hi"], "max_new_tokens": 2.5},
    {"prompts": ["hi"], "combine": "max"},
    {"prompts": ["hi"], "temperature": -0.1},
    {"prompts": ["hi"], "temperature": 101},
    {"prompts": ["hi"], "temperature": "hot"},
    {"prompts": ["hi"], "top_k": -1},
    {"prompts": ["hi"], "seed": -1},
    {"prompts": ["hi"], "seed": 2 ** 32},
    {"prompts": ["hi"], "texts": ["hi"]},
    {"max_new_tokens": 4},
], ids=lambda b: repr(b)[:60])
def test_bad_bodies_are_a_422_before_anything_runs(chat_client, body, monkeypatch):
    client = chat_client()
    monkeypatch.setattr(client.app.state.model, "generate", lambda *a, **k: pytest.fail("generated for a bad body"))
    if isinstance(body, str):  # raw JSON text
        r = client.post("/generate", content=body.encode(), headers={"Content-Type": "application/json"})
    else:
        r = client.post("/generate", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "ValidationError"


def test_a_prompt_past_the_models_positions_is_a_422(chat_client):
    client = chat_client()  # the tiny Llama has 256 positions
    r = client.post("/generate", json={"prompts": ["where " * 300], "max_new_tokens": 4})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "ConfigError" and "positions" in r.json()["error"]["message"]


def test_bounds_come_from_the_environment_and_show_in_the_schema(chat_client, monkeypatch):
    monkeypatch.setenv("S3T_MAX_NEW_TOKENS", "4")
    monkeypatch.setenv("S3T_MAX_PROMPTS", "2")
    client = chat_client()
    spec = client.get("/openapi.json").json()
    ref = spec["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    props = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert props["max_new_tokens"]["maximum"] == 4 and props["max_new_tokens"]["default"] == 4
    assert props["prompts"]["maxItems"] == 2
    assert client.post("/generate", json={"prompts": PROMPTS, "max_new_tokens": 5}).status_code == 422
    assert client.post("/generate", json={"prompts": PROMPTS * 2, "max_new_tokens": 4}).status_code == 422
    ok = client.post("/generate", json={"prompts": PROMPTS, "max_new_tokens": 4})
    assert ok.status_code == 200 and all(a["tokens"] <= 4 for a in ok.json()["answers"])
    monkeypatch.setenv("S3T_MAX_PROMPTS", "0")
    from s3t.errors import ConfigError

    with pytest.raises(ConfigError, match="S3T_MAX_PROMPTS"):
        chat_client()


def test_protect_predict_puts_generate_behind_the_read_token(chat_client):
    client = chat_client(protect_predict=True)
    body = {"prompts": PROMPTS[:1], "max_new_tokens": 2}
    r = client.post("/generate", json=body)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/generate", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/generate", json=body, headers=READ).status_code == 200
    assert client.post("/generate", json=body, headers=AUTH).status_code == 200
    open_client = chat_client()
    assert open_client.post("/generate", json=body).status_code == 200


def test_status_and_dashboard_answer_on_a_chat_workspace(chat_client):
    client = chat_client()
    status = client.get("/status", headers=READ)
    assert status.status_code == 200, status.text
    assert status.json()["ensemble_size"] == 2 and status.json()["served"] == {"0": 2, "1": 2}
    data = client.get("/dashboard/data", headers=READ)
    assert data.status_code == 200, data.text
    assert data.json()["summary"]["validation_accuracy"] is None  # no labels to predict: not measured
    assert client.get("/dashboard/view", headers=READ).status_code == 200
    assert client.get("/audit", headers=READ).json()["ok"] is True


def test_the_client_generates_and_raises_the_409(chat_client, make_client):
    client = chat_client()
    api = Client("", token=TOKEN, read_token=READ_TOKEN, http=client)
    out = api.generate(PROMPTS, max_new_tokens=3, seed=2)
    assert isinstance(out, GenerateResponse) and len(out.answers) == 2
    assert [a.text for a in out.answers] == client.app.state.model.generate(PROMPTS, max_new_tokens=3)
    with pytest.raises(APIError) as err:
        Client("", http=make_client()).generate(["hello"])
    assert err.value.status == 409 and err.value.type == "TaskMismatchError"


def test_the_schema_documents_generate(chat_client):
    spec = chat_client().get("/openapi.json").json()
    op = spec["paths"]["/generate"]["post"]
    assert op["operationId"] == "generate"
    assert {"200", "409", "413", "422", "503"} <= set(op["responses"])
    assert "predict" in op["responses"]["409"]["description"].lower()
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/GenerateResponse"
    answer = spec["components"]["schemas"]["GeneratedAnswer"]
    assert set(answer["required"]) == {"text", "tokens", "finish_reason", "manifest_version", "served"}
