"""A JSON schema jan cannot make a grammar of is refused naming the place in the schema the client wrote: the request
field it came in (in the dialect's own name for it) and the path inside the schema to the sub-schema or keyword at
fault (``tools[1].function.parameters.properties.items.items.required[2]``), in every entry point that takes a
schema, in the dialect's own error shape; the library's :class:`GrammarError` carries the same as data.

Before, the message named an internal grammar rule (``'required' at 'f-args-items-item'``), a name the client never
wrote, or no place at all (``$ref '#/$defs/B' does not resolve``, ``invalid repetition bounds 3..1``); a ``$ref``
that leads back to itself named a rule of the grammar (``through rule 'A'``); and the XML-style tool formats
(Qwen3-Coder, GLM) let an optional parameter's unusable schema through where every other format refused it.

The compiler knows the path of the node it converts and raises with it (:meth:`GrammarError.located`); each entry
point names its field once (:meth:`GrammarError.said_of`), and a dialect renaming OpenAI chat's field as its own
keeps the path.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import pytest

from jan.templates import GrammarError, json_schema_to_grammar, tool_call_grammar
from jan.templates.formats.grammars import call_grammar

WAIT_S = 300.0

OK_PARAMS = {"type": "object", "properties": {"q": {"type": "string"}}}

#: name -> (a schema jan cannot make a grammar of, the path inside it to the fault, words the message says)
BAD_SCHEMAS: dict[str, tuple[dict[str, Any], str, str]] = {
    "type typo": ({"type": "object", "properties": {"x": {"type": "strnig"}}}, ".properties.x.type",
                  "did you mean 'string'"),
    "required item": ({"type": "object", "properties": {"items": {"type": "array", "items": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b", 3]}}}},
        ".properties.items.items.required[2]", "must be a property name"),
    "$ref to nowhere": ({"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}},
                        ".properties.x.$ref", "does not resolve"),
    "recursive $ref": ({"type": "object", "properties": {"x": {"$ref": "#/$defs/A"}},
                        "$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "string"}]}}},
                       ".$defs.A.anyOf[0].$ref", "leads back to itself"),
    "huge enum": ({"type": "object", "properties": {"x": {"enum": list(range(6000))}}}, ".properties.x.enum",
                  "the limit is 5,000"),
    "bad pattern": ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(ab"}}},
                    ".properties.x.pattern", "not a valid regular expression"),
    "minItems over maxItems": ({"type": "object", "properties": {"xs": {"type": "array", "minItems": 3,
                                                                       "maxItems": 1}}},
                               ".properties.xs.maxItems", "less than minItems"),
    "minLength over maxLength": ({"type": "object", "properties": {"s": {"type": "string", "minLength": 4,
                                                                        "maxLength": 2}}},
                                 ".properties.s.maxLength", "less than minLength"),
    "minimum over maximum": ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 5,
                                                                    "maximum": 1}}},
                             ".properties.n.maximum", "empty range"),
    "false property": ({"type": "object", "properties": {"odd key": False}}, '.properties["odd key"]',
                       "matches nothing"),
    "allOf entry": ({"type": "object", "allOf": [{"properties": {"a": {"type": "string"}}}, {"required": 7}]},
                    ".allOf[1].required", "'required' must be"),
    # a value of it must hold another of its kind, for ever: a model held to it never finished (it wrote until
    # max_tokens, a call cut off); said of the sub-schema with no finite value, not the optional property using it
    "endless required $ref": ({"type": "object", "properties": {"x": {"$ref": "#/$defs/Node"}},
                               "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}},
                                                  "required": ["next"]}}},
                              ".$defs.Node", "no finite value"),
    "endless non-empty array": ({"type": "object", "properties": {"t": {"$ref": "#/$defs/Tree"}}, "required": ["t"],
                                 "$defs": {"Tree": {"type": "array", "items": {"$ref": "#/$defs/Tree"},
                                                    "minItems": 1}}},
                                ".$defs.Tree", "no finite value"),
}
IDS = list(BAD_SCHEMAS)


# -- the library ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", IDS)
def test_the_library_error_carries_the_place_as_data(name):
    schema, path, words = BAD_SCHEMAS[name]
    with pytest.raises(GrammarError) as caught:
        json_schema_to_grammar(schema)
    err = caught.value
    pointer = err.path
    assert err.field is None and pointer.startswith("#/") and str(err).startswith(pointer + ": "), str(err)
    assert words in err.problem, str(err)
    # the same place, said of a field
    with pytest.raises(GrammarError) as caught:
        json_schema_to_grammar(schema, param="response_format.json_schema.schema")
    err = caught.value
    assert err.param == err.field == "response_format.json_schema.schema"
    assert err.path == "response_format.json_schema.schema" + path, err.path
    assert str(err) == f"{err.path}: {err.problem}"
    assert err.code in ("invalid_schema", "schema_too_complex")


@pytest.mark.parametrize("fmt", ["hermes", "llama3", "mistral-json", "qwen3-coder", "glm", "harmony", "kimi"])
@pytest.mark.parametrize("name", IDS)
def test_every_tool_call_format_says_the_tools_field_and_the_path(fmt, name):
    """Put at tools[1]: the message names that tool's parameters, and the place in them (the XML-style formats,
    which write only the required parameters, refuse an optional one's fault too)."""
    schema, path, _ = BAD_SCHEMAS[name]
    tools = [{"type": "function", "function": {"name": "ok", "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "f", "parameters": schema}}]
    for choice in ("required", {"type": "function", "function": {"name": "f"}}):
        with pytest.raises(GrammarError) as caught:
            call_grammar(fmt, tools, choice)
        assert caught.value.param == "tools[1].function.parameters"
        assert str(caught.value).startswith("tools[1].function.parameters" + path + ": "), str(caught.value)


def test_tool_call_grammar_says_the_tools_field_and_the_path():
    schema, path, _ = BAD_SCHEMAS["type typo"]
    tools = [{"type": "function", "function": {"name": "ok"}},
             {"type": "function", "function": {"name": "f", "parameters": schema}}]
    with pytest.raises(GrammarError, match=r"^tools\[1\]\.function\.parameters\.properties\.x\.type: unknown type"):
        tool_call_grammar(tools)


def test_an_xml_format_resolves_a_propertys_ref_against_the_whole_parameters():
    """Qwen3-Coder's and GLM's grammars convert each required parameter alone: a ``$ref`` in it pointing at the
    parameters' ``$defs`` (what pydantic writes for a nested model) did not resolve."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"where": {"$ref": "#/$defs/Place"}}, "required": ["where"],
        "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}}}}}]
    for fmt in ("qwen3-coder", "glm", "seed-oss"):
        assert "root ::=" in call_grammar(fmt, tools, "required")


@pytest.mark.parametrize("template_name", ["Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen3-Coder.jinja"])
@pytest.mark.parametrize("name", ["required item", "recursive $ref", "type typo"])
def test_the_chat_service_says_the_typed_requests_fields(template_name, name):
    """The library's chat path (a typed ChatRequest, as :class:`jan.services.ChatService` takes it) checks a
    request's constraint as the server does: a GrammarError said of OpenAI chat's field, with the path."""
    from jan.services.local import check_grammar
    from jan.services.types import ChatMessage, ChatRequest, ResponseFormat, ToolSpec
    from jan.templates import ChatTemplate
    from jan.testing.gguf_models import templates_dir

    template = ChatTemplate((templates_dir() / template_name).read_text(encoding="utf-8"), "<s>", "</s>")
    schema, inner, _ = BAD_SCHEMAS[name]
    messages = (ChatMessage.of_text("user", "Hi"),)
    requests = {
        "response_format.json_schema.schema": ChatRequest(
            model=None, messages=messages, response_format=ResponseFormat("json_schema", schema=schema)),
        "tools[1].function.parameters": ChatRequest(
            model=None, messages=messages, tool_choice="required",
            tools=(ToolSpec("ok", parameters=OK_PARAMS), ToolSpec("f", parameters=schema))),
    }
    for field, request in requests.items():
        with pytest.raises(GrammarError) as caught:
            check_grammar(request, template)
        assert caught.value.param == field and caught.value.path == field + inner, str(caught.value)
        assert str(caught.value).startswith(field + inner + ": ")


@pytest.mark.parametrize("schema, said", [
    ([1, 2], "not an array"), (5, "not a number"), ("{\"type\": 1", "not valid JSON"),
])
def test_what_is_no_schema_at_all_is_said_of_the_field(schema, said):
    with pytest.raises(GrammarError) as caught:
        json_schema_to_grammar(schema, param="json_schema")
    assert str(caught.value).startswith("json_schema: ") and said in str(caught.value), str(caught.value)


def test_keywords_jan_does_not_enforce_still_make_a_grammar():
    """An unknown ``format`` (an annotation, as JSON Schema has it) and a valid regex the grammar cannot express
    (a lookahead) are not enforced, as the README says; every other keyword of the schema still is."""
    for schema in ({"type": "string", "format": "email"}, {"type": "string", "pattern": "^(?=a)a+$"}):
        assert "root ::=" in json_schema_to_grammar(schema)


# -- the server: every entry point, in its dialect --------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    from jan.server.config import ServerConfig
    from jan.testing.gguf_models import write_tool_template_model
    from jan.testing.server import ServerThread

    tmp = tmp_path_factory.mktemp("schema-paths")
    tool_model = write_tool_template_model(tmp / "tool-model.gguf")
    cfg = ServerConfig(data_folder=tmp / "data", models=[str(stories_path), str(tool_model)], n_ctx=512,
                       n_parallel=2, n_threads=1)
    with ServerThread(cfg) as srv:
        yield srv


USER = [{"role": "user", "content": "Hi"}]


def _openai_tools(schema: Any) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": "ok", "parameters": OK_PARAMS}},
            {"type": "function", "function": {"name": "f", "parameters": schema}}]


#: entry -> (path, body of a schema, the field the message names, dialect)
ENTRIES: dict[str, tuple[str, Any, str, str]] = {
    "chat response_format json_schema": (
        "/v1/chat/completions", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                           "response_format": {"type": "json_schema",
                                                               "json_schema": {"name": "x", "schema": s}}},
        "response_format.json_schema.schema", "openai"),
    "chat response_format json_schema strict": (
        "/v1/chat/completions", lambda s: {"model": "stories260K", "max_tokens": 2, "messages": USER,
                                           "response_format": {"type": "json_schema", "json_schema": {
                                               "name": "x", "strict": True, "schema": s}}},
        "response_format.json_schema.schema", "openai"),
    "chat response_format json_object with schema": (
        "/v1/chat/completions", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                           "response_format": {"type": "json_object", "schema": s}},
        "response_format.schema", "openai"),
    "chat tools auto": (
        "/v1/chat/completions", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                           "tools": _openai_tools(s)},
        "tools[1].function.parameters", "openai"),
    "chat tools strict required": (
        "/v1/chat/completions", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                           "tool_choice": "required", "tools": [
                                               *_openai_tools(s)[:1], {"type": "function", "function": {
                                                   "name": "f", "strict": True, "parameters": s}}]},
        "tools[1].function.parameters", "openai"),
    "chat tools named": (
        "/v1/chat/completions", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                           "tool_choice": {"type": "function", "function": {"name": "f"}},
                                           "tools": _openai_tools(s)},
        "tools[1].function.parameters", "openai"),
    "completions json_schema": (
        "/v1/completions", lambda s: {"model": "stories260K", "prompt": "Once", "max_tokens": 2, "json_schema": s},
        "json_schema", "openai"),
    "llama-server completion json_schema": (
        "/completion", lambda s: {"model": "stories260K", "prompt": "Once", "n_predict": 2, "json_schema": s},
        "json_schema", "llama"),
    "responses text.format": (
        "/v1/responses", lambda s: {"model": "tool-model", "max_output_tokens": 16, "input": "Hi", "store": False,
                                    "text": {"format": {"type": "json_schema", "name": "x", "schema": s}}},
        "text.format.schema", "openai"),
    "responses tools": (
        "/v1/responses", lambda s: {"model": "tool-model", "max_output_tokens": 16, "input": "Hi", "store": False,
                                    "tool_choice": "required",
                                    "tools": [{"type": "function", "name": "ok", "parameters": OK_PARAMS},
                                              {"type": "function", "name": "f", "parameters": s}]},
        "tools[1].parameters", "openai"),
    "anthropic tools any": (
        "/v1/messages", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                   "tool_choice": {"type": "any"},
                                   "tools": [{"name": "ok", "input_schema": OK_PARAMS},
                                             {"name": "f", "input_schema": s}]},
        "tools[1].input_schema", "anthropic"),
    "anthropic tools named": (
        "/v1/messages", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                   "tool_choice": {"type": "tool", "name": "f"},
                                   "tools": [{"name": "ok", "input_schema": OK_PARAMS},
                                             {"name": "f", "input_schema": s}]},
        "tools[1].input_schema", "anthropic"),
    "anthropic output format": (
        "/v1/messages", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                   "output_config": {"format": {"type": "json_schema", "schema": s}}},
        "output_config.format.schema", "anthropic"),
    "anthropic output_format (beta)": (
        "/v1/messages", lambda s: {"model": "tool-model", "max_tokens": 2, "messages": USER,
                                   "output_format": {"type": "json_schema", "schema": s}},
        "output_format.schema", "anthropic"),
    "ollama chat format": (
        "/api/chat", lambda s: {"model": "tool-model", "stream": False, "messages": USER,
                                "options": {"num_predict": 2}, "format": s},
        "format", "ollama"),
    "ollama chat tools": (
        "/api/chat", lambda s: {"model": "tool-model", "stream": False, "messages": USER,
                                "options": {"num_predict": 2}, "tools": _openai_tools(s)},
        "tools[1].function.parameters", "ollama"),
    "ollama generate format": (
        "/api/generate", lambda s: {"model": "stories260K", "stream": False, "prompt": "Once",
                                    "options": {"num_predict": 2}, "format": s},
        "format", "ollama"),
    "ollama generate raw format": (
        "/api/generate", lambda s: {"model": "stories260K", "stream": False, "prompt": "Once", "raw": True,
                                    "options": {"num_predict": 2}, "format": s},
        "format", "ollama"),
    "assistants create tools": (
        "/v1/assistants", lambda s: {"model": "tool-model", "tools": _openai_tools(s)},
        "tools[1].function.parameters", "openai"),
    "run tools": (
        "/v1/threads/runs", lambda s: {"model": "tool-model", "max_tokens": 2, "tools": _openai_tools(s),
                                       "thread": {"messages": USER}},
        "tools[1].function.parameters", "openai"),
    "run response_format": (
        "/v1/threads/runs", lambda s: {"model": "tool-model", "max_tokens": 2, "thread": {"messages": USER},
                                       "response_format": {"type": "json_schema",
                                                           "json_schema": {"name": "x", "schema": s}}},
        "response_format.json_schema.schema", "openai"),
    "assistants create response_format": (
        "/v1/assistants", lambda s: {"model": "tool-model", "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": s}}},
        "response_format.json_schema.schema", "openai"),
}


def _said(dialect: str, path: str) -> str:
    """``path`` as the dialect writes a field's path (Anthropic's API: ``tools.1.input_schema...required.2``)."""
    from jan.server.errors import in_path_style

    return in_path_style(path, "dotted" if dialect == "anthropic" else "brackets")


def _error_message(dialect: str, body: Any) -> str:
    """The message of an error body, checked to be in the dialect's own shape."""
    if dialect == "ollama":
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        return body["error"]
    if dialect == "anthropic":
        assert body.get("type") == "error" and body["error"]["type"] == "invalid_request_error", body
        return body["error"]["message"]
    if dialect == "llama":  # llama-server's shape: OpenAI's, with the status as code
        assert body["error"]["code"] == 400, body
        return body["error"]["message"]
    error = body["error"]
    assert error["type"] == "invalid_request_error" and error["code"] in ("invalid_schema", "schema_too_complex"), body
    return error["message"]


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("name", IDS)
def test_each_entry_point_names_the_place_in_the_clients_schema(server, entry, name):
    path, body_of, field, dialect = ENTRIES[entry]
    schema, inner, words = BAD_SCHEMAS[name]
    response = httpx.post(server.base_url + path, json=body_of(schema), timeout=WAIT_S)
    assert response.status_code == 400, (entry, response.text)
    message = _error_message(dialect, response.json())
    assert _said(dialect, f"{field}{inner}: ") in message and words in message, message
    if dialect == "openai":
        assert response.json()["error"]["param"] == field, response.text


@pytest.mark.parametrize("entry", ["chat tools auto", "responses text.format", "anthropic tools any",
                                   "ollama chat format", "llama-server completion json_schema"])
def test_a_streamed_request_is_refused_the_same(server, entry):
    path, body_of, field, dialect = ENTRIES[entry]
    schema, inner, _ = BAD_SCHEMAS["required item"]
    response = httpx.post(server.base_url + path, json={**body_of(schema), "stream": True}, timeout=WAIT_S)
    assert response.status_code == 400, response.text
    assert _said(dialect, f"{field}{inner}: ") in _error_message(dialect, response.json())


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("schema", [[1, 2], 7, "object"], ids=["a list", "a number", "a string"])
def test_what_is_no_schema_at_all_is_a_400_naming_its_field(server, entry, schema):
    """A list, a number or a string where a schema goes: the body's check (pydantic's) or the compiler refuses it,
    naming the field; never a 500."""
    path, body_of, field, dialect = ENTRIES[entry]
    response = httpx.post(server.base_url + path, json=body_of(schema), timeout=WAIT_S)
    assert response.status_code == 400, (entry, response.text)
    body = response.json()
    message = body["error"] if dialect == "ollama" else body["error"]["message"]
    assert _said(dialect, field) in message or (dialect == "ollama" and "format" in message), message


@pytest.mark.parametrize("entry", ["chat tools auto", "ollama chat tools", "anthropic tools any"])
def test_a_loaded_model_says_the_schema_before_a_prompt_too_long(server, entry):
    """A tool's 6,000-value enum is also a prompt past the 512-token context: the schema, which no model could use,
    is said first whether the model is loaded or not (it was the context's error once the model was loaded)."""
    ok = httpx.post(server.base_url + "/v1/chat/completions", timeout=WAIT_S,
                    json={"model": "tool-model", "max_tokens": 1, "messages": USER})
    assert ok.status_code == 200, ok.text  # (the model is loaded now)
    path, body_of, field, dialect = ENTRIES[entry]
    schema, inner, _ = BAD_SCHEMAS["huge enum"]
    response = httpx.post(server.base_url + path, json=body_of(schema), timeout=WAIT_S)
    assert response.status_code == 400, response.text
    assert _said(dialect, f"{field}{inner}: ") in _error_message(dialect, response.json()), response.text


def _until(get, done, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not done(value := get()):
        assert time.monotonic() < deadline, f"{what} not done after {WAIT_S} s: {value}"
        time.sleep(0.05)
    return value


def test_batch_lines_name_the_place_in_their_own_body(server):
    """A batch's line is its request's body: its error names the same field and path a live request's would."""
    import openai

    oai = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    schema, inner, _ = BAD_SCHEMAS["required item"]
    lines = {
        "chat-format": ("/v1/chat/completions", ENTRIES["chat response_format json_schema"]),
        "chat-tools": ("/v1/chat/completions", ENTRIES["chat tools named"]),
    }
    data = "\n".join(json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": entry[1](schema)})
                     for cid, (url, entry) in lines.items()).encode()
    file_id = oai.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch").id
    batch = oai.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = _until(lambda: oai.batches.retrieve(batch.id), lambda b: b.status in ("completed", "failed"), "batch")
    assert batch.status == "completed" and batch.error_file_id, batch
    errors = {json.loads(x)["custom_id"]: json.loads(x) for x in oai.files.content(batch.error_file_id).text.splitlines()
              if x.strip()}
    assert set(errors) == set(lines)
    for cid, (_, (_, _, field, _)) in lines.items():
        response = errors[cid]["response"]
        assert response["status_code"] == 400, response
        assert f"{field}{inner}: " in response["body"]["error"]["message"], response

    responses_data = json.dumps({"custom_id": "resp", "method": "POST", "url": "/v1/responses",
                                 "body": ENTRIES["responses tools"][1](schema)}).encode()
    file_id = oai.files.create(file=("input.jsonl", io.BytesIO(responses_data)), purpose="batch").id
    batch = oai.batches.create(input_file_id=file_id, endpoint="/v1/responses", completion_window="24h")
    batch = _until(lambda: oai.batches.retrieve(batch.id), lambda b: b.status in ("completed", "failed"), "batch")
    [line] = [json.loads(x) for x in oai.files.content(batch.error_file_id).text.splitlines() if x.strip()]
    assert f"tools[1].parameters{inner}: " in line["response"]["body"]["error"]["message"], line


def test_anthropic_batch_requests_name_the_place(server):
    import anthropic

    claude = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    schema, inner, _ = BAD_SCHEMAS["required item"]
    params = ENTRIES["anthropic tools any"][1](schema)
    batch = claude.messages.batches.create(requests=[{"custom_id": "bad", "params": params}])
    _until(lambda: claude.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended", "batch")
    [result] = list(claude.messages.batches.results(batch.id))
    assert result.result.type == "errored", result
    assert _said("anthropic", f"tools[1].input_schema{inner}: ") in result.result.error.error.message, result


# -- the same schemas on the paths that build no grammar -------------------------------------------------------
def _none(choice: Any) -> Any:
    return lambda body_of: lambda s: {**body_of(s), "tool_choice": choice}


def _background(body_of: Any) -> Any:
    return lambda s: {**body_of(s), "background": True, "store": True}


def _counted(body_of: Any) -> Any:
    """A generating body as a counting route takes it (no output's bounds, nothing stored)."""
    return lambda s: {k: v for k, v in body_of(s).items() if k not in ("max_tokens", "max_output_tokens", "store")}


#: entry -> (path, body of a schema, the field the message names, dialect): paths that generate with no grammar of
#: the tools (``tool_choice: "none"``) or generate nothing (counting and rendering a prompt). Before, each answered
#: 200 to a schema that the same body with ``tool_choice: "auto"`` (or sent to the generating route) had refused.
NO_GRAMMAR_ENTRIES: dict[str, tuple[str, Any, str, str]] = {
    "chat tools none": ("/v1/chat/completions", _none("none")(ENTRIES["chat tools auto"][1]),
                        "tools[1].function.parameters", "openai"),
    "chat input_tokens tools": ("/v1/chat/completions/input_tokens", _counted(ENTRIES["chat tools auto"][1]),
                                "tools[1].function.parameters", "openai"),
    "chat input_tokens response_format": ("/v1/chat/completions/input_tokens",
                                          _counted(ENTRIES["chat response_format json_schema"][1]),
                                          "response_format.json_schema.schema", "openai"),
    "apply-template tools none": ("/apply-template", _none("none")(ENTRIES["chat tools auto"][1]),
                                  "tools[1].function.parameters", "llama"),
    "apply-template response_format": ("/apply-template", ENTRIES["chat response_format json_schema"][1],
                                       "response_format.json_schema.schema", "llama"),
    "responses tools none": ("/v1/responses", _none("none")(ENTRIES["responses tools"][1]), "tools[1].parameters",
                             "openai"),
    "responses input_tokens tools": ("/v1/responses/input_tokens", _counted(ENTRIES["responses tools"][1]),
                                     "tools[1].parameters", "openai"),
    "responses input_tokens text.format": ("/v1/responses/input_tokens",
                                           _counted(ENTRIES["responses text.format"][1]),
                                           "text.format.schema", "openai"),
    # allowed_tools naming only the good tool: the model is shown that one, yet the body's tools are all checked
    "chat tools allowed_tools": ("/v1/chat/completions", _none({"type": "allowed_tools", "allowed_tools": {
        "mode": "auto", "tools": [{"type": "function", "function": {"name": "ok"}}]}})(ENTRIES["chat tools auto"][1]),
        "tools[1].function.parameters", "openai"),
    "responses tools allowed_tools": ("/v1/responses", _none({"type": "allowed_tools", "mode": "required", "tools": [
        {"type": "function", "name": "ok"}]})(ENTRIES["responses tools"][1]), "tools[1].parameters", "openai"),
    # a background response starts its generation later: refused when asked, not queued to fail
    "responses background tools": ("/v1/responses", _background(ENTRIES["responses tools"][1]), "tools[1].parameters",
                                   "openai"),
    "responses background text.format": ("/v1/responses", _background(ENTRIES["responses text.format"][1]),
                                         "text.format.schema", "openai"),
    "anthropic tools none": ("/v1/messages", _none({"type": "none"})(ENTRIES["anthropic tools any"][1]),
                             "tools[1].input_schema", "anthropic"),
    "anthropic count_tokens tools": ("/v1/messages/count_tokens", _counted(ENTRIES["anthropic tools any"][1]),
                                     "tools[1].input_schema", "anthropic"),
    "anthropic count_tokens output_config": ("/v1/messages/count_tokens",
                                             _counted(ENTRIES["anthropic output format"][1]),
                                             "output_config.format.schema", "anthropic"),
    "anthropic count_tokens output_format": ("/v1/messages/count_tokens",
                                             _counted(ENTRIES["anthropic output_format (beta)"][1]),
                                             "output_format.schema", "anthropic"),
}


@pytest.mark.parametrize("entry", list(NO_GRAMMAR_ENTRIES))
@pytest.mark.parametrize("name", ["type typo", "required item", "$ref to nowhere", "recursive $ref", "huge enum",
                                  "endless required $ref"])
def test_a_path_that_builds_no_grammar_refuses_the_same_schemas(server, entry, name):
    """The one check of a request's schemas (:func:`jan.services.local.check_schemas`) on every path, the model
    loaded (a loaded model's generation checks them as it builds its grammar; these build none)."""
    ok = httpx.post(server.base_url + "/v1/chat/completions", timeout=WAIT_S,
                    json={"model": "tool-model", "max_tokens": 1, "messages": USER})
    assert ok.status_code == 200, ok.text
    path, body_of, field, dialect = NO_GRAMMAR_ENTRIES[entry]
    schema, inner, words = BAD_SCHEMAS[name]
    response = httpx.post(server.base_url + path, json=body_of(schema), timeout=WAIT_S)
    assert response.status_code == 400, (entry, response.text)
    message = _error_message(dialect, response.json())
    assert _said(dialect, f"{field}{inner}: ") in message and words in message, message
    if dialect == "openai":
        assert response.json()["error"]["param"] == field, response.text


@pytest.mark.parametrize("entry", list(NO_GRAMMAR_ENTRIES))
def test_a_path_that_builds_no_grammar_takes_good_schemas(server, entry):
    path, body_of, _, _ = NO_GRAMMAR_ENTRIES[entry]
    response = httpx.post(server.base_url + path, json=body_of(OK_PARAMS), timeout=WAIT_S)
    assert response.status_code == 200, (entry, response.text)


def test_the_chat_service_checks_tools_that_make_no_grammar():
    """The library's check (what every path runs): a tool's schema with ``tool_choice: "none"``, without a chat
    template, and a model loaded or not."""
    from jan.services.local import check_schemas
    from jan.services.types import ChatMessage, ChatRequest, ToolSpec

    schema, inner, _ = BAD_SCHEMAS["required item"]
    request = ChatRequest(model=None, messages=(ChatMessage.of_text("user", "Hi"),), tool_choice="none",
                          tools=(ToolSpec("ok", parameters=OK_PARAMS), ToolSpec("f", parameters=schema)))
    for _ in range(2):  # (the second from the kept result: the same error, said anew)
        with pytest.raises(GrammarError) as caught:
            check_schemas(request)
        assert caught.value.path == "tools[1].function.parameters" + inner, str(caught.value)


# -- llama.cpp's bounds on the grammar, said of the place in the schema -------------------------------------------
#: name -> (a schema whose grammar passes a bound of llama.cpp's, the path to the part of it that holds most of it)
OVER_LLAMA_BOUNDS: dict[str, tuple[dict[str, Any], str]] = {
    "an anyOf of 10,001 consts": ({"type": "object", "properties": {"x": {"anyOf": [{"const": i}
                                                                                   for i in range(10_001)]}}},
                                  ".properties.x"),
    "most of them in one property": ({"type": "object", "properties": {
        "a": {"enum": list(range(3_000))}, "b": {"anyOf": [{"const": f"v{i}"} for i in range(8_000)]}}},
        ".properties.b"),
}


@pytest.mark.parametrize("name", list(OVER_LLAMA_BOUNDS))
def test_a_bound_of_llama_cpp_names_the_place_in_the_schema(name):
    """A grammar over llama.cpp's bounds (its number of alternatives) was said of the field alone
    (``response_format.json_schema.schema: the grammar's number of alternatives...``), and of a tool's schema only
    as ``tools``, after the load: now at the sub-schema that holds most of it, as every other schema error."""
    from jan.templates.formats.grammars import parameters_error

    schema, inner = OVER_LLAMA_BOUNDS[name]
    with pytest.raises(GrammarError) as caught:
        json_schema_to_grammar(schema, param="response_format.json_schema.schema")
    err = caught.value
    assert err.code == "grammar_too_complex" and "number of alternatives" in err.problem, str(err)
    assert err.path == "response_format.json_schema.schema" + inner, str(err)
    tool = parameters_error(schema)
    assert tool is not None and tool.said_of("tools[0].function.parameters").path == \
        "tools[0].function.parameters" + inner, tool


def test_a_bound_spread_over_the_schema_names_the_schema():
    """No one part holds most of it: the schema as a whole (the path is the field's)."""
    schema = {"type": "object", "properties": {k: {"anyOf": [{"const": f"{k}{i}"} for i in range(3_400)]}
                                               for k in "abc"}}
    with pytest.raises(GrammarError) as caught:
        json_schema_to_grammar(schema, param="format")
    assert caught.value.path in ("format", "format.properties"), str(caught.value)


@pytest.mark.parametrize("entry", ["chat response_format json_schema", "chat tools auto", "anthropic tools any",
                                   "ollama chat format", "llama-server completion json_schema",
                                   "responses text.format"])
def test_a_bound_of_llama_cpp_is_said_with_the_path_on_every_route(server, entry):
    path, body_of, field, dialect = ENTRIES[entry]
    schema, inner = OVER_LLAMA_BOUNDS["an anyOf of 10,001 consts"]
    response = httpx.post(server.base_url + path, json=body_of(schema), timeout=WAIT_S)
    assert response.status_code == 400, (entry, response.text)
    body = response.json()
    message = body["error"] if dialect == "ollama" else body["error"]["message"]
    assert _said(dialect, f"{field}{inner}: ") in message and "number of alternatives" in message, message


def test_the_tools_grammar_over_a_bound_is_refused_before_a_load(server):
    """Three tools of 3,500 consts each, each within llama.cpp's bounds, make a calls' grammar past them: refused
    before the model is loaded for it (it was loaded, then refused), and by the counting route of an unloaded model
    as by the generating one."""
    tools = [{"type": "function", "function": {"name": f"t{k}", "parameters": {"type": "object", "properties": {
        "x": {"anyOf": [{"const": f"{k}-{i}"} for i in range(3_500)]}}}}} for k in range(3)]
    for path, extra in (("/v1/chat/completions", {"max_tokens": 1, "tool_choice": "required"}),
                        ("/v1/chat/completions", {"max_tokens": 1}),
                        ("/v1/chat/completions/input_tokens", {"tool_choice": "required"})):
        stop = httpx.post(server.base_url + "/v1/models/tool-model/stop", json={}, timeout=WAIT_S)
        assert stop.status_code == 200, stop.text
        response = httpx.post(server.base_url + path, timeout=WAIT_S,
                              json={"model": "tool-model", "messages": USER, "tools": tools, **extra})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "tools" and "number of alternatives" in error["message"], error
        models = httpx.get(server.base_url + "/v1/models", timeout=WAIT_S).json()["data"]
        assert [m["state"] for m in models if m["id"] == "tool-model"] == ["unloaded"], (path, models)
