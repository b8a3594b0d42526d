"""A lone UTF-16 surrogate in what jan writes out: a model's JSON may spell one (its grammar allows any ``\\uXXXX``
escape, ``"\\ud800"`` included), and a tool call's arguments or an Anthropic tool input read back from that JSON
hold it as a Python str's lone surrogate (a family that writes its arguments as a JSON string, read and written
again, passes it on: Apriel's ``"arguments": "{\\"city\\": \\"a\\\\ud800b\\"}"``). Such a code point has no UTF-8
form, and every writer that wrote JSON with ``ensure_ascii=False`` and then encoded it as UTF-8 raised
UnicodeEncodeError there: a stream (SSE of every dialect, Ollama's NDJSON, a run's events) cut off mid-answer, a
reply a 500, a stored response, batch result or run record not written. Each writes it as its JSON escape now: the
same JSON value, in valid UTF-8.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from jan.json_text import escape_lone_surrogates, utf8_json

from chat_format_cases import TEMPLATES, TOOLS

LONE = "a\ud800b\udfffc \U0001F600"  # two lone surrogates, and a real character outside the BMP (unchanged)


def _sse_lines(body: bytes) -> list[dict]:
    return [json.loads(line[len(b"data: "):]) for line in body.split(b"\n")
            if line.startswith(b"data: ") and line != b"data: [DONE]"]


def test_the_model_s_escape_no_longer_reaches_the_arguments():
    """A model's escape is read as U+FFFD now (tests/test_lone_surrogates_in.py); the writers below still escape a
    lone surrogate that comes another way (a value a tool or an extension returns)."""
    from jan.templates.formats import detect_format, parse_output

    fmt = detect_format((TEMPLATES / "Apriel-1.6-15b-Thinker-fixed.jinja").read_text())
    text = '<tool_calls>[{"name": "get_weather", "arguments": "{\\"city\\": \\"a\\\\ud800b\\", \\"days\\": 1}"}]</tool_calls>'
    call, = parse_output(text, fmt, TOOLS).tool_calls
    assert json.loads(call.arguments)["city"] == "a\ufffdb"
    assert utf8_json(json.dumps({"arguments": call.arguments}, ensure_ascii=False)) == \
        json.dumps({"arguments": call.arguments}, ensure_ascii=False).encode("utf-8")


def test_json_text_helpers():
    text = json.dumps({"k\udfff": LONE}, ensure_ascii=False)
    assert json.loads(utf8_json(text)) == {"k\udfff": LONE}
    assert json.loads(escape_lone_surrogates(text)) == {"k\udfff": LONE}
    escape_lone_surrogates(text).encode("utf-8")  # (valid UTF-8 now)
    assert utf8_json(text).count("\U0001F600".encode()) == 1  # real characters stay as they were
    plain = json.dumps({"a": "é \U0001F600"}, ensure_ascii=False)
    assert escape_lone_surrogates(plain) is plain and utf8_json(plain) == plain.encode()
    # (U+2028 and its kin are escaped too: tests/test_line_breaks_out.py)


def test_an_sse_stream_carries_it():
    from jan.server.sse import SSEStream

    async def handler(request):
        stream = SSEStream(request)
        await stream.send({"delta": LONE}, event="delta")
        await stream.send({"end": True}, hold=True)
        await stream.done()
        return stream.response

    async def go():
        app = web.Application()
        app.router.add_get("/s", handler)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/s")
            assert response.status == 200
            return await response.read()

    body = asyncio.run(asyncio.wait_for(go(), 60))
    assert body.endswith(b"data: [DONE]\n\n")
    assert _sse_lines(body) == [{"delta": LONE}, {"end": True}]


def test_ollama_replies_and_run_events_carry_it():
    from jan.server.routes.ollama import _dumps
    from jan.server.routes.runs import _sse_text

    line = _dumps({"message": {"tool_calls": [{"function": {"arguments": {"city": LONE}}}]}}).encode("utf-8")
    assert json.loads(line)["message"]["tool_calls"][0]["function"]["arguments"]["city"] == LONE
    event = _sse_text("thread.message.delta", {"delta": {"content": [{"text": {"value": LONE}}]}}, seq=3)
    assert _sse_lines(event)[0]["delta"]["content"][0]["text"]["value"] == LONE


def test_stores_write_it(tmp_path):
    from jan.core.fs import atomic_write_json
    from jan.store._util import dumps_json

    for indent in (2, None):
        assert json.loads(dumps_json({"output": [{"arguments": LONE}]}, indent=indent)) == {"output": [{"arguments": LONE}]}
    atomic_write_json(tmp_path / "doc.json", {"input": LONE})
    assert json.loads((tmp_path / "doc.json").read_bytes()) == {"input": LONE}


def test_batch_results_carry_it():
    from jan.server.dialects.anthropic_batches import results_jsonl
    from jan.services.batch_types import ItemResult

    message = {"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"s": LONE}}]}
    line, = results_jsonl([ItemResult(0, "c", "succeeded", 200, message)]).splitlines()
    assert json.loads(line)["result"]["message"]["content"][0]["input"]["s"] == LONE
