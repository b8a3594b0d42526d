"""``metadata`` keeps OpenAI's rules wherever jan takes it: at most 16 pairs, keys up to 64 characters,
values strings of up to 512; past them a 400 in OpenAI's error shape naming ``metadata`` (and the key). A thread
message's metadata also keeps the keys jan writes itself (a run's and ``jan chat``'s records) with their types."""

from __future__ import annotations

import pytest
from api_helpers import Client

LONG_KEY = "k" * 65
CASES = {
    "too many pairs": ({f"k{i}": "v" for i in range(17)}, "at most 16"),
    "key too long": ({LONG_KEY: "x"}, "k" * 64),
    "value too long": ({"note": "v" * 513}, "'note'"),
    "a number": ({"count": 3}, "'count' must be a string (got a number)"),
    "a boolean": ({"flag": True}, "'flag' must be a string (got a boolean)"),
    "null": ({"gone": None}, "'gone' must be a string (got null)"),
    "an object": ({"nested": {"a": "b"}}, "'nested' must be a string (got an object)"),
    "an array": ({"tags": ["a"]}, "'tags' must be a string (got an array)"),
}
AT_THE_LIMITS = {**{f"k{i:02}": "v" * 512 for i in range(15)}, "k" * 64: "x"}


async def _targets(api: Client) -> list[tuple[str, str, dict]]:
    """(method, path, body without metadata) of every body that takes metadata."""
    thread = await api.ok("POST", "/v1/threads", {})
    message = await api.ok("POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "hi"})
    await api.ok("POST", "/v1/assistants", {"id": "meta-limits", "model": "*"})
    tid = thread["id"]
    return [
        ("POST", "/v1/assistants", {"model": "*"}),
        ("POST", "/v1/assistants/meta-limits", {}),
        ("POST", "/v1/threads", {}),
        ("POST", f"/v1/threads/{tid}", {}),
        ("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "hi"}),
        ("POST", f"/v1/threads/{tid}/messages/{message['id']}", {}),
        ("POST", f"/v1/threads/{tid}/runs", {"assistant_id": "meta-limits"}),
        ("POST", "/v1/threads/runs", {"assistant_id": "meta-limits"}),
        ("POST", "/v1/responses", {"model": "no-such-model", "input": "hi"}),
        ("POST", "/v1/chat/completions", {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
    ]


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
async def test_metadata_past_openais_limits_is_a_400_naming_the_field(server, case):
    metadata, said = CASES[case]
    async with Client(server.base_url) as api:
        for method, path, body in await _targets(api):
            status, answer = await api.call(method, path, {**body, "metadata": metadata})
            assert status == 400, (path, status, answer)
            error = answer["error"]
            assert error["type"] == "invalid_request_error" and error["param"] == "metadata", (path, error)
            assert said in error["message"], (path, error)
        # Nothing was stored by the refused requests.
        assert (await api.ok("GET", "/v1/assistants/meta-limits"))["metadata"] == {}


async def test_metadata_at_the_limits_is_kept(server):
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"model": "*", "metadata": AT_THE_LIMITS})
        assert assistant["metadata"] == AT_THE_LIMITS
        thread = await api.ok("POST", "/v1/threads", {"metadata": AT_THE_LIMITS})
        assert thread["metadata"] == AT_THE_LIMITS
        message = await api.ok("POST", f"/v1/threads/{thread['id']}/messages",
                               {"role": "user", "content": "hi", "metadata": AT_THE_LIMITS})
        assert {k: message["metadata"][k] for k in AT_THE_LIMITS} == AT_THE_LIMITS


async def test_a_message_keeps_jans_own_record_keys_with_their_types(server):
    """``jan chat`` saving a tool-calling turn to a server sends jan's own records (the calls, a result's timing):
    a message body keeps those keys' JSON types, while a client's own key must still be a string."""
    record = {"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
              "duration_ms": 12, "is_error": False, "model": "m"}
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        message = await api.ok("POST", f"/v1/threads/{tid}/messages",
                               {"role": "assistant", "content": "x", "metadata": record})
        assert {k: message["metadata"][k] for k in record} == record
        patched = await api.ok("POST", f"/v1/threads/{tid}/messages/{message['id']}",
                               {"metadata": {**record, "duration_ms": 13}})
        assert patched["metadata"]["duration_ms"] == 13
        status, answer = await api.call("POST", f"/v1/threads/{tid}/messages",
                                        {"role": "user", "content": "x", "metadata": {**record, "count": 1}})
        assert status == 400 and answer["error"]["param"] == "metadata", answer
        assert "'count'" in answer["error"]["message"]
        # a thread's metadata is a client's only: jan writes no record keys there
        status, answer = await api.call("POST", "/v1/threads", {"metadata": {"duration_ms": 12}})
        assert status == 400 and "'duration_ms'" in answer["error"]["message"], answer
