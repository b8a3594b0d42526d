"""Anthropic's Models API (GET /v1/models, /v1/models/{id}) on the paths OpenAI's clients read too, driven by both
official SDKs against a real server: Anthropic's SDK (told by its ``anthropic-version`` header) gets ``ModelInfo``
objects, cursor pages and Anthropic's errors; everyone else keeps OpenAI's list with jan's own fields."""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request

import anthropic
import openai
import pytest

from dialect_helpers import reasoning_model, tool_model
from jan.store import DataFolder
from server_helpers import start_server

KEY = "sk-test-models"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("anthropic-models")
    srv = start_server(tmp, [stories_path, tool_model(tmp), reasoning_model(tmp)], api_key=KEY)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def jan_models(server):
    """Jan's own list (OpenAI's shape and jan's fields), newest first as Anthropic lists: by the model.json's
    ``created`` in milliseconds (the three are imported at the server's start, often within one second, where
    ``created``'s seconds tie)."""
    listed = openai.OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0).models.list().data
    assert len(listed) == 3
    stored = {m["id"]: m["created"] for m in DataFolder(server.config.data_folder).models.list()}
    return sorted(listed, key=lambda m: -stored[m.id])


def _get(server, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(server.base_url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_list_and_retrieve_are_model_infos(client, jan_models):
    page = client.models.list()
    assert [m.id for m in page.data] == [m.id for m in jan_models]
    assert page.has_more is False and page.first_id == jan_models[0].id and page.last_id == jan_models[-1].id
    for info, jan in zip(page.data, jan_models):
        assert info.type == "model" and info.lifecycle == "active"
        assert info.display_name == (jan.model_extra.get("name") or jan.id)
        assert info.created_at == datetime.datetime.fromtimestamp(jan.created, datetime.timezone.utc)
    one = client.models.retrieve("stories260K")
    assert one.type == "model" and one.id == "stories260K" and one.created_at == page.data[
        [m.id for m in page.data].index("stories260K")].created_at
    # nothing of OpenAI's shape or jan's own fields reaches Anthropic's clients
    raw = client.models.with_raw_response.retrieve("stories260K").http_response.json()
    assert not {"object", "owned_by", "state", "created"} & set(raw)
    assert raw["created_at"].endswith("Z")


def test_pages_follow_the_cursors(client, jan_models):
    ids = [m.id for m in jan_models]
    first = client.models.list(limit=1)
    assert [m.id for m in first.data] == ids[:1] and first.has_more and first.first_id == first.last_id == ids[0]
    assert [m.id for m in first] == ids  # the SDK's auto-paging walks after_id to the end
    after = client.models.list(limit=1, after_id=ids[0])
    assert [m.id for m in after.data] == [ids[1]] and after.has_more
    last = client.models.list(limit=5, after_id=ids[1])
    assert [m.id for m in last.data] == [ids[2]] and last.has_more is False
    before = client.models.list(limit=1, before_id=ids[2])
    assert [m.id for m in before.data] == [ids[1]] and before.has_more
    assert [m.id for m in client.models.list(limit=5, before_id=ids[1]).data] == [ids[0]]
    assert client.models.list(lifecycle=["retired"]).data == []
    assert [m.id for m in client.models.list(lifecycle=["active", "deprecated"]).data] == ids


def test_errors_are_anthropics(server, client):
    with pytest.raises(anthropic.NotFoundError) as err:
        client.models.retrieve("nope")
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "not_found_error"
    assert "nope" in err.value.body["error"]["message"]
    for bad in ({"limit": 0}, {"limit": 1001}, {"after_id": "nope"}):
        with pytest.raises(anthropic.BadRequestError) as err:
            client.models.list(**bad)
        assert err.value.body["error"]["type"] == "invalid_request_error"
        assert next(iter(bad)) in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.models.list(extra_query={"limit": "many"})
    with pytest.raises(anthropic.BadRequestError):
        client.models.list(lifecycle=["ancient"])  # type: ignore[list-item]
    wrong = anthropic.Anthropic(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        wrong.models.list()
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "authentication_error"


def test_openai_clients_keep_openais_answer(server, jan_models):
    oa = openai.OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0)
    one = oa.models.retrieve("stories260K")
    assert one.object == "model" and one.owned_by and isinstance(one.created, int)
    assert one.model_extra["state"] and "capabilities" in one.model_extra
    with pytest.raises(openai.NotFoundError) as err:
        oa.models.retrieve("nope")
    assert err.value.code == "model_not_found"
    status, body = _get(server, "/v1/models", {"Authorization": f"Bearer {KEY}"})
    assert status == 200 and body["object"] == "list" and "problems" in body
    assert {m["id"] for m in body["data"]} == {m.id for m in jan_models}
    status, body = _get(server, "/v1/models/nope", {"Authorization": "Bearer wrong"})
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and "type" not in body
    # the dialect is the request's: the same path with anthropic-version answers Anthropic's way
    status, body = _get(server, "/v1/models?limit=2", {"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert status == 200 and len(body["data"]) == 2 and body["has_more"] and body["data"][0]["type"] == "model"
