"""Issue 10 by its kinds, on the other dialects' routes: Anthropic (``/v1/messages``), OpenAI Responses
(``/v1/responses``), Ollama (``/api/*``), MCP and tools (``/v1/mcp/*``, ``/v1/tools``), runs. On a real
server with stories260K, all-MiniLM and a stories-sized model with a tool-calling template.

Cross-site writes (3) and CORS (4) on every route of the spec; errors raised before a handler runs in
each dialect's own shape (5 of the brief); numbers bounded and not coerced (8), null means the default
(14b), the error names the field (19), a tool call cut off by the token limit (17).
"""

from __future__ import annotations

import json

import pytest
from test_server_hardening import APP, EVIL, INT32_OVER, KEY, call, spec_operations

from jan.server.config import ServerConfig
from jan.testing.gguf_models import write_tool_template_model
from jan.testing.server import ServerThread

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
ONCE = [{"role": "user", "content": "Once"}]
MESSAGES = {"model": "stories260K", "max_tokens": 2, "messages": ONCE}
RESPONSES = {"model": "stories260K", "max_output_tokens": 2, "input": "Once", "store": False}
OLLAMA_CHAT = {"model": "stories260K", "stream": False, "messages": ONCE, "options": {"num_predict": 2}}
OLLAMA_GENERATE = {"model": "stories260K", "stream": False, "prompt": "Once", "options": {"num_predict": 2}}
EMBED = {"model": "all-MiniLM-L6-v2-f32", "input": "x"}
WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, stories_path, minilm_path):
    tmp = tmp_path_factory.mktemp("dialect-hard")
    tool_model = write_tool_template_model(tmp / "tool-model.gguf")
    cfg = ServerConfig(data_folder=tmp / "data", models=[str(stories_path), str(minilm_path), str(tool_model)],
                       n_ctx=1024, n_parallel=2, n_threads=1, api_key=KEY, cors_origins=[APP])
    with ServerThread(cfg) as srv:
        yield srv


def shape_of(path: str) -> str:
    if path.startswith("/api/"):
        return "ollama"
    if path.startswith("/v1/messages"):
        return "anthropic"
    return "openai"


def error_text(path: str, err) -> str:
    """The error's message, checking the body has the shape of the route's dialect."""
    kind = shape_of(path)
    assert isinstance(err, dict), (path, err)
    if kind == "ollama":
        assert isinstance(err.get("error"), str), (path, err)
        return err["error"]
    if kind == "anthropic":
        assert err.get("type") == "error" and isinstance(err["error"]["message"], str), (path, err)
        return err["error"]["message"]
    assert isinstance(err["error"]["message"], str), (path, err)
    return err["error"]["message"]


def concrete(path: str) -> str:
    return "/".join("x" if seg.startswith("{") else seg for seg in path.split("/"))


# -- 3: cross-site writes, on every state-changing operation of the spec -----------------------------
def test_every_state_changing_route_refuses_a_foreign_origin(keyed):
    ops = [(m, p) for m, p, _ in spec_operations(keyed) if m in STATE_CHANGING]
    assert any(p.startswith("/api/") for _, p in ops) and any(p.startswith("/v1/messages") for _, p in ops)
    assert any(p.startswith("/v1/responses") for _, p in ops) and any(p.startswith("/v1/mcp/") for _, p in ops)
    assert any(p.endswith("/resume") for _, p in ops)
    for method, path in ops:
        for content_type, raw in (("text/plain", b'{"model": "stories260K"}'), ("application/json", b"{}")):
            for key in (True, False):
                status, _, err = call(keyed, method, concrete(path), raw=raw, content_type=content_type,
                                      headers={"Origin": EVIL}, key=key)
                assert status == 403, (method, path, content_type, key, status, err)
                assert "may not change anything" in error_text(path, err)


# -- 4: CORS on errors and streams of every dialect -------------------------------------------------
def test_cors_headers_on_every_dialects_errors_and_streams(keyed):
    origin = {"Origin": APP}
    cases = [
        ("POST", "/v1/messages", {"messages": ONCE}),                    # 400: no max_tokens
        ("POST", "/v1/messages", MESSAGES | {"stream": True}),
        ("POST", "/v1/responses", {"input": 3}),
        ("POST", "/v1/responses", RESPONSES | {"stream": True}),
        ("GET", "/v1/responses/resp_nope", None),
        ("POST", "/api/chat", {"model": "nope", "messages": ONCE}),
        ("POST", "/api/chat", OLLAMA_CHAT | {"stream": True}),          # NDJSON
        ("GET", "/api/nope", None),
        ("GET", "/v1/tools", None),
        ("GET", "/v1/mcp/servers", None),
        ("POST", "/v1/mcp/servers/nope/enable", {}),
        ("GET", "/v1/threads/nope/runs/run_nope/events", None),
    ]
    for method, path, body in cases:
        status, headers, _ = call(keyed, method, path, body, headers=origin)
        assert headers.get("Access-Control-Allow-Origin") == APP, (method, path, status)
        assert "Origin" in headers.get_all("Vary", [])
    for path in ("/api/tags", "/v1/messages", "/v1/responses", "/v1/tools"):
        status, headers, err = call(keyed, "GET", path, headers=origin, key=False)
        assert status == 401 and headers.get("Access-Control-Allow-Origin") == APP, (path, status)
        assert error_text(path, err)  # in the dialect's own shape
    _, headers, _ = call(keyed, "POST", "/api/chat", OLLAMA_CHAT, headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in headers


# -- errors raised before any handler leave in the route's dialect's shape --------------------------
def test_errors_before_the_handler_have_the_dialects_shape(keyed):
    status, _, err = call(keyed, "GET", "/api/tags", key=False)
    assert status == 401 and list(err) == ["error"] and err["error"].startswith("Missing API key: ")
    status, _, err = call(keyed, "GET", "/api/nope")
    assert status == 404 and isinstance(err["error"], str)
    status, _, err = call(keyed, "POST", "/v1/messages", raw=b"{}", content_type="text/plain")
    assert status == 415 and err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    status, _, spec = call(keyed, "GET", "/openapi.json")
    errors = {path: op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
              for path, ops in spec["paths"].items() for op in ops.values()}
    assert errors["/api/chat"] == "OllamaError" and errors["/v1/messages"] == "AnthropicError"
    assert errors["/v1/messages/count_tokens"] == "AnthropicError" and errors["/v1/responses"] == "Error"


# -- 8, 19: numbers outside native ranges, in every dialect; the error names the field ---------------
NUMBER_CASES = [
    ("/v1/messages", MESSAGES | {"max_tokens": INT32_OVER}, "max_tokens"),
    ("/v1/messages", MESSAGES | {"top_k": INT32_OVER}, "top_k"),
    ("/v1/messages", MESSAGES | {"temperature": 5}, "temperature"),
    ("/v1/messages", MESSAGES | {"thinking": {"type": "enabled", "budget_tokens": INT32_OVER}}, "budget_tokens"),
    ("/v1/messages", MESSAGES | {"max_tokens": False}, "max_tokens"),
    ("/v1/messages", MESSAGES | {"max_tokens": "3"}, "max_tokens"),
    ("/v1/responses", RESPONSES | {"max_output_tokens": INT32_OVER}, "max_output_tokens"),
    ("/v1/responses", RESPONSES | {"max_output_tokens": True}, "max_output_tokens"),
    ("/v1/responses", RESPONSES | {"temperature": 3}, "temperature"),
    ("/api/chat", OLLAMA_CHAT | {"options": {"num_predict": INT32_OVER}}, "num_predict"),
    ("/api/chat", OLLAMA_CHAT | {"options": {"top_k": INT32_OVER}}, "top_k"),
    ("/api/chat", OLLAMA_CHAT | {"options": {"repeat_last_n": INT32_OVER}}, "repeat_last_n"),
    ("/api/chat", OLLAMA_CHAT | {"options": {"seed": 2**64}}, "seed"),
    ("/api/chat", OLLAMA_CHAT | {"options": {"temperature": -1}}, "temperature"),
    ("/api/chat", OLLAMA_CHAT | {"options": {"num_predict": "3"}}, "num_predict"),
    ("/api/chat", OLLAMA_CHAT | {"top_logprobs": INT32_OVER, "logprobs": True}, "top_logprobs"),
    ("/api/generate", OLLAMA_GENERATE | {"options": {"num_predict": INT32_OVER}}, "num_predict"),
    ("/api/generate", OLLAMA_GENERATE | {"context": [1, INT32_OVER]}, "context"),
    ("/api/embed", EMBED | {"dimensions": INT32_OVER}, "dimensions"),
]


@pytest.mark.parametrize("path,body,field", NUMBER_CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(NUMBER_CASES)])
def test_dialect_numbers_outside_native_ranges_are_400_naming_the_field(keyed, path, body, field):
    status, _, err = call(keyed, "POST", path, body)
    assert status == 400, (status, err)
    assert field in error_text(path, err), err
    if shape_of(path) == "openai":
        assert err["error"]["param"].endswith(field), err


def test_dialect_numbers_are_bounded_in_the_openapi_spec(keyed):
    _, _, spec = call(keyed, "GET", "/openapi.json")
    schemas = spec["components"]["schemas"]

    def maximum(schema):
        return [o.get("maximum") for o in schema.get("anyOf", [schema]) if o.get("type") in ("integer", "number")]

    for model, names in (("MessagesRequest", ("max_tokens", "top_k", "temperature")),
                         ("ResponsesRequest", ("max_output_tokens", "temperature")),
                         ("OllamaOptions", ("num_predict", "top_k", "repeat_last_n", "seed", "temperature"))):
        props = schemas[model]["properties"]
        for name in names:
            assert maximum(props[name]) and None not in maximum(props[name]), (model, name, props[name])


# -- 14b: null means the default, in every dialect -------------------------------------------------
def test_explicit_null_means_default_in_every_dialect(keyed):
    status, _, out = call(keyed, "POST", "/v1/messages", MESSAGES | {
        "stream": None, "temperature": None, "top_k": None, "top_p": None, "stop_sequences": None, "system": None,
        "tools": None, "tool_choice": None, "thinking": None, "metadata": None})
    assert status == 200 and out["type"] == "message", out
    status, _, out = call(keyed, "POST", "/v1/responses", RESPONSES | {
        "stream": None, "background": None, "temperature": None, "instructions": None, "tools": None,
        "previous_response_id": None, "reasoning": None, "text": None, "metadata": None})
    assert status == 200 and out["object"] == "response", out
    status, _, out = call(keyed, "POST", "/v1/responses", {"model": "stories260K", "max_output_tokens": 2,
                                                           "input": "Once", "store": None})
    assert status == 200 and out["object"] == "response", out  # store: null is the default (stored)
    status, _, out = call(keyed, "POST", "/api/chat", OLLAMA_CHAT | {
        "stream": False, "format": None, "think": None, "keep_alive": None, "tools": None,
        "options": {"num_predict": 2, "temperature": None, "seed": None, "stop": None}})
    assert status == 200 and out["done"] is True, out
    status, _, out = call(keyed, "POST", "/api/generate", OLLAMA_GENERATE | {"system": None, "raw": None,
                                                                             "suffix": None, "images": None})
    assert status == 200 and out["done"] is True, out
    status, _, out = call(keyed, "POST", "/api/embed", EMBED | {"truncate": None, "dimensions": None})
    assert status == 200 and out["embeddings"], out


# -- 17: a tool call cut off by the token limit, in every dialect -------------------------------------
def _sse(text: str) -> list[tuple[str, dict]]:
    events, name = [], ""
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: {"):
            data = json.loads(line[6:])
            events.append((name or data.get("type", ""), data))
    return events


def test_a_tool_call_cut_off_by_the_limit_ends_with_the_limit_and_no_markup_anthropic(keyed):
    body = {"model": "tool-model", "max_tokens": 8, "temperature": 0, "tools": [
        {"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}],
            "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    status, _, out = call(keyed, "POST", "/v1/messages", body)
    assert status == 200 and out["stop_reason"] == "max_tokens", out
    text = "".join(b.get("text", "") for b in out["content"] if b["type"] == "text")
    assert "<tool_call>" not in text and "{" not in text, out
    status, _, raw = call(keyed, "POST", "/v1/messages", body | {"stream": True})
    events = _sse(raw)
    streamed = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert "<tool_call>" not in streamed and "{" not in streamed
    assert [d["delta"]["stop_reason"] for n, d in events if n == "message_delta"] == ["max_tokens"]


def test_a_tool_call_cut_off_by_the_limit_ends_with_the_limit_and_no_markup_responses(keyed):
    body = {"model": "tool-model", "max_output_tokens": 8, "temperature": 0, "store": False,
            "tools": [{"type": "function", **WEATHER}], "tool_choice": "required", "input": "Weather in Paris?"}
    status, _, out = call(keyed, "POST", "/v1/responses", body)
    assert status == 200 and out["status"] == "incomplete", out
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    text = "".join(part.get("text", "") for item in out["output"] if item["type"] == "message"
                   for part in item["content"])
    assert "<tool_call>" not in text and "{" not in text, out
    status, _, raw = call(keyed, "POST", "/v1/responses", body | {"stream": True})
    events = _sse(raw)
    streamed = "".join(d.get("delta", "") for n, d in events if n == "response.output_text.delta")
    assert "<tool_call>" not in streamed and "{" not in streamed
    assert events[-1][0] == "response.incomplete"
    # a call the limit cut off is an incomplete item, never a completed one (OpenAI's), the calls before it
    # complete: whole and streamed (this model makes calls until 200 tokens cut one)
    body["max_output_tokens"] = 200
    status, _, out = call(keyed, "POST", "/v1/responses", body)
    status, _, raw = call(keyed, "POST", "/v1/responses", body | {"stream": True})
    for output in (out["output"], _sse(raw)[-1][1]["response"]["output"]):
        calls = [item["status"] for item in output if item["type"] == "function_call"]
        assert calls and calls[-1] == "incomplete" and set(calls[:-1]) <= {"completed"}, output


# -- 19: a prompt too long for the context names the field that carried it ----------------------------
def test_context_overflow_names_the_dialects_prompt_field(keyed):
    long = "Once upon a time " * 400
    status, _, err = call(keyed, "POST", "/v1/responses", RESPONSES | {"input": long})
    assert status == 400 and err["error"]["param"] == "input" and err["error"]["code"] == "context_length_exceeded"
    status, _, err = call(keyed, "POST", "/v1/responses", RESPONSES | {"input": [
        {"role": "user", "content": [{"type": "input_text", "text": long}]}]})
    assert status == 400 and err["error"]["param"] == "input", err
    status, _, err = call(keyed, "POST", "/v1/messages", MESSAGES | {"messages": [{"role": "user", "content": long}]})
    assert status == 400 and err["type"] == "error" and "context" in err["error"]["message"], err
    status, _, err = call(keyed, "POST", "/api/chat", OLLAMA_CHAT | {"messages": [{"role": "user", "content": long}]})
    assert status == 400 and "context" in err["error"], err


def test_a_tool_name_given_twice_is_a_400_in_every_dialect(keyed):
    """The model's call could not say which of two same-named tools it means: refused before any work, in the
    route's own error shape, naming the second one."""
    params = WEATHER["parameters"]
    openai_tool = {"type": "function", "function": WEATHER}
    cases = [
        ("/v1/chat/completions", MESSAGES | {"tools": [openai_tool, openai_tool]}),
        ("/v1/apply-template", {"model": "stories260K", "messages": ONCE, "tools": [openai_tool, openai_tool]}),
        ("/v1/messages", MESSAGES | {"tools": [{"name": "get_weather", "input_schema": params}] * 2}),
        ("/v1/messages/count_tokens", {"model": "stories260K", "messages": ONCE,
                                       "tools": [{"name": "get_weather", "input_schema": params}] * 2}),
        ("/v1/responses", RESPONSES | {"tools": [{"type": "function", "name": "get_weather", "parameters": params}] * 2}),
        # queued work too: refused when asked, not failed later
        ("/v1/responses", RESPONSES | {"background": True, "store": True,
                                       "tools": [{"type": "function", "name": "get_weather", "parameters": params}] * 2}),
        ("/api/chat", OLLAMA_CHAT | {"tools": [openai_tool, openai_tool]}),
    ]
    for path, body in cases:
        status, _, err = call(keyed, "POST", path, body)
        assert status == 400, (path, status, err)
        assert "get_weather" in error_text(path, err) and "unique" in error_text(path, err), (path, err)
    # one of each is fine
    status, _, err = call(keyed, "POST", "/v1/chat/completions", MESSAGES | {"tools": [openai_tool]})
    assert status == 200, err
