"""Line breaks other than ``\\n`` in what jan streams as lines: NEL (U+0085) and the line and paragraph separators
(U+2028, U+2029) are legal unescaped in a JSON string, and ``json.dumps(..., ensure_ascii=False)`` wrote them raw.
Python's ``str.splitlines`` breaks a line at each, and the official ollama client reads an NDJSON stream with
httpx's ``iter_lines``, which splits the same way: a model that wrote one (in its answer, its thinking or a tool
call's arguments) cut that line in two, and the client raised JSONDecodeError mid-stream. Every line-framed writer
(Ollama's NDJSON, SSE of every dialect, a run's events, batch results) writes them as their JSON escapes now, the
same JSON value; Go's encoder (Ollama's own) escapes U+2028 and U+2029 the same way.
"""

from __future__ import annotations

import json

import httpx
import pytest

from dialect_helpers import tool_model
from jan.json_text import one_line_json, utf8_json
from server_helpers import start_server

BREAKS = ("\x85", "\u2028", "\u2029")
TEXT = "a\x85b\u2028c\u2029d \U0001F600 e\ud800"


def test_the_writers_escape_them():
    text = json.dumps({"k\u2028": TEXT}, ensure_ascii=False)
    for out in (one_line_json(text), utf8_json(text).decode()):
        assert out.splitlines() == [out] and not any(b in out for b in BREAKS)
        assert json.loads(out) == {"k\u2028": TEXT}
    plain = json.dumps({"a": "é \U0001F600"}, ensure_ascii=False)
    assert one_line_json(plain) is plain


def test_ollama_lines_and_batch_results_carry_them():
    from jan.server.dialects.anthropic_batches import results_jsonl
    from jan.server.routes.ollama import _dumps
    from jan.server.routes.runs import _sse_text
    from jan.services.batch_types import ItemResult

    line = _dumps({"message": {"content": TEXT}})
    assert line.splitlines() == [line] and json.loads(line)["message"]["content"] == TEXT
    event = _sse_text("thread.message.delta", {"delta": {"content": [{"text": {"value": TEXT}}]}}, seq=1).decode()
    data, = [x for x in event.splitlines() if x.startswith("data: ")]
    assert json.loads(data[len("data: "):])["delta"]["content"][0]["text"]["value"] == TEXT
    message = {"type": "message", "content": [{"type": "text", "text": TEXT}]}
    line, = results_jsonl([ItemResult(0, "c", "succeeded", 200, message)]).decode().splitlines()
    assert json.loads(line)["result"]["message"]["content"][0]["text"] == TEXT


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("line-breaks")
    srv = start_server(tmp, [tool_model(tmp)], n_ctx=1024, n_parallel=1)
    yield srv
    srv.stop()


CITY = "Pa\u2028ri\x85s\u2029"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
# a prefill of a whole call: the reply's tool call is this one, whatever the tiny model writes after it
PREFILL = '<tool_call>\n{"name": "get_weather", "arguments": ' + json.dumps({"city": CITY}, ensure_ascii=False) \
    + "}\n</tool_call>"
MESSAGES = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": PREFILL}]


def test_the_ollama_client_reads_a_streamed_call_with_them(server):
    import ollama

    client = ollama.Client(host=server.base_url, timeout=120)
    parts = list(client.chat(model="tool-model", messages=MESSAGES, tools=TOOLS, stream=True,
                             options={"num_predict": 2, "temperature": 0}))
    calls = [c for p in parts for c in p.message.tool_calls or ()]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("get_weather", {"city": CITY})]
    assert parts[-1].done


def test_sse_read_as_text_lines_carries_them(server):
    """A chat completion's SSE read by httpx's ``iter_lines`` (as hand-written clients read it): every data line is
    whole JSON, and the call's arguments hold the characters."""
    body = {"model": "tool-model", "messages": MESSAGES, "tools": TOOLS, "max_tokens": 2, "temperature": 0,
            "stream": True}
    arguments = ""
    with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[len("data: "):])["choices"]:
                    for call in choice["delta"].get("tool_calls") or ():
                        arguments += call["function"].get("arguments") or ""
    assert json.loads(arguments) == {"city": CITY}
