"""Issue 10, the HTTP edge: each test is one kind of fault, tried on every route and field it can reach,
on a real server with stories260K (and all-MiniLM for embeddings).

Cross-site writes and non-JSON bodies (3), CORS on every response (4), malformed Host (5), what stays
open with --api-key (6), x-api-key (7), numbers outside native ranges (8), deep JSON (9), odd path
parameters (12), NaN/Infinity (13), null means default (14b), OpenAI's current parameters (15),
an omitted model and the paths without /v1 (18), the right ``param`` (19), --no-extensions (25).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from api_helpers import running

from jan.testing.gguf_models import write_tool_template_model

KEY = "sk-hardening"
APP = "http://app.example"
EVIL = "http://evil.example"
INT32_OVER = 2**31


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, stories_path, minilm_path):
    tmp = tmp_path_factory.mktemp("hard")
    tool_model = write_tool_template_model(tmp / "tool-model.gguf")  # stories260K with a tool-calling template
    with running(tmp / "data", stories_path, minilm_path, tool_model, n_ctx=1024, api_key=KEY,
                 cors_origins=[APP]) as srv:
        yield srv


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, stories_path):
    """No API key, one model: the default set-up a cross-site page would aim at."""
    with running(tmp_path_factory.mktemp("hard-open") / "data", stories_path, n_ctx=256) as srv:
        yield srv


def call(server, method: str, path: str, body=None, *, headers: dict | None = None, key: bool = True,
         raw: bytes | None = None, content_type: str | None = "application/json"):
    """``(status, headers, parsed body or text)``; the key is sent unless ``key=False``."""
    hdrs = dict(headers or {})
    if key and server.config.api_key:
        hdrs.setdefault("Authorization", f"Bearer {server.config.api_key}")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None and content_type is not None:
        hdrs.setdefault("Content-Type", content_type)
    req = urllib.request.Request(server.base_url + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            status, out_headers, text = resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, out_headers, text = exc.code, exc.headers, exc.read().decode()
    try:
        return status, out_headers, json.loads(text)
    except json.JSONDecodeError:
        return status, out_headers, text


CHAT = {"model": "stories260K", "messages": [{"role": "user", "content": "Once"}], "max_tokens": 2}
COMPLETION = {"model": "stories260K", "prompt": "Once", "max_tokens": 2}


def spec_operations(server) -> list[tuple[str, str, bool]]:
    """``(method, path, has_body)`` of every documented operation."""
    status, _, spec = call(server, "GET", "/openapi.json")
    assert status == 200
    return [(method.upper(), path, "requestBody" in op)
            for path, ops in spec["paths"].items() for method, op in ops.items()]


# -- 3: cross-site requests ---------------------------------------------------------------
@pytest.mark.parametrize("which", ["open_server", "keyed"])
def test_cross_site_writes_are_refused_with_or_without_a_key(request, which):
    server = request.getfixturevalue(which)
    # the forgery of the report: a text/plain POST from a foreign page
    for path in ("/v1/extensions/conversational/disable", "/v1/threads", "/v1/models/pull"):
        body = b'{"url": "https://evil.example/x.gguf"}'
        status, _, err = call(server, "POST", path, raw=body, content_type="text/plain", headers={"Origin": EVIL})
        assert status == 403 and err["error"]["code"] == "origin_not_allowed", (path, status, err)
        # JSON from a foreign origin is refused too, and so are DELETE and PATCH
        status, _, _ = call(server, "POST", path, {"url": "x"}, headers={"Origin": EVIL})
        assert status == 403
    for method in ("DELETE", "PATCH", "PUT"):
        assert call(server, method, "/v1/threads/whatever", {}, headers={"Origin": "null"})[0] == 403
    status, _, ext = call(server, "GET", "/v1/extensions/conversational")
    assert status == 200 and ext["state"] == "loaded"  # nothing was disabled
    # the server's own page (same origin) and allowed origins may write
    status, _, thread = call(server, "POST", "/v1/threads", {"title": "ok"}, headers={"Origin": server.base_url})
    assert status == 200, thread
    if which == "keyed":
        assert call(server, "POST", "/v1/threads", {"title": "ok"}, headers={"Origin": APP})[0] == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
def test_json_routes_take_only_json(open_server, content_type):
    # Ollama's dialect (/api/*) takes any Content-Type, as Ollama does (its docs' `curl -d` sends a form type)
    ops = [op for op in spec_operations(open_server) if op[2] and not op[1].startswith("/api/")]
    assert len(ops) >= 10
    for method, path, _ in ops:
        path = path.replace("{", "").replace("}", "")  # any value: the media type is checked first
        status, _, err = call(open_server, method, path, raw=b'{"title": "x"}', content_type=content_type)
        assert status == 415, (method, path, status, err)  # in the route's own dialect's error shape
    # a body-less POST stays fine, with or without a Content-Type
    assert call(open_server, "POST", "/v1/models/stories260K/start", content_type=None)[0] == 200


@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_a_body_less_post_is_an_empty_object(open_server, content_type):
    # `curl -X POST .../threads` (and OpenAI's own `-d ''` example) send no body: that is {}, the fields' defaults,
    # not a 415 for a Content-Type of a body never sent (nor "the body is empty"); the README's `interrupted` →
    # `resume` is such a POST (`.../runs/{id}/resume` takes only an optional `stream`)
    status, _, thread = call(open_server, "POST", "/v1/threads", raw=b"", content_type=content_type)
    assert status == 200 and thread["object"] == "thread", thread
    # a route whose body needs a field names it
    status, _, err = call(open_server, "POST", "/v1/chat/completions", raw=b"", content_type=content_type)
    assert status == 400 and err["error"]["param"] == "messages", err
    # a body that is there is still checked as before: JSON only, and it must parse
    assert call(open_server, "POST", "/v1/threads", raw=b" ", content_type="text/plain")[0] == 415
    assert call(open_server, "POST", "/v1/threads", raw=b" ")[2]["error"]["code"] == "invalid_json"


# -- 4: CORS on every response -----------------------------------------------------------
def test_cors_headers_on_errors_and_streams(keyed):
    origin = {"Origin": APP}
    for method, path, body in (("GET", "/v1/threads/nope", None), ("GET", "/v1/nope", None),
                               ("POST", "/v1/chat/completions", {"messages": []}),
                               ("POST", "/v1/chat/completions", CHAT | {"stream": True})):
        status, headers, _ = call(keyed, method, path, body, headers=origin)
        assert headers.get("Access-Control-Allow-Origin") == APP, (method, path, status)
        assert "Origin" in headers.get_all("Vary", [])
    status, headers, _ = call(keyed, "GET", "/v1/models", headers=origin, key=False)
    assert status == 401 and headers.get("Access-Control-Allow-Origin") == APP
    status, headers, _ = call(keyed, "POST", "/v1/chat/completions", CHAT | {"stream": True}, headers=origin)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    # a foreign origin gets no CORS header (and so cannot read anything)
    _, headers, _ = call(keyed, "GET", "/v1/threads/nope", headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in headers


# -- 5: Host ---------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1:80@evil.example", "127.0.0.1:1337, evil.example", "127.0.0.1:99999",
                                  "127.0.0.1:abc", "[::1", "[zz::1]:80", "127.0.0.1/x", "localhost:80:80", " "])
def test_malformed_host_is_400(open_server, host):
    status, _, err = call(open_server, "GET", "/health", headers={"Host": host})
    assert status == 400 and err["error"]["code"] == "invalid_host", (host, status, err)


def test_two_host_headers_are_400(open_server):
    from server_helpers import raw_request

    answer = raw_request(open_server.base_url, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n"
                                               b"Connection: close\r\n\r\n")
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")  # aiohttp refuses it before us


# -- 6 and 7: what the API key guards, and how it is sent ---------------------------------
def test_what_stays_open_with_an_api_key(keyed):
    from pathlib import Path

    from jan.server.security import OPEN_PATHS, OPEN_PREFIXES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for path in (*OPEN_PATHS, *(p + "*" for p in OPEN_PREFIXES), "/docs", "/openapi.json"):
        assert f"`{path}`" in readme, path  # the README says what the code does
    for path in ("/", "/favicon.ico", "/static/app.js", "/health"):
        assert call(keyed, "GET", path, key=False)[0] == 200, path
    status, _, health = call(keyed, "GET", "/health", key=False)
    assert health["status"] == "ok" and "models" not in health  # which models run here is not public
    status, _, health = call(keyed, "GET", "/health")
    assert sorted(health["models"]) == ["all-MiniLM-L6-v2-f32", "stories260K", "tool-model"]
    for path in ("/docs", "/openapi.json", "/metrics", "/v1/models", "/models", "/v1/extensions"):
        assert call(keyed, "GET", path, key=False)[0] == 401, path
        assert call(keyed, "GET", path)[0] == 200, path


def test_x_api_key_header(keyed):
    assert call(keyed, "GET", "/v1/models", key=False, headers={"x-api-key": KEY})[0] == 200
    assert call(keyed, "POST", "/v1/chat/completions", CHAT, key=False, headers={"X-Api-Key": KEY})[0] == 200
    status, _, err = call(keyed, "GET", "/v1/models", key=False, headers={"x-api-key": KEY + "x"})
    assert status == 401 and err["error"]["message"] == "Incorrect API key provided"
    # no key at all: the message says that one is wanted and how it is sent
    status, _, err = call(keyed, "GET", "/v1/models", key=False)
    message = err["error"]["message"]
    assert status == 401 and "--api-key" in message and "Authorization: Bearer" in message and "x-api-key" in message
    # the preflight lets a browser send it
    status, headers, _ = call(keyed, "OPTIONS", "/v1/models", key=False, headers={
        "Origin": APP, "Access-Control-Request-Method": "GET"})
    assert status == 204 and "x-api-key" in headers["Access-Control-Allow-Headers"].lower()


@pytest.mark.parametrize("path, message", [("/v1/models", lambda e: e["error"]["message"]),
                                           ("/api/tags", lambda e: e["error"]),
                                           ("/slots", lambda e: e["error"]["message"])])
@pytest.mark.parametrize("header", ["x-api-key", "Authorization"])
def test_a_key_that_is_not_utf8_is_a_wrong_key(keyed, path, message, header):
    """A key header holding bytes that are not UTF-8 (aiohttp keeps them as surrogates) was a 400 whose message
    was Python's "'utf-8' codec can't encode character '\\udcff'": it is a key that does not match, the 401."""
    value = ("Bearer " if header == "Authorization" else "") + KEY + "\xff"  # (http.client sends it as Latin-1)
    status, _, err = call(keyed, "GET", path, key=False, headers={header: value})
    assert status == 401 and message(err) == "Incorrect API key provided", (status, err)


# -- 8: numbers outside native ranges --------------------------------------------------
NUMBER_CASES = [
    ("/v1/chat/completions", CHAT | {"max_tokens": INT32_OVER}, "max_tokens"),
    ("/v1/chat/completions", CHAT | {"max_completion_tokens": INT32_OVER}, "max_completion_tokens"),
    ("/v1/chat/completions", CHAT | {"top_k": INT32_OVER}, "top_k"),
    ("/v1/chat/completions", CHAT | {"repeat_last_n": INT32_OVER}, "repeat_last_n"),
    ("/v1/chat/completions", CHAT | {"seed": 2**64}, "seed"),
    ("/v1/chat/completions", CHAT | {"n": 2**40}, "n"),
    ("/v1/chat/completions", CHAT | {"top_logprobs": INT32_OVER, "logprobs": True}, "top_logprobs"),
    ("/v1/chat/completions", CHAT | {"logit_bias": {str(INT32_OVER): 1}}, "logit_bias"),
    ("/v1/chat/completions", CHAT | {"logit_bias": {"-1": 1}}, "logit_bias"),
    ("/v1/completions", COMPLETION | {"max_tokens": INT32_OVER}, "max_tokens"),
    ("/v1/completions", COMPLETION | {"prompt": [1, INT32_OVER]}, "prompt"),
    ("/v1/completions", COMPLETION | {"prompt": [[1, -1]]}, "prompt"),
    ("/v1/completions", COMPLETION | {"logprobs": INT32_OVER}, "logprobs"),
    ("/v1/completions", COMPLETION | {"best_of": INT32_OVER}, "best_of"),
    ("/v1/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": [[1, INT32_OVER]]}, "input"),
    ("/v1/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": "x", "dimensions": INT32_OVER}, "dimensions"),
    ("/v1/detokenize", {"model": "stories260K", "tokens": [INT32_OVER]}, "tokens"),
    ("/v1/threads/{thread}/runs", {"max_tokens": INT32_OVER}, "max_tokens"),
    ("/v1/threads/{thread}/runs", {"top_k": INT32_OVER}, "top_k"),
    ("/v1/threads/{thread}/runs", {"seed": -(2**64)}, "seed"),
]


@pytest.mark.parametrize("path,body,field", NUMBER_CASES, ids=[f"{c[0]}-{c[2]}" for c in NUMBER_CASES])
def test_numbers_outside_native_ranges_are_400_naming_the_field(keyed, path, body, field):
    if "{thread}" in path:
        path = path.replace("{thread}", call(keyed, "POST", "/v1/threads", {})[2]["id"])
    status, _, err = call(keyed, "POST", path, body)
    assert status == 400, (status, err)
    assert err["error"]["param"].startswith(field), err


EXACT_PARAM_CASES = [
    # a union field (a string or a list, a literal or an object): the alternative that got furthest says what
    # is wrong, named by its path in the body, never by pydantic's member names ("stop.str", "content.str")
    ("/v1/chat/completions", CHAT | {"stop": ["a", 5]}, "stop[1]"),
    ("/v1/chat/completions", CHAT | {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text"),
    ("/v1/chat/completions", CHAT | {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text"),
    ("/v1/chat/completions", CHAT | {"tool_choice": {"type": "function", "function": {}}}, "tool_choice.function.name"),
    # the tag chose OpenAI's allowed_tools object: what it lacks is named, not the tag it has
    ("/v1/chat/completions", CHAT | {"tool_choice": {"type": "allowed_tools"}}, "tool_choice.allowed_tools"),
    ("/v1/chat/completions", CHAT | {"tool_choice": {"type": "any"}}, "tool_choice.type"),
    ("/v1/chat/completions", CHAT | {"tool_choice": 5}, "tool_choice"),
    ("/v1/completions", COMPLETION | {"prompt": {"a": 1}}, "prompt"),
    # a token list with one bad id: that id, not the list of strings the prompt could also have been
    ("/v1/completions", COMPLETION | {"prompt": [1, -1]}, "prompt[1]"),
    ("/v1/completions", COMPLETION | {"prompt": [1, 2, 2**40]}, "prompt[2]"),
    ("/v1/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": [5, -1]}, "input[1]"),
    # errors the engine and the services find name their field too
    ("/v1/chat/completions", CHAT | {"logit_bias": {"99999999": 1}}, "logit_bias"),
    ("/v1/chat/completions", CHAT | {"model": "all-MiniLM-L6-v2-f32"}, "model"),
    ("/v1/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": "x", "dimensions": 385}, "dimensions"),
]


@pytest.mark.parametrize("path,body,param", EXACT_PARAM_CASES, ids=[c[2] for c in EXACT_PARAM_CASES])
def test_errors_name_the_exact_field(keyed, path, body, param):
    status, _, err = call(keyed, "POST", path, body)
    assert status == 400 and err["error"]["param"] == param, err
    assert err["error"]["message"].startswith(param) or param in err["error"]["message"], err


def test_numbers_are_bounded_in_the_openapi_spec(keyed):
    _, _, spec = call(keyed, "GET", "/openapi.json")
    schemas = spec["components"]["schemas"]

    def bound(schema):
        options = schema.get("anyOf", [schema])
        return [o.get("maximum") for o in options if o.get("type") == "integer"]

    chat = schemas["ChatCompletionRequest"]["properties"]
    for name in ("max_tokens", "max_completion_tokens", "top_k", "repeat_last_n", "n", "top_logprobs"):
        assert bound(chat[name]) and all(b is not None and b <= 2**31 - 1 for b in bound(chat[name])), name


@pytest.mark.parametrize("value", [False, True, "3", 3.5])
def test_integers_are_strict(keyed, value):
    status, _, err = call(keyed, "POST", "/v1/chat/completions", CHAT | {"max_tokens": value})
    assert status == 400 and err["error"]["param"] == "max_tokens"


def test_token_ids_outside_the_vocabulary_are_400(keyed):
    for path, body in (("/v1/completions", COMPLETION | {"prompt": [1, 2**30]}),
                       ("/v1/detokenize", {"model": "stories260K", "tokens": [2**30]}),
                       ("/v1/chat/completions", CHAT | {"logit_bias": {str(2**29): 5}}),
                       ("/v1/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": [2**30]})):
        status, _, err = call(keyed, "POST", path, body)
        assert 400 <= status < 500, (path, status, err)


# -- 9: deep JSON -----------------------------------------------------------------------
def test_deeply_nested_json_is_400_on_every_json_route(keyed):
    deep = ("[" * 10_000 + "]" * 10_000).encode()
    deep_in_field = ('{"messages": ' + "[" * 10_000 + "]" * 10_000 + "}").encode()
    for method, path, has_body in spec_operations(keyed):
        if not has_body:
            continue
        path = path.replace("{", "").replace("}", "")
        for raw in (deep, deep_in_field):
            status, _, err = call(keyed, method, path, raw=raw)
            message = err["error"] if isinstance(err["error"], str) else err["error"]["message"]  # Ollama's or OpenAI's
            assert status == 400 and "deeper" in message, (method, path, status, err)
    status, _, _ = call(keyed, "POST", "/v1/chat/completions", raw=b'{"x": NaN}')
    assert status == 400


# Bodies that are no JSON object (bytes no parser takes, JSON of another kind, JSON not in UTF-8), sent to every
# operation that takes a body: each answered 4xx in its dialect's error shape, never a 5xx nor taken (a UTF-16 "{}"
# made an assistant). The byte-level part of a fuzz of every route's fields, made while hunting malformed input.
MALFORMED = {
    "not UTF-8": b'{"model": "\xff\xfe"}', "NaN": b'{"temperature": NaN}', "Infinity": b'{"max_tokens": Infinity}',
    "-Infinity": b'{"top_p": -Infinity}', "cut short": b'{"model": ', "an array": b"[1, 2]", "a string": b'"x"',
    "a number": b"1", "null": b"null", "1e400": b'{"max_tokens": 1e400}', "5000 digits": b'{"n": ' + b"9" * 5000 + b"}",
    "UTF-16": "{}".encode("utf-16"), "UTF-16-LE": "{}".encode("utf-16-le"), "UTF-32": "{}".encode("utf-32-le"),
}


def test_malformed_bodies_are_4xx_in_the_dialects_shape_on_every_route(keyed):
    operations = [(m, p) for m, p, has_body in spec_operations(keyed) if has_body]
    assert len(operations) > 60
    for method, path in operations:
        concrete = "/".join("x" if seg.startswith("{") else seg for seg in path.split("/"))
        for name, raw in MALFORMED.items():
            status, _, err = call(keyed, method, concrete, raw=raw)
            assert 400 <= status < 500, (method, path, name, status, err)
            if path.startswith("/api/"):
                assert isinstance(err, dict) and isinstance(err.get("error"), str), (method, path, name, err)
            elif path.startswith("/v1/messages"):
                assert err["type"] == "error" and isinstance(err["error"]["message"], str), (method, path, name, err)
            else:
                assert isinstance(err["error"]["message"], str), (method, path, name, err)


# -- 12: odd path parameters and file names ----------------------------------------------
ODD = ["a" * 256, "a" * 5000, "%00", "..%2F..%2Fetc%2Fpasswd", "%E2%80%AE", "%FF", "x%2F", "%20"]


def test_odd_path_parameters_are_4xx_never_5xx(keyed):
    for odd in ODD:
        status, _, _ = call(keyed, "GET", "/static/" + odd)
        assert status in (400, 404), (odd, status)
    for method, path, _ in spec_operations(keyed):
        if "{" not in path or method == "POST" and path.endswith("/runs"):
            continue
        for odd in ODD:
            concrete = "/".join(odd if seg.startswith("{") else seg for seg in path.split("/"))
            status, _, body = call(keyed, method, concrete, {} if method in ("POST", "PATCH") else None)
            assert 400 <= status < 500, (method, concrete[:80], status, body)


# -- 13: NaN and Infinity -------------------------------------------------------------------
def test_settings_refuse_nan_and_infinity(open_server):
    status, _, before = call(open_server, "GET", "/v1/extensions/llamacpp/settings")
    assert status == 200
    # keep_alive is a float >= 0: Infinity passes the schema's own check, JSON has no word for it
    for raw in (b'{"keep_alive": Infinity}', b'{"keep_alive": NaN}', b'{"keep_alive": -Infinity}'):
        status, _, err = call(open_server, "PATCH", "/v1/extensions/llamacpp/settings", raw=raw)
        assert status == 400, (raw, err)
    assert call(open_server, "GET", "/v1/extensions/llamacpp/settings")[2]["values"] == before["values"]
    settings = open_server.config.data_folder / "settings" / "llamacpp" / "settings.json"
    if settings.exists():
        json.loads(settings.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in settings.json"))


def test_python_settings_api_refuses_nan(tmp_path):
    from jan.core import ExtensionSettings, SettingsValidationError

    settings = ExtensionSettings("demo", None, data_folder=tmp_path)
    for bad in (float("nan"), float("inf"), {"nested": [float("-inf")]}):
        with pytest.raises(SettingsValidationError) as err:
            settings.update({"value": bad})
        assert err.value.field == "value"
    settings.update({"value": 1.5})
    assert json.loads((tmp_path / "settings" / "demo" / "settings.json").read_text()) == {"value": 1.5}


# -- 14b: null means the default ----------------------------------------------------------------
def test_explicit_null_means_default(keyed):
    nulls = {"n": None, "stream": None, "stream_options": None, "temperature": None, "stop": None, "seed": None,
             "logprobs": None, "top_logprobs": None, "tools": None, "tool_choice": None, "user": None,
             "response_format": None, "max_completion_tokens": None, "presence_penalty": None}
    status, _, out = call(keyed, "POST", "/v1/chat/completions", CHAT | nulls)
    assert status == 200 and len(out["choices"]) == 1, out
    status, _, out = call(keyed, "POST", "/v1/completions", COMPLETION | {"n": None, "stream": None, "echo": None,
                                                                           "max_tokens": None, "logprobs": None})
    assert status == 200 and len(out["choices"]) == 1, out
    status, _, out = call(keyed, "POST", "/v1/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": "hi",
                                                             "encoding_format": None, "dimensions": None})
    assert status == 200 and isinstance(out["data"][0]["embedding"], list)
    status, _, out = call(keyed, "POST", "/v1/tokenize", {"model": "stories260K", "content": "hi",
                                                          "add_special": None, "with_pieces": None})
    assert status == 200 and out["tokens"]


@pytest.mark.parametrize("path, body", [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)])
@pytest.mark.parametrize("stream", [False, None, "absent"])
def test_stream_options_without_stream_is_openais_400(keyed, path, body, stream):
    # OpenAI refuses it ("The 'stream_options' parameter is only allowed when 'stream' is enabled."): a
    # client asking for usage on a whole reply must learn it here, not first against OpenAI
    sent = body | {"stream_options": {"include_usage": True}} | ({} if stream == "absent" else {"stream": stream})
    status, _, out = call(keyed, "POST", path, sent)
    assert status == 400, out
    assert out["error"]["param"] == "stream_options" and out["error"]["type"] == "invalid_request_error"
    assert "stream" in out["error"]["message"]
    status, _, out = call(keyed, "POST", path, body | {"stream_options": None})  # null: the default, as above
    assert status == 200, out


RESPONSE = {"model": "stories260K", "input": "hi", "max_output_tokens": 2}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize("path, body, param", [
    # the Responses API's own: OpenAI answers its stream_options without stream with chat completions' 400
    ("/v1/responses", RESPONSE | {"stream_options": {"include_obfuscation": False}}, "stream_options"),
    ("/v1/responses", RESPONSE | {"stream": False, "stream_options": {}}, "stream_options"),
    # chat completions: "'tool_choice' (or 'parallel_tool_calls') is only allowed when 'tools' are specified"
    ("/v1/chat/completions", CHAT | {"tool_choice": "auto"}, "tool_choice"),
    ("/v1/chat/completions", CHAT | {"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ("/v1/chat/completions", CHAT | {"parallel_tool_calls": False}, "parallel_tool_calls"),
    ("/v1/chat/completions", CHAT | {"tools": [], "parallel_tool_calls": True}, "parallel_tool_calls"),
    # their deprecated forms: "'function_call' is only allowed when 'functions' are specified"
    ("/v1/chat/completions", CHAT | {"function_call": "auto"}, "function_call"),
    ("/v1/chat/completions", CHAT | {"functions": [], "function_call": {"name": "f"}}, "function_call"),
])
def test_an_option_without_the_one_it_goes_with_is_openais_400(keyed, path, body, param):
    status, _, out = call(keyed, "POST", path, body)
    assert status == 400, out
    assert out["error"]["param"] == param and out["error"]["type"] == "invalid_request_error", out


@pytest.mark.parametrize("path, body", [
    ("/v1/responses", RESPONSE | {"stream": True, "stream_options": {"include_obfuscation": False}}),
    # what OpenAI takes: the Responses API's parallel_tool_calls and tool_choice without tools (Codex sends them),
    # its top_logprobs without the logprobs include (none returned), chat's tool_choice 'none' and nulls
    ("/v1/responses", RESPONSE | {"parallel_tool_calls": False, "tool_choice": "auto", "top_logprobs": 2}),
    ("/v1/chat/completions", CHAT | {"tool_choice": "none", "parallel_tool_calls": None}),
    ("/v1/chat/completions", CHAT | {"model": "tool-model", "tools": [TOOL], "tool_choice": "auto",
                                     "parallel_tool_calls": False}),
])
def test_options_taken_as_openai_takes_them(keyed, path, body):
    status, _, out = call(keyed, "POST", path, body)
    assert status == 200, out


# -- 15: OpenAI's current parameters --------------------------------------------------------------
def test_harmless_openai_parameters_are_accepted(keyed):
    extra = {"prompt_cache_key": "k", "prompt_cache_retention": "24h", "safety_identifier": "u1", "verbosity": "low",
             "audio": None, "service_tier": "auto", "store": False, "metadata": {"a": "b"}, "user": "u",
             "modalities": ["text"], "prediction": {"type": "content", "content": "Once upon"},
             "web_search_options": None, "reasoning_effort": "low"}  # (parallel_tool_calls needs tools: below)
    status, _, out = call(keyed, "POST", "/v1/chat/completions", CHAT | extra)
    assert status == 200, out


@pytest.mark.parametrize("field,value", [("audio", {"voice": "alloy", "format": "wav"}),
                                         ("web_search_options", {}), ("modalities", ["text", "audio"])])
def test_unimplemented_openai_parameters_say_not_supported(keyed, field, value):
    status, _, err = call(keyed, "POST", "/v1/chat/completions", CHAT | {field: value})
    assert status == 400 and err["error"]["param"] == field, err
    assert "not supported" in err["error"]["message"] and err["error"]["code"] == "unsupported_parameter"


def test_a_suffix_for_a_model_without_fim_tokens_says_why(keyed):
    # (a suffix fills in the middle on a model with FIM tokens: tests/test_server_ollama.py)
    status, _, err = call(keyed, "POST", "/v1/completions", COMPLETION | {"suffix": "end"})
    assert status == 400 and err["error"]["param"] == "suffix", err
    assert "fill-in-the-middle" in err["error"]["message"] and err["error"]["code"] == "not_supported"


def test_deprecated_functions_map_onto_tools(keyed):
    fn = {"name": "get_weather", "description": "Weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    body = CHAT | {"model": "tool-model", "functions": [fn], "function_call": {"name": "get_weather"},
                   "max_tokens": 120, "temperature": 0}
    status, _, out = call(keyed, "POST", "/v1/chat/completions", body)
    assert status == 200, out
    # answered in the deprecated shape the request used (tests/test_openai_sdk_roundtrip.py has the rest)
    choice = out["choices"][0]
    assert choice["message"]["function_call"]["name"] == "get_weather", out
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] in ("function_call", "length"), out
    # a history in the deprecated shape is accepted too
    history = [{"role": "user", "content": "Weather?"},
               {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
               {"role": "function", "name": "get_weather", "content": "sunny"}]
    status, _, out = call(keyed, "POST", "/v1/chat/completions", CHAT | {"model": "tool-model", "messages": history,
                                                                          "functions": [fn]})
    assert status == 200, out
    status, _, err = call(keyed, "POST", "/v1/chat/completions", body | {"tools": [{"type": "function", "function": fn}]})
    assert status == 400


# -- 18: model omitted, paths without /v1 ------------------------------------------------------
def test_model_may_be_omitted_with_one_loaded_model(open_server):
    no_model = {k: v for k, v in CHAT.items() if k != "model"}
    for path, body in (("/v1/chat/completions", no_model), ("/chat/completions", no_model | {"model": None}),
                       ("/v1/completions", {"prompt": "Once", "max_tokens": 2}),
                       ("/completions", {"prompt": "Once", "max_tokens": 2})):
        status, _, out = call(open_server, "POST", path, body)
        assert status == 200 and out["model"] == "stories260K", (path, out)
    status, _, out = call(open_server, "POST", "/v1/tokenize", {"content": "Once"})
    assert status == 200 and out["tokens"]
    # null flags are their defaults (add_special off, parse_special on), not a value the engine refuses
    status, _, nulls = call(open_server, "POST", "/v1/tokenize", {"content": "Once", "add_special": None,
                                                                 "parse_special": None})
    assert status == 200 and nulls["tokens"] == out["tokens"], nulls
    status, _, out = call(open_server, "GET", "/models")
    assert status == 200 and [m["id"] for m in out["data"]] == ["stories260K"]


def test_model_is_required_when_two_are_loaded(keyed):
    status, _, err = call(keyed, "POST", "/v1/chat/completions", {"messages": CHAT["messages"], "max_tokens": 2})
    assert status == 400 and err["error"]["param"] == "model" and "3 are loaded" in err["error"]["message"]
    # how to set the default it speaks of (it said "a default model is configured", naming no flag)
    assert "`jan serve --default-model ID`" in err["error"]["message"], err
    status, _, out = call(keyed, "POST", "/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": "hi"})
    assert status == 200 and out["data"][0]["embedding"]


def test_a_default_model_decides(tmp_path, stories_path, minilm_path):
    with running(tmp_path / "data", stories_path, minilm_path, n_ctx=256, n_parallel=1,
                 default_model="stories260K") as srv:
        status, _, out = call(srv, "POST", "/chat/completions", {"messages": CHAT["messages"], "max_tokens": 2})
        assert status == 200 and out["model"] == "stories260K"


# -- 19: the right param --------------------------------------------------------------------------
def test_context_overflow_names_the_prompt_field(keyed):
    long = "Once upon a time " * 400
    cases = (("/v1/chat/completions", CHAT | {"messages": [{"role": "user", "content": long}]}, "messages"),
             ("/v1/completions", COMPLETION | {"prompt": long}, "prompt"),
             ("/v1/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": long * 4}, "input"))
    for path, body, param in cases:
        status, _, err = call(keyed, "POST", path, body)
        assert status == 400 and err["error"]["param"] == param, (path, err)


# -- 25: --no-extensions keeps the built-ins --------------------------------------------------
def test_no_extensions_still_loads_the_built_ins(tmp_path, stories_path):
    with running(tmp_path / "data", stories_path, n_ctx=256, n_parallel=1, enable_extensions=False) as srv:
        status, _, out = call(srv, "POST", "/v1/completions", COMPLETION)
        assert status == 200 and out["choices"]
        _, _, exts = call(srv, "GET", "/v1/extensions")
        names = {e["name"] for e in exts["data"]}
        assert {"llamacpp", "models", "conversational"} <= names


# -- 22: jan serve checks and binds its port before loading anything -------------------------------
def test_serve_binds_the_port_before_loading_models(tmp_path):
    import socket

    from test_cli_helpers import cli_env, jan

    env = cli_env(tmp_path / "jan")
    # a model spec that cannot load: had the load come first, its error would be the one reported
    result = jan("serve", "--port", "99999", "-m", "does-not-exist", env=env)
    assert result.returncode == 2 and "99999" in result.stderr and "does-not-exist" not in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = jan("serve", "--port", str(port), "-m", "does-not-exist", env=env)
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "does-not-exist" not in result.stderr
