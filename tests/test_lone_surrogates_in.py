"""A lone UTF-16 surrogate a model's JSON spells (``"\\ud800"``: its grammar allows any ``\\uXXXX`` escape) is read as
U+FFFD wherever jan reads a model's output into values: every tool-call format's arguments (streamed and whole), a
dialect's tool input object, a stored response read back. Before, the code point itself reached the client (which
sent it back and was refused: 400 ``invalid_unicode``), the store, and the next turn's prompt (refused: "lone UTF-16
surrogate"), a conversation dead after one such call. A pair's escapes (``"\\ud83d\\ude00"``) are still its
character. A client's own request body holding a lone escape is still refused (as llama-server's JSON parser
refuses it): tests/test_hostile_input.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from chat_format_cases import TEMPLATES, TOOLS
from jan.json_text import fix_lone_surrogate_escapes, loads_json

GOOD = "a\ufffdb\U0001F600"  # what the model's "a\ud800b\ud83d\ude00" reads as


def _calls(name: str, text: str, pieces: int = 1) -> list[tuple[str, str, str]]:
    """(whole arguments, streamed arguments joined) of each call ``text`` makes in ``name``'s format, fed in
    pieces of ``pieces`` characters."""
    from jan.templates.formats import OutputParser, detect_format

    parser = OutputParser(detect_format((TEMPLATES / name).read_text()), TOOLS)
    deltas = []
    for at in range(0, len(text), pieces):
        deltas += parser.feed(text[at:at + pieces])
    deltas += parser.finish()
    streamed: dict[int, str] = {}
    for d in deltas:
        for c in d.tool_calls:
            streamed[c.index] = streamed.get(c.index, "") + c.arguments
    return [(c.name, c.arguments, streamed[i]) for i, c in enumerate(parser.result.tool_calls)]


ARGS = '{"city": "a\\ud800b\\ud83d\\ude00", "days": 1}'
CASES = {
    # arguments as a JSON string (read, then written again)
    "Apriel-1.6-15b-Thinker-fixed.jinja":
        '<tool_calls>[{"name": "get_weather", "arguments": ' + json.dumps(ARGS) + '}]</tool_calls>',
    # arguments as the model's JSON text, streamed as written
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja":
        '<tool_call>\n{"name": "get_weather", "arguments": ' + ARGS + '}\n</tool_call>',
    "meta-llama-Llama-3.1-8B-Instruct.jinja": '{"name": "get_weather", "parameters": ' + ARGS + '}',
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": '[TOOL_CALLS]get_weather[ARGS]' + ARGS,
    # XML parameters: a non-string one's value is JSON
    "Qwen3-Coder.jinja": '<tool_call>\n<function=get_weather>\n<parameter=days>\n["a\\ud800b\\ud83d\\ude00"]\n'
                         '</parameter>\n</function>\n</tool_call>',
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("pieces", [1, 3, 1000])
def test_every_format_reads_a_lone_surrogate_escape_as_u_fffd(name, pieces):
    (call, whole, streamed), = _calls(name, CASES[name], pieces)
    assert call == "get_weather"
    assert whole == streamed  # the stream adds up to the whole, pieces held back never lost
    value = json.loads(whole)
    got = value["days"][0] if name == "Qwen3-Coder.jinja" else value["city"]
    assert got == GOOD, (name, whole)
    whole.encode("utf-8")  # (no lone surrogate left in the text either)


def test_a_string_parameter_s_backslash_stays_text():
    (_, whole, _), = _calls("Qwen3-Coder.jinja", '<tool_call>\n<function=get_weather>\n<parameter=city>\na\\ud800b\n'
                                                 '</parameter>\n</function>\n</tool_call>')
    assert json.loads(whole)["city"] == "a\\ud800b"  # (taken verbatim: no escape there)


def test_the_helpers():
    assert loads_json('{"k\\udc00": ["a\\ud800b", "\\ud83d\\ude00", "\\\\ud800"]}') == \
        {"k\ufffd": ["a\ufffdb", "\U0001F600", "\\ud800"]}
    assert loads_json(b'"\xed\xa0\x80"') == "\ufffd"  # (bytes: json.loads reads such bytes as a surrogate)
    for text, fixed in [('"\\ud800"', '"\\ufffd"'), ('"\\ud83d\\ude00"', '"\\ud83d\\ude00"'),
                        ('"\\\\ud800"', '"\\\\ud800"'), ('"\\ud800\\ud800\\udc00"', '"\\ufffd\\ud800\\udc00"'),
                        ('"\\udc00\\\\\\ud800"', '"\\ufffd\\\\\\ufffd"')]:
        assert fix_lone_surrogate_escapes(text) == fixed and len(fixed) == len(text)
        assert json.loads(fixed) == loads_json(text)


# -- through the server: a model whose output holds the escape --------------------------------------------------

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "a\\ud800b"}}\n</tool_call>'


def _gbnf(text: str) -> str:
    return 'root ::= "' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@pytest.fixture(scope="module")
def forced(tmp_path_factory):
    """(server, the output to force: a one-item list, None for the request's own constraint). The model's whole
    output is held to it by a grammar, as a client's raw GBNF would be."""
    from dialect_helpers import tool_model
    from server_helpers import start_server
    import jan.services.chat as chat

    tmp = tmp_path_factory.mktemp("lone-surrogates")
    srv = start_server(tmp, [tool_model(tmp)])
    output: list[str | None] = [None]
    own = chat.constraint_grammar
    mp = pytest.MonkeyPatch()
    mp.setattr(chat, "constraint_grammar",
               lambda request, plan, prompt: own(request, plan, prompt) if output[0] is None else
               {"grammar": _gbnf(output[0])})
    yield srv, output
    mp.undo()
    srv.stop()


ANTH_TOOLS = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
RESP_TOOLS = [{"type": "function", "name": "get_weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def _post(srv, path: str, body: dict) -> httpx.Response:
    # ensure_ascii (the default): what the model's value held is sent back as its JSON escape, as an SDK sends it
    return httpx.post(srv.base_url + path, content=json.dumps(body), timeout=300,
                      headers={"content-type": "application/json", "anthropic-version": "2023-06-01"})


def _sse(body: str) -> list[dict]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_history_holding_the_call_is_taken_back(forced, stream):
    srv, output = forced
    output[0] = CALL
    ask = [{"role": "user", "content": "Weather?"}]
    r = _post(srv, "/v1/messages", {"model": "tool-model", "max_tokens": 200, "tools": ANTH_TOOLS, "messages": ask,
                                    "stream": stream})
    assert r.status_code == 200, r.text
    if stream:
        events = _sse(r.text)
        use = next(e["content_block"] for e in events if e["type"] == "content_block_start"
                   and e["content_block"]["type"] == "tool_use")
        use["input"] = json.loads("".join(e["delta"]["partial_json"] for e in events
                                          if e["type"] == "content_block_delta"
                                          and e["delta"]["type"] == "input_json_delta"))
    else:
        use, = [b for b in r.json()["content"] if b["type"] == "tool_use"]
    output[0] = "Sunny."
    r = _post(srv, "/v1/messages", {"model": "tool-model", "max_tokens": 20, "tools": ANTH_TOOLS, "messages": [
        *ask, {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}]}]})
    assert r.status_code == 200, r.text  # (before: 400 invalid_unicode, the conversation dead)
    assert r.json()["content"][0]["text"] == "Sunny."
    assert use["input"] == {"city": "a\ufffdb"}


def test_a_chained_responses_turn_takes_the_stored_call(forced):
    srv, output = forced
    output[0] = CALL
    r = _post(srv, "/v1/responses", {"model": "tool-model", "max_output_tokens": 200, "tools": RESP_TOOLS,
                                     "input": "Weather?"})
    assert r.status_code == 200, r.text
    call, = [item for item in r.json()["output"] if item["type"] == "function_call"]
    output[0] = "Sunny."
    r = _post(srv, "/v1/responses", {"model": "tool-model", "max_output_tokens": 20, "tools": RESP_TOOLS,
                                     "previous_response_id": r.json()["id"],
                                     "input": [{"type": "function_call_output", "call_id": call["call_id"],
                                                "output": "sunny"}]})
    assert r.status_code == 200, r.text  # (before: 400, the stored call's surrogate refused in the prompt)
    assert r.json()["output"][-1]["content"][0]["text"] == "Sunny."
    assert json.loads(call["arguments"]) == {"city": "a\ufffdb"}


CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": RESP_TOOLS[0]["parameters"]}}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_completion_s_call_and_history(forced, stream):
    """The call's arguments (text: a client reads the escape in them as the code point) hold U+FFFD, streamed or
    whole; a history whose arguments text still holds the escape (jan wrote them so before, and another server
    passes a model's text on as it is) is read as the model's output is, not refused."""
    srv, output = forced
    output[0] = CALL
    ask = [{"role": "user", "content": "Weather?"}]
    r = _post(srv, "/v1/chat/completions", {"model": "tool-model", "max_tokens": 200, "tools": CHAT_TOOLS,
                                            "messages": ask, "stream": stream})
    assert r.status_code == 200, r.text
    if stream:
        arguments = "".join(c["function"].get("arguments") or "" for chunk in _sse(r.text)
                            for choice in chunk["choices"] for c in choice["delta"].get("tool_calls") or [])
    else:
        arguments = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"city": "a\ufffdb"}
    output[0] = "Sunny."
    for sent in (arguments, '{"city": "a\\ud800b"}'):
        r = _post(srv, "/v1/chat/completions", {"model": "tool-model", "max_tokens": 20, "tools": CHAT_TOOLS,
                                                "messages": [*ask, {"role": "assistant", "tool_calls": [
                                                    {"id": "call_1", "type": "function", "function": {
                                                        "name": "get_weather", "arguments": sent}}]},
                                                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})
        assert r.status_code == 200, r.text  # (before: 400, the surrogate refused in the prompt)
        assert r.json()["choices"][0]["message"]["content"] == "Sunny."


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_s_arguments_and_history(forced, stream):
    srv, output = forced
    output[0] = CALL
    ask = [{"role": "user", "content": "Weather?"}]
    r = _post(srv, "/api/chat", {"model": "tool-model", "tools": CHAT_TOOLS, "messages": ask, "stream": stream,
                                 "options": {"num_predict": 200}})
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    call, = [c for line in lines for c in line["message"].get("tool_calls") or []]
    output[0] = "Sunny."
    r = _post(srv, "/api/chat", {"model": "tool-model", "tools": CHAT_TOOLS, "stream": False, "messages": [
        *ask, {"role": "assistant", "content": "", "tool_calls": [call]}, {"role": "tool", "content": "sunny"}]})
    assert r.status_code == 200, r.text  # (before: 400, the history's lone escape refused)
    assert r.json()["message"]["content"] == "Sunny."
    assert call["function"]["arguments"] == {"city": "a\ufffdb"}
