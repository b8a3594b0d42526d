"""A run's tools and tool policy are checked where they are given — an assistant, a thread's ``assistants[i]``
entry, a run's body, create-thread-and-run — and where a run reads them back from the data folder: a function
entry of a shape no dialect takes (a name with a space, a description that is a number...) or a ``tool_policy``
value the run cannot read (``max_steps: "x"``) is a 400 naming the field, never a thread or assistant stored with
it and a run that fails later (once: Python's own ``int()`` error with no ``param``, a run ``failed`` at its first
turn, an ``auto_approve`` string read letter by letter as patterns)."""

from __future__ import annotations

import json

import pytest
from api_helpers import Client, running
from run_helpers import run_to_end

from jan.services.errors import RequestError
from jan.services.tool_checks import check_tool_entries, check_tool_policy

pytestmark = pytest.mark.timeout(600)

GOOD_FN = {"name": "lookup", "description": "Look it up", "parameters": {"type": "object", "properties": {}}}

#: function entries no dialect takes, and the field each error names (below the entry's path)
BAD_FUNCTIONS = [
    ({"type": "function"}, ".function"),
    ({"type": "function", "function": "lookup"}, ".function"),
    ({"type": "function", "function": {"name": "a b", "description": "d"}}, ".function.name"),
    ({"type": "function", "function": {"name": "x" * 65, "description": "d"}}, ".function.name"),
    ({"type": "function", "function": {"name": "lookup", "description": 5}}, ".function.description"),
    ({"type": "function", "function": {"name": "lookup", "parameters": "object"}}, ".function.parameters"),
    ({"type": "function", "function": {**GOOD_FN, "strict": "yes"}}, ".function.strict"),
]

#: tool policies no run can read, and the field each error names (below the policy's path)
BAD_POLICIES = [
    ("fast", ""),
    ([], ""),
    ({"max_step": 3}, ".max_step"),
    ({"max_steps": "x"}, ".max_steps"),
    ({"max_steps": 0}, ".max_steps"),
    ({"max_steps": 2.5}, ".max_steps"),
    ({"max_steps": True}, ".max_steps"),
    ({"max_steps": 2**31}, ".max_steps"),
    ({"timeout": "x"}, ".timeout"),
    ({"timeout": 0}, ".timeout"),
    ({"timeout": -1}, ".timeout"),
    ({"auto_approve": "current_time"}, ".auto_approve"),
    ({"auto_approve": [1]}, ".auto_approve"),
    ({"tool_choice": "bogus"}, ".tool_choice"),
    ({"tool_choice": {"type": "function"}}, ".tool_choice"),
]

GOOD_POLICY = {"max_steps": 3, "timeout": 2.5, "auto_approve": ["current_*"], "tool_choice": "auto"}


@pytest.mark.parametrize(("entry", "field"), BAD_FUNCTIONS)
def test_a_function_entry_of_the_wrong_shape_is_refused_naming_its_field(entry, field):
    with pytest.raises(RequestError) as caught:
        check_tool_entries([{"type": "function", "function": GOOD_FN}, entry], param="tools")
    assert caught.value.param == "tools[1]" + field and caught.value.code == "invalid_value", caught.value


@pytest.mark.parametrize(("policy", "field"), BAD_POLICIES)
def test_a_policy_value_no_run_can_read_is_refused_naming_it(policy, field):
    with pytest.raises(RequestError) as caught:
        check_tool_policy(policy, param="tool_policy")
    assert caught.value.param == "tool_policy" + field, caught.value


def test_good_entries_and_policies_pass():
    check_tool_entries([{"type": "function", "function": GOOD_FN}, {"type": "function", "function": {"name": "x"}},
                        {"type": "function", "function": {**GOOD_FN, "name": "y", "strict": True}},
                        {"type": "retrieval", "enabled": False}], param="tools")
    for policy in (None, {}, GOOD_POLICY, {"tool_choice": {"type": "function", "function": {"name": "x"}}},
                   {"max_steps": 1, "timeout": 1}):
        check_tool_policy(policy, param="tool_policy")


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("data"), stories_path) as srv:
        yield srv


def thread_file(srv, tid: str):
    return srv.config.data_folder / "threads" / tid / "thread.json"


async def test_every_place_that_takes_tools_refuses_a_bad_function_entry(server):
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"model": "stories260K"})
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once"}]}))["id"]
        before = len(list((server.config.data_folder / "assistants").iterdir()))
        threads = (await api.ok("GET", "/v1/threads?limit=100"))["data"]
        for entry, field in BAD_FUNCTIONS:
            tools = [entry]
            for path, body, param in [
                    ("/v1/assistants", {"model": "stories260K", "tools": tools}, "tools[0]"),
                    (f"/v1/assistants/{assistant['id']}", {"tools": tools}, "tools[0]"),
                    ("/v1/threads", {"assistants": [{"tools": tools}]}, "assistants[0].tools[0]"),
                    (f"/v1/threads/{tid}", {"assistants": [{"tools": tools}]}, "assistants[0].tools[0]"),
                    (f"/v1/threads/{tid}/runs", {"assistant_id": assistant["id"], "tools": tools}, "tools[0]"),
                    ("/v1/threads/runs", {"assistant_id": assistant["id"], "tools": tools,
                                          "thread": {"messages": [{"role": "user", "content": "Once"}]}}, "tools[0]"),
                    ("/v1/threads/runs", {"assistant_id": assistant["id"],
                                          "thread": {"assistants": [{"tools": tools}],
                                                     "messages": [{"role": "user", "content": "Once"}]}},
                     "thread.assistants[0].tools[0]")]:
                status, err = await api.post(path, body)
                assert status == 400 and err["error"]["param"] == param + field, (path, entry, err)
        # nothing was written: no assistant, no thread, no run, the thread's tools untouched
        assert len(list((server.config.data_folder / "assistants").iterdir())) == before
        assert (await api.ok("GET", f"/v1/assistants/{assistant['id']}"))["tools"] == []
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"] == []
        assert (await api.ok("GET", "/v1/threads?limit=100"))["data"] == threads


async def test_every_place_that_takes_a_tool_policy_refuses_a_value_no_run_reads(server):
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"model": "stories260K"})
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once"}]}))["id"]
        threads = (await api.ok("GET", "/v1/threads?limit=100"))["data"]
        for policy, field in BAD_POLICIES:
            for path, body, param in [
                    # (an assistant's own policy, docs/tools.md's first layer: the API refused the field itself)
                    ("/v1/assistants", {"model": "stories260K", "tool_policy": policy}, "tool_policy"),
                    (f"/v1/assistants/{assistant['id']}", {"tool_policy": policy}, "tool_policy"),
                    ("/v1/threads", {"assistants": [{"tool_policy": policy}]}, "assistants[0].tool_policy"),
                    (f"/v1/threads/{tid}", {"assistants": [{"tool_policy": policy}]}, "assistants[0].tool_policy"),
                    (f"/v1/threads/{tid}/runs", {"assistant_id": assistant["id"], "tool_policy": policy},
                     "tool_policy"),
                    ("/v1/threads/runs", {"assistant_id": assistant["id"], "tool_policy": policy,
                                          "thread": {"messages": [{"role": "user", "content": "Once"}]}},
                     "tool_policy"),
                    ("/v1/threads/runs", {"assistant_id": assistant["id"],
                                          "thread": {"assistants": [{"tool_policy": policy}],
                                                     "messages": [{"role": "user", "content": "Once"}]}},
                     "thread.assistants[0].tool_policy")]:
                status, err = await api.post(path, body)
                if isinstance(policy, dict) or path.endswith(("/runs", "/assistants")) and "thread" not in body:
                    # (a policy that is no object at all is the body model's 400 on the run routes)
                    assert status == 400 and err["error"]["param"] == param + field, (path, policy, err)
                else:
                    assert status == 400 and err["error"]["param"].startswith(param), (path, policy, err)
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"] == []
        assert (await api.ok("GET", "/v1/threads?limit=100"))["data"] == threads
        assert "tool_policy" not in await api.ok("GET", f"/v1/assistants/{assistant['id']}")
        # a policy every run can read is taken (the assistant keeps its own), and the run goes
        kept = await api.ok("POST", f"/v1/assistants/{assistant['id']}", {"tool_policy": GOOD_POLICY})
        assert kept["tool_policy"] == GOOD_POLICY == (await api.ok("GET", f"/v1/assistants/{assistant['id']}"))[
            "tool_policy"]
        made = await api.ok("POST", "/v1/assistants", {"model": "stories260K", "tool_policy": {"max_steps": 2}})
        assert made["tool_policy"] == {"max_steps": 2}
        await api.ok("POST", f"/v1/threads/{tid}", {"assistants": [{"assistant_id": assistant["id"],
                                                                    "tool_policy": GOOD_POLICY}]})
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2, "tool_policy": GOOD_POLICY})
        assert run["status"] in ("completed", "incomplete"), run


async def test_a_stored_layer_no_run_can_read_is_the_runs_400_naming_where_it_lives(server):
    """A thread or assistant file written by hand (or by an older client) with a policy or a function entry no run
    can use: the run's start refuses it naming the layer, before anything is written — not a run that fails at
    its first turn, nor Python's ``int()`` error with no ``param``."""
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"model": "stories260K"})
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once"}],
                                                    "assistants": [{"assistant_id": assistant["id"]}]}))["id"]
        path = thread_file(server, tid)
        stored = json.loads(path.read_text())
        messages = (await api.ok("GET", f"/v1/threads/{tid}/messages?all=true"))["data"]

        def with_entry(**extra) -> str:
            return json.dumps({**stored, "assistants": [{**stored["assistants"][0], **extra}]})

        for text, param in [(with_entry(tool_policy={"max_steps": "x"}), "assistants[0].tool_policy.max_steps"),
                            (with_entry(tool_policy={"timeout": 0}), "assistants[0].tool_policy.timeout"),
                            (with_entry(tools=[{"type": "function", "function": {"name": "lookup", "description": 5}}]),
                             "assistants[0].tools[0].function.description")]:
            path.write_text(text)
            status, err = await api.post(f"/v1/threads/{tid}/runs", {"max_tokens": 2})
            assert status == 400 and err["error"]["param"] == param, err
            assert err["error"]["message"].startswith("the thread's "), err
        path.write_text(json.dumps(stored))

        file = server.config.data_folder / "assistants" / assistant["id"] / "assistant.json"
        kept = json.loads(file.read_text())
        for extra, param in [({"tool_policy": {"auto_approve": "current_time"}}, "tool_policy.auto_approve"),
                             ({"tools": [{"type": "function", "function": {"name": "a b", "description": "d"}}]},
                              "tools[0].function.name")]:
            file.write_text(json.dumps({**kept, **extra}))
            status, err = await api.post(f"/v1/threads/{tid}/runs", {"max_tokens": 2})
            assert status == 400 and err["error"]["param"] == param, err
            assert f"assistant '{assistant['id']}'" in err["error"]["message"], err
        file.write_text(json.dumps(kept))
        # nothing was written by the refused runs
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"] == []
        assert (await api.ok("GET", f"/v1/threads/{tid}/messages?all=true"))["data"] == messages
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2})
        assert run["status"] in ("completed", "incomplete"), run


#: parameters schemas no grammar can be made of (what a chat completion refuses with 400 ``invalid_schema``)
UNUSABLE_SCHEMAS = [{"type": "object", "properties": {"a": {"$ref": "#/nope"}}},
                    {"type": "object", "properties": {"a": False}},
                    {"type": "object", "properties": {"a": {"enum": []}}},
                    {"type": "object", "properties": {"a": {"type": "string", "pattern": "(("}}}]


async def test_a_client_function_whose_schema_no_grammar_takes_is_the_runs_400(server):
    """A client's own function with a schema no grammar can be made of: the run's 400 naming its parameters, as a
    chat completion's — once it started the run, which failed at its first turn (``invalid_prompt``); an assistant
    given it refuses it where it is written (tests/test_api_assistants.py has the other writers)."""
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"model": "stories260K"})
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once"}]}))["id"]
        threads = (await api.ok("GET", "/v1/threads?limit=100"))["data"]
        for schema in UNUSABLE_SCHEMAS:
            tools = [{"type": "function", "function": GOOD_FN},
                     {"type": "function", "function": {"name": "f", "description": "d", "parameters": schema}}]
            status, err = await api.post("/v1/chat/completions", {
                "model": "stories260K", "messages": [{"role": "user", "content": "x"}], "tools": tools})
            assert status == 400 and err["error"]["code"] == "invalid_schema", err
            for path, body in [(f"/v1/threads/{tid}/runs", {"assistant_id": assistant["id"], "tools": tools}),
                               ("/v1/threads/runs", {"tools": tools,
                                                     "thread": {"messages": [{"role": "user", "content": "Once"}]}})]:
                status, err = await api.post(path, {**body, "max_tokens": 2})
                assert status == 400 and err["error"]["code"] == "invalid_schema", (path, schema, err)
                assert err["error"]["param"] == "tools[1].function.parameters", err
            # the same function given to an assistant: refused where it is written (every run of it would be)
            status, err = await api.post(f"/v1/assistants/{assistant['id']}", {"tools": tools})
            assert status == 400 and err["error"]["code"] == "invalid_schema", (schema, err)
            assert err["error"]["param"] == "tools[1].function.parameters", err
            assert (await api.ok("GET", f"/v1/assistants/{assistant['id']}"))["tools"] == []
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"] == []
        assert (await api.ok("GET", "/v1/threads?limit=100"))["data"] == threads


#: response formats whose schema no grammar can be made of (what a chat completion refuses with ``invalid_schema``)
UNUSABLE_FORMATS = [{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}},
                    {"type": "json_schema", "json_schema": {"name": "x", "schema": {
                        "type": "object", "properties": {"a": {"$ref": "#/nope"}}}}},
                    {"type": "json_object", "schema": {"type": "object", "properties": {"a": {"enum": []}}}}]


def schema_param(fmt: dict) -> str:
    return ".json_schema.schema" if fmt["type"] == "json_schema" else ".schema"


async def test_a_response_format_whose_schema_no_grammar_takes_is_refused_where_a_run_reads_it(server):
    """The same kind as a client function's schema: a response_format schema no grammar can be made of is a chat
    completion's 400, but an assistant, a thread and a run took it, and the run failed at its first turn. It is
    refused where it is given, and a layer stored with it (by hand) is the run's 400 naming the layer."""
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"model": "stories260K"})
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once"}],
                                                    "assistants": [{"assistant_id": assistant["id"]}]}))["id"]
        threads = (await api.ok("GET", "/v1/threads?limit=100"))["data"]
        for fmt in UNUSABLE_FORMATS:
            tail = schema_param(fmt)
            status, err = await api.post("/v1/chat/completions", {
                "model": "stories260K", "messages": [{"role": "user", "content": "x"}], "response_format": fmt})
            assert status == 400 and err["error"]["code"] == "invalid_schema", err
            entry = [{"assistant_id": assistant["id"], "model": {"id": "stories260K", "parameters": {
                "response_format": fmt}}}]
            for path, body, param in [
                    ("/v1/assistants", {"model": "stories260K", "response_format": fmt}, "response_format"),
                    ("/v1/assistants", {"model": "stories260K", "parameters": {"response_format": fmt}},
                     "parameters.response_format"),
                    (f"/v1/assistants/{assistant['id']}", {"response_format": fmt}, "response_format"),
                    ("/v1/threads", {"assistants": entry}, "assistants[0].model.parameters.response_format"),
                    (f"/v1/threads/{tid}", {"assistants": entry}, "assistants[0].model.parameters.response_format"),
                    (f"/v1/threads/{tid}/runs", {"response_format": fmt, "max_tokens": 2}, "response_format"),
                    ("/v1/threads/runs", {"response_format": fmt, "max_tokens": 2,
                                          "thread": {"messages": [{"role": "user", "content": "Once"}]}},
                     "response_format"),
                    ("/v1/threads/runs", {"max_tokens": 2, "thread": {
                        "assistants": entry, "messages": [{"role": "user", "content": "Once"}]}},
                     "thread.assistants[0].model.parameters.response_format")]:
                status, err = await api.post(path, body)
                assert status == 400 and err["error"]["code"] == "invalid_schema", (path, fmt, err)
                assert err["error"]["param"] == param + tail, (path, err)
            # an assistant file written by hand with it: the run's 400 naming the assistant, nothing written
            file = server.config.data_folder / "assistants" / assistant["id"] / "assistant.json"
            kept = json.loads(file.read_text())
            file.write_text(json.dumps({**kept, "parameters": {"response_format": fmt}}))
            status, err = await api.post(f"/v1/threads/{tid}/runs", {"max_tokens": 2})
            file.write_text(json.dumps(kept))
            assert status == 400 and err["error"]["param"] == "parameters.response_format" + tail, err
            assert f"assistant '{assistant['id']}'" in err["error"]["message"], err
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"] == []
        assert (await api.ok("GET", "/v1/threads?limit=100"))["data"] == threads
        assert (await api.ok("GET", f"/v1/assistants/{assistant['id']}"))["response_format"] == "auto"
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2, "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}})
        assert run["status"] in ("completed", "incomplete"), run
