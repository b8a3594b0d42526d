"""OpenAI's Batch API (``/v1/batches``) and Anthropic's Message Batches (``/v1/messages/batches``) end to end, with
the official SDKs against a real server and stories260K: each item is answered as the live endpoint answers the
same body (temperature 0), cancel stops a batch, lists page, bad input is refused in each dialect's shape, and a
server stopped mid-batch and started again on the same data folder takes the batch to its end."""

from __future__ import annotations

import io
import json
import time
from typing import Any, Callable

import anthropic
import httpx
import openai
import pytest

from jan.server.config import DEFAULT_MAX_JSON_VALUES
from server_helpers import start_server

WAIT_S = 300.0
MODEL = "stories260K"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("batches"), [stories_path])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def claude(server):
    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def _until(get: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    """``get()`` once ``done`` says so: asked every 50 ms for up to WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not done(value := get()):
        assert time.monotonic() < deadline, f"{what} not done after {WAIT_S} s: {value}"
        time.sleep(0.05)
    return value


def _chat_line(custom_id: str, prompt: str, max_tokens: int = 8, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                     "temperature": 0, **body}}


def _upload(oai, lines: list, purpose: str = "batch") -> str:
    data = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines).encode()
    return oai.files.create(file=("input.jsonl", io.BytesIO(data)), purpose=purpose).id


def _ended_openai(oai, batch_id: str):
    return _until(lambda: oai.batches.retrieve(batch_id),
                  lambda b: b.status in ("completed", "failed", "expired", "cancelled"), f"batch {batch_id}")


def _jsonl(text: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {line["custom_id"]: line for line in lines}


# -- OpenAI --------------------------------------------------------------------------------------------------
def test_openai_chat_batch_answers_as_the_live_endpoint(oai):
    prompts = {"story-1": "Once upon a time", "story-2": "The little dog", "bad": ""}
    lines = [_chat_line("story-1", prompts["story-1"]), _chat_line("story-2", prompts["story-2"]),
             _chat_line("bad", "x", max_tokens=-5)]
    batch = oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/chat/completions",
                               completion_window="24h", metadata={"job": "nightly"})
    assert batch.status == "in_progress" and batch.request_counts.total == 3 and batch.metadata == {"job": "nightly"}
    batch = _ended_openai(oai, batch.id)
    assert batch.status == "completed" and batch.model == MODEL
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
    assert batch.completed_at and batch.finalizing_at and batch.in_progress_at
    assert batch.usage.output_tokens > 0
    output = oai.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"
    answers = _jsonl(oai.files.content(batch.output_file_id).text)
    assert set(answers) == {"story-1", "story-2"}
    for custom_id in ("story-1", "story-2"):
        live = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompts[custom_id]}],
                                           max_tokens=8, temperature=0)
        line = answers[custom_id]
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == live.choices[0].message.content
    errors = _jsonl(oai.files.content(batch.error_file_id).text)
    assert set(errors) == {"bad"}
    response = errors["bad"]["response"]
    assert response["status_code"] == 400 and response["body"]["error"]["param"] == "max_tokens"


def test_openai_completions_batch(oai):
    lines = [{"custom_id": "c1", "method": "POST", "url": "/v1/completions",
              "body": {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 10, "temperature": 0}}]
    batch = _ended_openai(oai, oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/completions",
                                                  completion_window="24h").id)
    assert batch.status == "completed" and batch.error_file_id is None
    live = oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, temperature=0)
    body = _jsonl(oai.files.content(batch.output_file_id).text)["c1"]["response"]["body"]
    assert body["choices"][0]["text"] == live.choices[0].text


def test_openai_embeddings_batch(oai):
    lines = [{"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": MODEL, "input": ["Once upon a time", "The little dog"]}},
             {"custom_id": "bad", "method": "POST", "url": "/v1/embeddings", "body": {"model": MODEL, "input": []}},
             # llama-server's prompt object with an image, for a model without a projector: the live route's 400
             {"custom_id": "media", "method": "POST", "url": "/v1/embeddings", "body": {"model": MODEL, "input": [
                 "Hi", {"prompt_string": "See <__media__>", "multimodal_data": ["R0lGODlh"]}]}}]
    batch = _ended_openai(oai, oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/embeddings",
                                                  completion_window="24h").id)
    assert batch.status == "completed" and (batch.request_counts.completed, batch.request_counts.failed) == (1, 2)
    live = oai.embeddings.create(model=MODEL, input=["Once upon a time", "The little dog"], encoding_format="float")
    body = _jsonl(oai.files.content(batch.output_file_id).text)["e1"]["response"]["body"]
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    for got, want in zip(body["data"], live.data):
        assert got["embedding"] == pytest.approx(want.embedding)
    assert body["usage"] == live.usage.model_dump()
    errors = _jsonl(oai.files.content(batch.error_file_id).text)
    bad = errors["bad"]["response"]
    assert bad["status_code"] == 400 and bad["body"]["error"]["param"] == "input"
    media = errors["media"]["response"]
    live = httpx.post(str(oai.base_url.join("embeddings")), json=lines[2]["body"], timeout=120)
    assert (media["status_code"], media["body"]) == (live.status_code, live.json())
    assert media["body"]["error"]["param"] == "input[1].multimodal_data"


def _response_line(custom_id: str, prompt, max_output_tokens: int = 8, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/responses",
            "body": {"model": MODEL, "input": prompt, "max_output_tokens": max_output_tokens, "temperature": 0,
                     **body}}


def test_openai_responses_batch_answers_as_the_live_endpoint(oai):
    """A ``/v1/responses`` batch answers each line with the response object ``POST /v1/responses`` answers the same
    body: the same text, stored (retrievable, continued by ``previous_response_id``) unless ``store`` is false."""
    messages = [{"role": "user", "content": "The little dog"}]
    lines = [_response_line("plain", "Once upon a time"),
             _response_line("messages", messages, instructions="Tell a story.", store=False)]
    batch = oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/responses", completion_window="24h")
    assert batch.endpoint == "/v1/responses" and batch.status == "in_progress"
    batch = _ended_openai(oai, batch.id)
    assert batch.status == "completed" and batch.error_file_id is None and batch.model == MODEL
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 0)
    answers = _jsonl(oai.files.content(batch.output_file_id).text)
    bodies = {custom_id: line["response"]["body"] for custom_id, line in answers.items()}
    assert all(line["error"] is None and line["response"]["status_code"] == 200 for line in answers.values())
    # the SDK reads a line's body as the Response the live endpoint answers
    plain = openai.types.responses.Response.model_validate(bodies["plain"])
    live = oai.responses.create(model=MODEL, input="Once upon a time", max_output_tokens=8, temperature=0)
    assert plain.object == "response" and plain.id.startswith("resp_") and plain.id != live.id
    assert plain.status == live.status and plain.output_text == live.output_text
    assert set(bodies["plain"]) == set(live.model_dump(exclude_unset=True))
    assert batch.usage.input_tokens == plain.usage.input_tokens + bodies["messages"]["usage"]["input_tokens"]
    assert batch.usage.output_tokens == plain.usage.output_tokens + bodies["messages"]["usage"]["output_tokens"]
    live = oai.responses.create(model=MODEL, input=messages, instructions="Tell a story.", store=False,
                                max_output_tokens=8, temperature=0)
    assert bodies["messages"]["instructions"] == "Tell a story." and bodies["messages"]["store"] is False
    assert openai.types.responses.Response.model_validate(bodies["messages"]).output_text == live.output_text
    # stored as a live one is: retrieved, its input listed, continued
    assert oai.responses.retrieve(plain.id).output_text == plain.output_text
    assert oai.responses.input_items.list(plain.id).data[0].content[0].text == "Once upon a time"
    follow = oai.responses.create(model=MODEL, previous_response_id=plain.id, input="And then", max_output_tokens=4,
                                  temperature=0)
    assert follow.status in ("completed", "incomplete")
    with pytest.raises(openai.NotFoundError):  # store: false kept nothing
        oai.responses.retrieve(bodies["messages"]["id"])


def test_openai_responses_batch_bad_lines_are_their_own_errors(oai, server):
    """What ``POST /v1/responses`` refuses is that line's error, with the status and body the live endpoint
    answers; the batch's other lines are answered."""
    lines = [_response_line("good", "Once upon a time"),
             _response_line("bad-tokens", "Hi", max_output_tokens=-5),
             _response_line("bad-field", "Hi", max_output_tokns=5),
             _response_line("bad-input", [{"role": "wizard", "content": "Hi"}]),
             _response_line("unknown-previous", "Hi", previous_response_id="resp_nope"),
             _response_line("too-long", "Once upon a time " * 400),  # (the context: 512 tokens)
             _response_line("bad-image", [{"role": "user", "content": [
                 {"type": "input_image", "file_id": "file-nope"}]}]),
             _response_line("stream", "Hi", stream=True),
             _response_line("background", "Hi", background=True),
             {**_response_line("no-model", "Hi"), "body": {"input": "Hi", "model": "nope"}}]
    batch = _ended_openai(oai, oai.batches.create(input_file_id=_upload(oai, lines[:-1]), endpoint="/v1/responses",
                                                  completion_window="24h").id)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, len(lines) - 2)
    assert set(_jsonl(oai.files.content(batch.output_file_id).text)) == {"good"}
    errors = _jsonl(oai.files.content(batch.error_file_id).text)
    assert set(errors) == {line["custom_id"] for line in lines[1:-1]}
    for custom_id, line in errors.items():
        body = next(item["body"] for item in lines if item["custom_id"] == custom_id)
        assert line["error"] is None, custom_id
        response = line["response"]
        assert set(response["body"]["error"]) == {"message", "type", "param", "code"}, custom_id
        if custom_id in ("stream", "background"):
            assert response["status_code"] == 400, custom_id  # (the live endpoint streams or answers at once)
            continue
        live = httpx.post(server.base_url + "/v1/responses", json=body, timeout=120)
        assert (response["status_code"], response["body"]) == (live.status_code, live.json()), custom_id
    assert errors["too-long"]["response"]["body"]["error"]["param"] == "input"
    assert errors["stream"]["response"]["body"]["error"]["param"] == "stream"
    assert errors["background"]["response"]["body"]["error"]["param"] == "background"
    # a model that is not there is the line's 404, as live
    batch = _ended_openai(oai, oai.batches.create(input_file_id=_upload(oai, lines[-1:]), endpoint="/v1/responses",
                                                  completion_window="24h").id)
    line = _jsonl(oai.files.content(batch.error_file_id).text)["no-model"]["response"]
    live = httpx.post(server.base_url + "/v1/responses", json=lines[-1]["body"], timeout=120)
    assert live.status_code == 404 and (line["status_code"], line["body"]) == (404, live.json())


def test_openai_responses_batch_refuses_mcp_tools(oai):
    """A batch's line reaches no MCP server: an ``mcp`` tool is that line's 400, never dropped (the model answering
    without the tools the request gave it)."""
    lines = [_response_line("mcp", "Hi", tools=[{"type": "mcp", "server_label": "notes",
                                                 "server_url": "https://mcp.example.com/mcp"}])]
    batch = _ended_openai(oai, oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/responses",
                                                  completion_window="24h").id)
    response = _jsonl(oai.files.content(batch.error_file_id).text)["mcp"]["response"]
    assert response["status_code"] == 400 and response["body"]["error"]["param"] == "tools[0]", response


def test_openai_responses_batch_cancel(oai):
    """Cancelling a ``/v1/responses`` batch stops the response it runs; every line is told (answered or
    ``batch_cancelled``) and none is left generating."""
    lines = [_response_line(f"r{i}", "Once upon a time", max_output_tokens=200) for i in range(40)]
    batch = oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/responses", completion_window="24h")
    oai.batches.cancel(batch.id)
    batch = _ended_openai(oai, batch.id)
    assert batch.status == "cancelled" and batch.request_counts.completed < 40
    told = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            told.update(_jsonl(oai.files.content(file_id).text))
    assert set(told) == {f"r{i}" for i in range(40)}
    assert any((line["error"] or {}).get("code") == "batch_cancelled" for line in told.values())
    for line in told.values():  # an answered one is a whole response (one cut off by the cancel reads cancelled)
        if line["response"] is not None:
            assert line["response"]["body"]["status"] in ("completed", "incomplete", "cancelled")
            stored = oai.responses.retrieve(line["response"]["body"]["id"])
            assert stored.status == line["response"]["body"]["status"]


def test_openai_cancel_stops_the_batch(oai):
    lines = [_chat_line(f"r{i}", "Once upon a time", max_tokens=200) for i in range(100)]
    batch = oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/chat/completions",
                               completion_window="24h")
    cancelling = oai.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    batch = _ended_openai(oai, batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at
    assert batch.request_counts.completed < 100
    told = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            told.update(_jsonl(oai.files.content(file_id).text))
    assert set(told) == {f"r{i}" for i in range(100)}  # every request is told: answered or cancelled
    assert any((line["error"] or {}).get("code") == "batch_cancelled" for line in told.values())
    with pytest.raises(openai.BadRequestError):
        oai.batches.cancel(_ended_openai(oai, oai.batches.create(
            input_file_id=_upload(oai, [_chat_line("one", "Hi")]), endpoint="/v1/chat/completions",
            completion_window="24h").id).id)  # a completed batch cannot be cancelled


@pytest.mark.parametrize("lines, code", [
    (["{not json", _chat_line("a", "Hi")], "invalid_json_line"),
    # what a request body may not hold either (Python's parser takes each; the batch's write then failed with a
    # 400 in Python's words naming no line): NaN, a number past a double, a lone surrogate, a body nested too deep
    ([json.dumps(_chat_line("a", "Hi", temperature=float("nan"))), _chat_line("b", "Hi")], "invalid_json_line"),
    ([json.dumps(_chat_line("a", "Hi")).replace('"temperature": 0', '"temperature": 1e999')], "invalid_json_line"),
    ([json.dumps(_chat_line("a", "Hi \ud800"))], "invalid_json_line"),
    ([json.dumps(_chat_line("a", "Hi", metadata={"k": []})).replace("[]", "[" * 80 + "]" * 80)], "invalid_json_line"),
    # a line of more JSON values than the server's max_json_values: refused unparsed, as a request body would be
    ([_chat_line("a", "Hi", stop=[0] * (DEFAULT_MAX_JSON_VALUES + 1))], "too_many_json_values"),
    ([_chat_line("a", "Hi"), _chat_line("a", "Hi")], "duplicate_custom_id"),
    ([{**_chat_line("a", "Hi"), "url": "/v1/completions"}], "url_mismatch"),
    ([{**_chat_line("a", "Hi"), "method": "GET"}], "invalid_request"),
    ([_chat_line("a", "Hi"), {**_chat_line("b", "Hi"), "body": {"model": "other", "messages": []}}],
     "model_mismatch"),
    ([" "], "empty_file"),
])
def test_openai_bad_input_lines_fail_the_batch(oai, lines, code):
    batch = oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/chat/completions",
                               completion_window="24h")
    assert batch.status == "failed" and batch.failed_at and batch.request_counts.total == 0
    assert batch.errors.data[0].code == code
    if code != "empty_file":
        assert batch.errors.data[0].line == (2 if code in ("duplicate_custom_id", "model_mismatch") else 1)
    assert oai.batches.retrieve(batch.id).status == "failed"


def test_a_line_whose_body_is_at_the_json_values_limit_runs_as_the_request_would(oai, server):
    """A line's body is held to max_json_values as the same body sent as a request is: the line's own object and
    commas were counted with it, so a body at the limit, which the endpoint parses, failed the whole batch."""
    from jan.server.validation import json_values_in

    def line(values: int) -> dict:
        body = _chat_line("a", "Hi", stop=[])["body"]
        body["stop"] = [0] * (values - json_values_in(json.dumps(body).encode()) + 1)  # (n items: n - 1 commas)
        assert json_values_in(json.dumps(body).encode()) == values
        return {**_chat_line("a", "Hi"), "body": body}

    at_limit = line(DEFAULT_MAX_JSON_VALUES)
    alone = httpx.post(server.base_url + "/v1/chat/completions", json=at_limit["body"], timeout=120)
    assert alone.status_code == 400 and "stop" in alone.text, alone.text  # parsed: the field's own 400, not a 413
    batch = _ended_openai(oai, oai.batches.create(input_file_id=_upload(oai, [at_limit]),
                                                  endpoint="/v1/chat/completions", completion_window="24h").id)
    assert batch.status == "completed", batch.errors
    told = _jsonl(oai.files.content(batch.error_file_id or batch.output_file_id).text)
    assert told["a"]["response"]["status_code"] == alone.status_code, told
    over = oai.batches.create(input_file_id=_upload(oai, [line(DEFAULT_MAX_JSON_VALUES + 1)]),
                              endpoint="/v1/chat/completions", completion_window="24h")
    assert over.status == "failed" and over.errors.data[0].code == "too_many_json_values"


def test_openai_too_many_lines(oai, monkeypatch):
    from jan.server.dialects import openai_batches

    monkeypatch.setattr(openai_batches, "MAX_LINES", 2)  # (the server runs in this process)
    batch = oai.batches.create(input_file_id=_upload(oai, [_chat_line(f"r{i}", "Hi") for i in range(3)]),
                               endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "failed" and batch.errors.data[0].code == "too_many_tasks"


def test_openai_bad_create_bodies_are_400s(oai, server):
    good = _upload(oai, [_chat_line("a", "Hi")])
    for kwargs, param in [
        ({"input_file_id": good, "endpoint": "/v1/moderations", "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": good, "endpoint": "/v1/images/generations", "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": good, "endpoint": "/v1/chat/completions", "completion_window": "48h"},
         "completion_window"),
        ({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
         "input_file_id"),
        ({"input_file_id": _upload(oai, [_chat_line("a", "Hi")], purpose="user_data"),
          "endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            oai.batches.create(**kwargs)
        assert err.value.body["param"] == param, kwargs
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_nope")
    # metadata is held to the rules (and words) of every other body's: the batch had a copy of its own check
    for metadata, said in (({str(n): "x" for n in range(17)}, "at most 16 key-value pairs are allowed, got 17"),
                           ({"k": "x" * 513}, "is 513 characters long"), ({"k" * 65: "x"}, "keys may be at most 64")):
        with pytest.raises(openai.BadRequestError) as err:
            oai.batches.create(input_file_id=good, endpoint="/v1/chat/completions", completion_window="24h",
                               metadata=metadata)
        assert err.value.body["param"] == "metadata" and said in err.value.message, err.value.body
    response = httpx.post(server.base_url + "/v1/batches", json={"input_file_id": good}, timeout=60)
    assert response.status_code == 400 and set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_openai_list_pages(oai):
    made = [oai.batches.create(input_file_id=_upload(oai, [_chat_line("a", "Hi")]), endpoint="/v1/chat/completions",
                               completion_window="24h").id for _ in range(3)]
    first = oai.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    second = oai.batches.list(limit=2, after=first.data[-1].id)
    assert second.data[0].id == made[0]
    listed = [b.id for b in oai.batches.list(limit=2)]  # the SDK's auto-paging follows `after`
    assert listed[:3] == made[::-1] and len(listed) == len(set(listed))
    for batch_id in made:
        _ended_openai(oai, batch_id)


# -- Anthropic -----------------------------------------------------------------------------------------------
def _request(custom_id: str, prompt: str, max_tokens: int = 8, **params) -> dict:
    return {"custom_id": custom_id, "params": {"model": MODEL, "max_tokens": max_tokens, "temperature": 0,
                                               "messages": [{"role": "user", "content": prompt}], **params}}


def _ended_anthropic(claude, batch_id: str):
    return _until(lambda: claude.messages.batches.retrieve(batch_id), lambda b: b.processing_status == "ended",
                  f"message batch {batch_id}")


def test_anthropic_batch_answers_as_the_live_endpoint(claude):
    batch = claude.messages.batches.create(requests=[
        _request("one", "Once upon a time"), _request("two", "The little dog"),
        _request("bad", "Hi", model="no-such-model")])
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 3
    assert batch.results_url is None
    batch = _ended_anthropic(claude, batch.id)
    counts = batch.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled) == (0, 2, 1, 0)
    assert batch.ended_at and batch.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")
    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    assert set(results) == {"one", "two", "bad"}
    for custom_id, prompt in (("one", "Once upon a time"), ("two", "The little dog")):
        live = claude.messages.create(model=MODEL, max_tokens=8, extra_body={"temperature": 0},
                                      messages=[{"role": "user", "content": prompt}])
        assert results[custom_id].type == "succeeded"
        assert results[custom_id].message.content[0].text == live.content[0].text
    assert results["bad"].type == "errored" and results["bad"].error.error.type == "not_found_error"
    deleted = claude.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve(batch.id)


def test_anthropic_batch_refuses_mcp_servers(claude):
    """A batch's request reaches no MCP server: ``mcp_servers`` is that request's 400, never dropped (the model
    answering without the servers' tools)."""
    request = _request("mcp", "Hi")
    request["params"]["mcp_servers"] = [{"type": "url", "url": "https://mcp.example.com/mcp", "name": "notes"}]
    batch = _ended_anthropic(claude, claude.messages.batches.create(requests=[request]).id)
    [result] = list(claude.messages.batches.results(batch.id))
    assert result.result.type == "errored" and result.result.error.error.type == "invalid_request_error"
    assert "mcp_servers" in result.result.error.error.message


def test_anthropic_cancel(claude):
    batch = claude.messages.batches.create(requests=[_request(f"r{i}", "Once upon a time", max_tokens=200)
                                                     for i in range(100)])
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.batches.delete(batch.id)  # still processing: cancel it first
    canceling = claude.messages.batches.cancel(batch.id)
    assert canceling.processing_status in ("canceling", "ended") and canceling.cancel_initiated_at
    batch = _ended_anthropic(claude, batch.id)
    assert batch.request_counts.canceled > 0
    assert batch.request_counts.succeeded + batch.request_counts.canceled == 100
    types = [r.result.type for r in claude.messages.batches.results(batch.id)]
    assert len(types) == 100 and "canceled" in types


def test_anthropic_bad_input_is_a_400_in_its_shape(claude, server):
    for requests in ([], [_request("a", "Hi"), _request("a", "Hi")], [_request("bad id!", "Hi")]):
        with pytest.raises(anthropic.BadRequestError) as err:
            claude.messages.batches.create(requests=requests)
        assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError) as err:
        claude.messages.batches.retrieve("msgbatch_nope")
    assert err.value.body["error"]["type"] == "not_found_error"
    batch = claude.messages.batches.create(requests=[_request("a", "Once", max_tokens=200)])
    early = httpx.get(f"{server.base_url}/v1/messages/batches/{batch.id}/results", timeout=60)
    if early.status_code != 200:  # (unless it has ended already)
        assert early.status_code == 400 and early.json()["type"] == "error"
    _ended_anthropic(claude, batch.id)


def test_anthropic_list_pages(claude):
    made = [claude.messages.batches.create(requests=[_request("a", "Hi")]).id for _ in range(3)]
    page = claude.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2] and page.has_more
    assert page.first_id == made[2] and page.last_id == made[1]
    after = claude.messages.batches.list(limit=2, after_id=made[1])
    assert after.data[0].id == made[0]
    before = claude.messages.batches.list(limit=2, before_id=made[0])
    assert [b.id for b in before.data] == [made[2], made[1]]
    for batch_id in made:
        _ended_anthropic(claude, batch_id)


# -- a restart mid-batch --------------------------------------------------------------------------------------
def test_a_restart_mid_batch_takes_it_to_its_end(tmp_path, stories_path):
    n = 60
    srv = start_server(tmp_path, [stories_path])
    try:
        oai = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        claude = anthropic.Anthropic(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=120)
        lines = [_chat_line(f"r{i}", "Once upon a time", max_tokens=100) for i in range(n)]
        batch_id = oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/chat/completions",
                                      completion_window="24h").id
        message_batch_id = claude.messages.batches.create(
            requests=[_request(f"m{i}", "The little dog", max_tokens=100) for i in range(n)]).id
        _until(lambda: oai.batches.retrieve(batch_id), lambda b: b.request_counts.completed >= 1,
               "the first item")
    finally:
        srv.stop()  # mid-batch: the OpenAI batch is running, the Anthropic one waits its turn
    from jan.store.batches import BatchStore

    assert BatchStore(tmp_path / "data").get(message_batch_id)["status"] == "in_progress"  # (stopped unended)
    srv = start_server(tmp_path, [stories_path])
    try:
        oai = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        claude = anthropic.Anthropic(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=120)
        batch = _ended_openai(oai, batch_id)
        assert batch.status == "completed" and batch.request_counts.completed == n
        assert set(_jsonl(oai.files.content(batch.output_file_id).text)) == {f"r{i}" for i in range(n)}
        message_batch = _ended_anthropic(claude, message_batch_id)
        assert message_batch.request_counts.succeeded == n
        assert sorted(r.custom_id for r in claude.messages.batches.results(message_batch_id)) == \
            sorted(f"m{i}" for i in range(n))
    finally:
        srv.stop()


def test_a_restart_mid_responses_batch_answers_every_line_whole(tmp_path, stories_path):
    """A stop of jan cuts the running ``/v1/responses`` line off with the batch's worker (not as a live response's
    cancel, which would end it ``cancelled`` and record that as its answer): at the next start it runs again, and
    every line's answer is a whole response."""
    n = 30
    srv = start_server(tmp_path, [stories_path])
    try:
        oai = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        lines = [_response_line(f"r{i}", "Once upon a time", max_output_tokens=100) for i in range(n)]
        # two batches: the second waits for the first (one worker), so it is certainly unended at the stop
        batch_ids = [oai.batches.create(input_file_id=_upload(oai, lines), endpoint="/v1/responses",
                                        completion_window="24h").id for _ in range(2)]
        _until(lambda: oai.batches.retrieve(batch_ids[0]), lambda b: b.request_counts.completed >= 1,
               "the first item")
    finally:
        srv.stop()
    from jan.store.batches import BatchStore

    assert BatchStore(tmp_path / "data").get(batch_ids[1])["status"] == "in_progress"
    srv = start_server(tmp_path, [stories_path])
    try:
        oai = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        for batch_id in batch_ids:
            batch = _ended_openai(oai, batch_id)
            assert batch.status == "completed" and batch.request_counts.completed == n
            assert batch.error_file_id is None
            answers = _jsonl(oai.files.content(batch.output_file_id).text)
            assert set(answers) == {f"r{i}" for i in range(n)}
            for line in answers.values():
                body = line["response"]["body"]
                assert body["status"] in ("completed", "incomplete") and body["output"], body
                assert oai.responses.retrieve(body["id"]).status == body["status"]
    finally:
        srv.stop()
