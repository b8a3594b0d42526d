"""A client's JSON schema whose keywords are of the wrong kind (``"required": 1``, ``"format": []``, a ``$ref`` that
is no string, ``"maximum": 1e999``), and JSON numbers no field can hold, in every dialect that takes a schema.

Found by fuzzing a live server: each was Python's TypeError, AttributeError or OverflowError deep in the JSON
schema → GBNF conversion (or in a tool-call format's grammar, which reads ``required`` itself), answered as a 500
on ``/v1/chat/completions``, ``/v1/messages``, ``/api/chat``... Now the conversion checks every keyword it reads
(:func:`jan.templates.grammar.check_schema_keywords`), so each is the request's 400 in its dialect's shape naming
the field and the keyword; and the body reader refuses a number past a double's range (which Python reads as
infinity) and an integer too long for Python to read, as it refuses NaN.
"""

from __future__ import annotations

import json

import httpx
import pytest

from jan.templates.formats.grammars import call_grammar
from jan.templates.grammar import GrammarError, json_schema_to_grammar

#: (keyword, a value of the wrong kind): every keyword the converter reads, with the kinds the fuzzer found.
BAD_KEYWORDS = [
    ("required", 1), ("required", [[]]), ("required", [{}]), ("required", "city"),
    ("properties", []), ("properties", "x"),
    ("format", []), ("format", {}), ("pattern", 5),
    ("$ref", 0), ("$ref", {}),
    ("type", 5), ("type", {"a": 1}), ("type", [1]),
    ("allOf", 5), ("prefixItems", 1.5), ("items", 5), ("additionalProperties", "no"),
    ("minItems", "x"), ("minItems", [1]), ("minItems", float("inf")), ("minItems", float("nan")), ("minItems", -1),
    ("maxLength", 1.5), ("minProperties", "2"),
    ("minimum", float("inf")), ("maximum", float("-inf")), ("minimum", float("nan")), ("maximum", "5"),
    ("exclusiveMinimum", float("inf")), ("exclusiveMaximum", "x"),
    ("const", float("nan")), ("enum", [1, float("inf")]),
]
#: Where in a schema the bad keyword is put: the root, a property, an allOf entry (merged before it is visited), a
#: $defs entry reached by $ref, an array's items, an anyOf branch.
PLACES = {
    "root": lambda kw: {"type": "object", "properties": {"a": {"type": "string"}}, **kw},
    "property": lambda kw: {"type": "object", "properties": {"a": {"type": "integer", **kw}}},
    "allOf": lambda kw: {"type": "object", "allOf": [{"properties": {"a": {"type": "string"}}, **kw}]},
    "ref": lambda kw: {"$ref": "#/$defs/A", "$defs": {"A": {"type": "object", **kw}}},
    "items": lambda kw: {"type": "array", "items": {"type": "number", **kw}},
    "anyOf": lambda kw: {"anyOf": [{"type": "string", **kw}, {"type": "null"}]},
}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("keyword, value", BAD_KEYWORDS, ids=[f"{k}={v!r}" for k, v in BAD_KEYWORDS])
def test_a_keyword_of_the_wrong_kind_is_a_grammar_error_naming_it(keyword, value, place):
    schema = PLACES[place]({keyword: value})
    with pytest.raises(GrammarError) as caught:
        json_schema_to_grammar(schema, param="response_format.json_schema.schema")
    err = caught.value
    assert err.param == "response_format.json_schema.schema"
    assert err.code in ("invalid_schema", "schema_too_complex"), err.code
    assert keyword in str(err), str(err)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["a"]},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 2.5},
    {"type": "integer", "minimum": 2, "exclusiveMinimum": True},  # draft 4's boolean exclusive bound
    {"type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "integer"}, "minItems": 1.0},
    {"type": "string", "format": "date", "minLength": 0, "maxLength": 20},
    {"type": ["string", "null"], "pattern": "^a+$"},
    {"enum": ["a", 1, None, {"k": [1.5]}]},
    {"allOf": [{"$ref": "#/$defs/A"}, {"required": ["b"], "properties": {"b": {"type": "boolean"}}}],
     "$defs": {"A": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}},
])
def test_well_formed_schemas_still_convert(schema):
    assert "root ::=" in json_schema_to_grammar(schema)


@pytest.mark.parametrize("fmt", ["hermes", "qwen3-coder", "glm"])
def test_draft_3s_required_flag_on_a_property_is_read_as_its_objects_required(fmt, llama):
    """Draft 3 marks a required property with its own ``"required": true`` (older generators still write it): it
    was ignored on a string and a TypeError (a 500) on an object; now the object requires that property."""
    schema = {"type": "object", "properties": {
        "city": {"type": "string", "required": True}, "days": {"type": "integer", "required": False},
        "where": {"type": "object", "required": True, "properties": {"lat": {"type": "number", "required": True}}}}}
    grammar = json_schema_to_grammar(schema)
    assert llama.accepts(grammar, '{"city": "x", "where": {"lat": 1}}')
    assert not llama.accepts(grammar, '{"days": 2, "where": {"lat": 1}}')  # (city required)
    assert not llama.accepts(grammar, '{"city": "x", "where": {}}')  # (lat required)
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    assert "root ::=" in call_grammar(fmt, tools, "required")


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("keyword", ["required", "properties", "$ref", "allOf", "items", "format", "pattern",
                                     "minItems", "maximum", "exclusiveMinimum", "type", "additionalProperties"])
def test_a_null_keyword_is_one_left_out(keyword, place):
    """Go's JSON writes a nil list or map as null: MCP servers written in Go send ``"required": null``,
    ``"properties": null``. The converter has always read null as the keyword left out; the kind checks keep it."""
    assert "root ::=" in json_schema_to_grammar(PLACES[place]({keyword: None}))


TOOL_FORMATS = ["hermes", "llama3", "mistral-json", "granite", "nemotron", "firefunction", "apriel", "mistral-args",
                "functionary-v3.1", "functionary-v3.2", "qwen3-coder", "seed-oss", "glm", "deepseek-r1",
                "deepseek-v3.1", "kimi", "harmony", "apertus", "command-r7b"]


@pytest.mark.parametrize("fmt", TOOL_FORMATS)
@pytest.mark.parametrize("keyword, value", [("required", 1), ("required", [["city"]]), ("required", [{}]),
                                            ("properties", ["city"])])
def test_every_tool_call_format_refuses_a_malformed_parameters_schema(fmt, keyword, value):
    """The XML-style formats (Qwen3-Coder, Seed-OSS, GLM) read a function's ``required`` themselves, before the
    schema's own conversion: ``"required": 1`` was a TypeError there."""
    parameters = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
                  "required": ["city", "n"], keyword: value}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": parameters}}]
    with pytest.raises(GrammarError) as caught:
        call_grammar(fmt, tools, "required")
    assert caught.value.param == "tools[0].function.parameters" and keyword in str(caught.value)


# -- the server: every dialect's schema fields ------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    from jan.server.config import ServerConfig
    from jan.testing.gguf_models import write_tool_template_model
    from jan.testing.server import ServerThread

    tmp = tmp_path_factory.mktemp("hunt-schema")
    tool_model = write_tool_template_model(tmp / "tool-model.gguf")
    cfg = ServerConfig(data_folder=tmp / "data", models=[str(stories_path), str(tool_model)], n_ctx=512,
                       n_parallel=2, n_threads=1)
    with ServerThread(cfg) as srv:
        yield srv


BAD = {"type": "object", "properties": {"city": {"type": "string"}}, "required": 1}
USER = [{"role": "user", "content": "Hi"}]
# (path, body with the malformed schema, the param the error names, dialect)
SCHEMA_FIELDS = [
    ("/v1/chat/completions", {"model": "tool-model", "max_tokens": 2, "messages": USER,
                              "tools": [{"type": "function", "function": {"name": "f", "parameters": BAD}}]},
     "tools[0].function.parameters", "openai"),
    ("/v1/chat/completions", {"model": "tool-model", "max_tokens": 2, "messages": USER,
                              "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": BAD}}},
     "response_format.json_schema.schema", "openai"),
    ("/v1/responses", {"model": "tool-model", "max_output_tokens": 2, "input": "Hi", "store": False,
                       "tools": [{"type": "function", "name": "f", "parameters": BAD}]}, "tools[0]", "openai"),
    ("/v1/responses", {"model": "tool-model", "max_output_tokens": 2, "input": "Hi", "store": False,
                       "text": {"format": {"type": "json_schema", "name": "x", "schema": BAD}}}, "text.format", "openai"),
    ("/v1/messages", {"model": "tool-model", "max_tokens": 2, "messages": USER,
                      "tools": [{"name": "f", "input_schema": BAD}]}, "tools.0", "anthropic"),
    ("/api/chat", {"model": "tool-model", "stream": False, "messages": USER, "options": {"num_predict": 2},
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": BAD}}]}, "tools[0]", "ollama"),
    ("/api/chat", {"model": "tool-model", "stream": False, "messages": USER, "options": {"num_predict": 2},
                   "format": BAD}, "format", "ollama"),
    ("/api/generate", {"model": "stories260K", "stream": False, "prompt": "Once", "options": {"num_predict": 2},
                       "format": BAD}, "format", "ollama"),
    ("/completion", {"model": "stories260K", "prompt": "Once", "n_predict": 2, "json_schema": BAD}, "json_schema",
     "llama"),
    ("/v1/completions", {"model": "stories260K", "prompt": "Once", "max_tokens": 2, "json_schema": BAD}, "json_schema",
     "openai"),
]


def _message(dialect: str, body: dict) -> str:
    if dialect == "ollama":
        assert isinstance(body.get("error"), str), body
        return body["error"]
    if dialect == "anthropic":
        assert body.get("type") == "error" and body["error"]["type"] == "invalid_request_error", body
        return body["error"]["message"]
    assert isinstance(body["error"]["message"], str), body
    return body["error"]["message"]


@pytest.mark.parametrize("path, body, param, dialect", SCHEMA_FIELDS,
                         ids=[f"{p}:{param}" for p, _, param, _ in SCHEMA_FIELDS])
def test_a_malformed_schema_is_a_400_in_each_dialect(server, path, body, param, dialect):
    for stream in (False, True):
        sent = {**body, "stream": stream}
        response = httpx.post(server.base_url + path, json=sent, timeout=120)
        assert response.status_code == 400, (path, stream, response.text)
        message = _message(dialect, response.json())
        assert "'required'" in message and param in message, message


NUMBER_PATHS = [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic"), ("/v1/responses", "openai"),
                ("/api/chat", "ollama"), ("/api/generate", "ollama"), ("/completion", "llama"),
                ("/v1/embeddings", "openai")]


@pytest.mark.parametrize("path, dialect", NUMBER_PATHS)
@pytest.mark.parametrize("number, said", [("1e999", "1e999"), ("-1e999", "-1e999"), ("9" * 5000, "digits")])
def test_a_number_no_field_can_hold_is_a_400_in_each_dialect(server, path, dialect, number, said):
    """``1e999`` is valid JSON that Python reads as infinity (then a 500 from the grammar's bound, or a reply no
    strict JSON writer can write); an integer of 5,000 digits was answered with Python's own words about its
    ``sys.set_int_max_str_digits``."""
    raw = ('{"model": "stories260K", "temperature": %s, "messages": [{"role": "user", "content": "Hi"}]}'
           % number).encode()
    response = httpx.post(server.base_url + path, content=raw, headers={"Content-Type": "application/json"},
                          timeout=120)
    assert response.status_code == 400, response.text
    message = _message(dialect, response.json())
    assert said in message and "set_int_max_str_digits" not in message, message


def test_a_bound_past_a_double_in_a_schema_is_refused_before_it_reaches_the_grammar(server):
    raw = json.dumps({"model": "tool-model", "max_tokens": 2, "messages": USER, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "maximum": 12345}}}})
    response = httpx.post(server.base_url + "/v1/chat/completions", content=raw.replace("12345", "1e999"),
                          headers={"Content-Type": "application/json"}, timeout=120)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json", response.text


#: An integer with more digits than a double holds (2**1024, the first past its range, has 309).
HUGE_INTEGER = "1" + "0" * 400
#: (path, body with @N@ where the integer goes, dialect): each a field a validator turns into a float, where Python's
#: ``float(int)`` raised OverflowError, a 500 (Ollama's keep_alive, on each route that takes it; an assistant's
#: tool_policy.timeout), or where pydantic's answer was no help ("should be a number or a boolean, not a number").
HUGE_INTEGER_PLACES = [
    ("/api/chat", '{"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "keep_alive": @N@}',
     "ollama"),
    ("/api/generate", '{"model": "stories260K", "prompt": "Hi", "keep_alive": @N@}', "ollama"),
    ("/api/embed", '{"model": "stories260K", "input": "Hi", "keep_alive": @N@}', "ollama"),
    ("/api/embeddings", '{"model": "stories260K", "prompt": "Hi", "keep_alive": @N@}', "ollama"),
    ("/v1/assistants", '{"model": "stories260K", "tool_policy": {"timeout": @N@}}', "openai"),
    ("/completion", '{"model": "stories260K", "prompt": "Hi", "logit_bias": {"1": @N@}}', "llama"),
    ("/v1/chat/completions", '{"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], '
                             '"temperature": @N@}', "openai"),
    ("/v1/messages", '{"model": "stories260K", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}], '
                     '"temperature": -@N@}', "anthropic"),
]


@pytest.mark.parametrize("path, body, dialect", HUGE_INTEGER_PLACES,
                         ids=[f"{p}:{b.split('@N@')[0][-20:]}" for p, b, _ in HUGE_INTEGER_PLACES])
def test_an_integer_past_a_doubles_range_is_a_400_in_each_dialect(server, path, body, dialect):
    """Python reads a 400-digit JSON integer exactly, and ``float()`` of it raises OverflowError: the body reader
    refuses it, as it refuses ``1e999``, wherever it stands."""
    response = httpx.post(server.base_url + path, content=body.replace("@N@", HUGE_INTEGER).encode(),
                          headers={"Content-Type": "application/json"}, timeout=120)
    assert response.status_code == 400, response.text
    message = _message(dialect, response.json())
    assert "beyond the range of a double" in message and "401 digits" in message, message


@pytest.mark.parametrize("size", ["small", "big"])
def test_the_body_reader_refuses_an_integer_past_a_double_in_any_body(size):
    """Small bodies are parsed without Python hooks unless a run of digits is that long; big ones always with them
    (``tests/test_json_values_limit.py``): both refuse it, and keep a 309-digit integer a double still holds, and
    digits in a string."""
    from jan.server.body_size import PARSE_OFF_LOOP_BYTES
    from jan.server.errors import APIError
    from jan.server.validation import loads_bounded

    pad = "x" * (PARSE_OFF_LOOP_BYTES + 1 if size == "big" else 0)
    with pytest.raises(APIError) as caught:
        loads_bounded(('{"pad": "%s", "n": -%s}' % (pad, HUGE_INTEGER)).encode())
    assert caught.value.status == 400 and caught.value.code == "invalid_json"
    assert "beyond the range of a double" in caught.value.message
    kept = loads_bounded(('{"pad": "%s", "n": %d, "s": "%s"}' % (pad, 10 ** 308, HUGE_INTEGER)).encode())
    assert kept["n"] == 10 ** 308 and kept["s"] == HUGE_INTEGER
