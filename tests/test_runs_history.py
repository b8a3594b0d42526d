"""The history a run sends to the model: always one that chat templates insisting on user/assistant alternation
render, nothing said lost.

A tiny random-weight model with Mistral Nemo's real chat template, which raises "conversation roles must alternate
user/assistant/..." on two user turns in a row or a conversation that starts with an assistant turn (Llama 2's and
Gemma's do too). An empty reply (a run that ended ``incomplete`` before its turn) is left out of the prompt (a run
cancelled before its first token leaves none), consecutive messages of one role are one turn, and the conversation begins at a
user turn, ``truncation_strategy: last_messages`` included. The ChatService of the server (in this process) is
spied on to read each turn's request, and patched to hang or fail where a test needs a turn to.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from api_helpers import Client, message_text, parse_sse, running
from jan.server.keys import SERVICES
from jan.services.chat import ChatService
from jan.services.runs import prompt_window, renderable
from jan.services.types import ImagePart, TextPart
from jan.testing.gguf_models import write_strict_chat_model
from run_helpers import run_to_end

pytestmark = pytest.mark.timeout(600)

MODEL = "nemo-tiny"
N_CTX = 1024
LONG = " ".join(["lighthouse keeper"] * 60)  # ~300 tokens: over a 256 budget, well within the context


@pytest.fixture(scope="module")
def server(tmp_path_factory, vocab_dir):
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    tmp = tmp_path_factory.mktemp("history")
    path = write_strict_chat_model(tmp / f"{MODEL}.gguf")
    with running(tmp / "data", path, n_ctx=N_CTX) as srv:
        yield srv


@contextlib.contextmanager
def spied(srv):
    """The ChatRequests of the model turns started meanwhile (the server's chat service, patched)."""
    chat: ChatService = srv.app[SERVICES].chat
    seen = []

    def stream(request):
        seen.append(request)
        return ChatService.stream(chat, request)

    chat.stream = stream
    try:
        yield seen
    finally:
        del chat.stream


class _Turn:
    """A model turn that never yields (``hang``) or fails at once (``fail``)."""

    def __init__(self, how: str):
        self.how = how

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.how == "fail":
            raise RuntimeError("the engine broke")
        await asyncio.sleep(3600)
        raise StopAsyncIteration


@contextlib.contextmanager
def next_turn(srv, how: str):
    """The next model turn hangs before its first token, or fails; later ones are the model's."""
    chat: ChatService = srv.app[SERVICES].chat

    def stream(request):
        del chat.stream
        return _Turn(how)

    chat.stream = stream
    try:
        yield
    finally:
        chat.__dict__.pop("stream", None)


def rendered(srv, request) -> str:
    """The prompt text ``request`` renders to (the server's own rendering, on its loop)."""
    chat: ChatService = srv.app[SERVICES].chat
    return asyncio.run_coroutine_threadsafe(chat.render(request), srv._loop).result(60).text


async def new_thread(api: Client, messages: list[dict]) -> str:
    return (await api.ok("POST", "/v1/threads", {"messages": messages}))["id"]


async def messages_of(api: Client, tid: str) -> list[dict]:
    return (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=100"))["data"]


def answered(run: dict) -> None:
    """The run was answered (a reply cut by max_tokens is an answer too), not refused or failed."""
    assert run["status"] in ("completed", "incomplete"), run
    assert run["incomplete_details"] in (None, {"reason": "max_completion_tokens"}), run
    # (OpenAI's statuses on the wire: a reply max_tokens cut is incomplete, as its run)
    assert run["message"]["status"] == run["status"] and run["last_error"] is None, run


def roles(request) -> list[str]:
    return [m.role for m in request.messages]


BODY = {"model": MODEL, "max_tokens": 2, "temperature": 0}


# -- (a) a run that ended incomplete for its prompt budget leaves an empty reply --------------------------------
async def test_after_a_run_refused_for_its_budget_the_next_question_is_answered(server):
    async with Client(server.base_url) as api:
        tid = await new_thread(api, [{"role": "user", "content": LONG}])
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**BODY, "max_prompt_tokens": 256})
        assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_prompt_tokens"}
        assert run["message"]["content"] == [] and run["message"]["status"] == "incomplete"
        assert run["message"]["incomplete_details"] == {"reason": "max_tokens"}  # stored: stopped, max_prompt_tokens
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Tell me a short one."})
        with spied(server) as seen:
            run = await run_to_end(api, f"/v1/threads/{tid}/runs", BODY)
        answered(run)
        # the empty reply is left out and the two questions are one user turn: nothing said is lost
        [request] = seen
        assert roles(request) == ["user"]
        assert request.messages[0].text == f"{LONG}\n\nTell me a short one."
        # and the thread goes on as any: the answer, a question, an answer
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Another?"})
        with spied(server) as seen:
            answered(await run_to_end(api, f"/v1/threads/{tid}/runs", BODY))
        assert roles(seen[0]) == ["user", "assistant", "user"]


async def cancel_before_first_token(api: Client, srv, tid: str) -> dict:
    """A streamed run on ``tid`` whose model turn hangs, cancelled once it is queued, before any token (its
    pending reply, saved before the run's stream begins, is removed then): the cancel's answer (the run)."""
    with next_turn(srv, "hang"):
        async with api.session.post(f"{api.base}/v1/threads/{tid}/runs", json={**BODY, "stream": True}) as resp:
            run_id = None
            async for line in resp.content:
                line = line.decode().strip()
                if run_id is None and line.startswith("data: {") and '"thread.run"' in line:
                    run_id = parse_sse(line)[0][1]["id"]
                if line == "event: thread.run.queued":  # (its turn hangs before the engine starts it)
                    break
            cancelled = await api.ok("POST", f"/v1/threads/{tid}/runs/{run_id}/cancel")
            await resp.read()
    return cancelled


# -- (b) a run cancelled before its first token leaves no reply (OpenAI's); (f) its usage is zero, not null --------
async def test_after_a_run_cancelled_before_its_first_token_the_next_run_is_answered(server):
    async with Client(server.base_url) as api:
        tid = await new_thread(api, [{"role": "user", "content": "Tell me a story."}])
        cancelled = await cancel_before_first_token(api, server, tid)
        assert cancelled["status"] == "cancelled" and cancelled["message"] is None
        assert cancelled["message_id"] is None
        assert [m["role"] for m in await messages_of(api, tid)] == ["user"]
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        assert cancelled["usage"] is not None and {k: cancelled["usage"][k] for k in zero} == zero
        fetched = await api.ok("GET", f"/v1/threads/{tid}/runs/{cancelled['id']}")
        assert {k: fetched["usage"][k] for k in zero} == zero
        [listed] = (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"]
        assert listed["usage"] is not None

        # a new run on the same thread (no message in between), then a question after it
        with spied(server) as seen:
            answered(await run_to_end(api, f"/v1/threads/{tid}/runs", BODY))
        assert roles(seen[0]) == ["user"]
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "And then?"})
        answered(await run_to_end(api, f"/v1/threads/{tid}/runs", BODY))
        # and a question, a run cancelled before its first token, a question (two user turns in a row: no reply between)
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "More?"})
        await cancel_before_first_token(api, server, tid)
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Hello?"})
        with spied(server) as seen:
            answered(await run_to_end(api, f"/v1/threads/{tid}/runs", BODY))
        assert roles(seen[0]) == ["user", "assistant", "user", "assistant", "user"]
        assert seen[0].messages[-1].text == "More?\n\nHello?"


async def test_a_failed_run_tells_zero_usage(server):
    async with Client(server.base_url) as api:
        tid = await new_thread(api, [{"role": "user", "content": "Hi"}])
        with next_turn(server, "fail"):
            run = await run_to_end(api, f"/v1/threads/{tid}/runs", BODY)
        assert run["status"] == "failed" and run["last_error"] is not None, run
        assert run["usage"] is not None and run["usage"]["prompt_tokens"] == 0
        assert run["usage"]["completion_tokens"] == 0 and run["usage"]["total_tokens"] == 0
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"))["usage"]["total_tokens"] == 0
        # the failed reply is not in the next prompt either
        with spied(server) as seen:
            answered(await run_to_end(api, f"/v1/threads/{tid}/runs", BODY))
        assert roles(seen[0]) == ["user"]


# -- (c) several user messages before a run -------------------------------------------------------------------
async def test_user_messages_in_a_row_are_one_turn_and_all_reach_the_prompt(server):
    async with Client(server.base_url) as api:
        first, second, third = "My cat is called Biscuit.", "She is orange.", "What colour is my cat?"
        tid = await new_thread(api, [{"role": "user", "content": first}, {"role": "user", "content": second}])
        with spied(server) as seen:
            run = await run_to_end(api, f"/v1/threads/{tid}/runs",
                                   {**BODY, "instructions": "Be brief.",
                                "additional_messages": [{"role": "user", "content": third}]})
        answered(run)
        [request] = seen
        assert roles(request) == ["system", "user"]
        prompt = rendered(server, request)
        assert prompt.index(first) < prompt.index(second) < prompt.index(third), prompt
        assert f"{first}\n\n{second}\n\n{third}" in prompt
        # what the run used is that prompt (its tokens, as the engine counts them: a BOS or not)
        tokens = await api.ok("POST", "/v1/tokenize", {"model": MODEL, "content": prompt, "add_special": False,
                                                       "parse_special": True})
        assert run["usage"]["prompt_tokens"] in (len(tokens["tokens"]), len(tokens["tokens"]) + 1)
        # the thread keeps its messages as they were sent
        saved = await messages_of(api, tid)
        assert [message_text(m) for m in saved[:3]] == [first, second, third]


# -- (d) last_messages windows --------------------------------------------------------------------------------
def conversation(pairs: int) -> list[dict]:
    messages = []
    for i in range(pairs):
        messages += [{"role": "user", "content": f"Question {i}."}, {"role": "assistant", "content": f"Answer {i}."}]
    return messages + [{"role": "user", "content": "Last question."}]


async def test_last_messages_windows_that_start_at_a_reply_are_answered(server):
    async with Client(server.base_url) as api:
        texts = {}
        for n in (1, 2, 3, 4, 7, 100):
            tid = await new_thread(api, conversation(3))
            with spied(server) as seen:
                run = await run_to_end(api, f"/v1/threads/{tid}/runs", {
                    **BODY, "truncation_strategy": {"type": "last_messages", "last_messages": n}})
            answered(run)
            texts[n] = [m.text for m in seen[0].messages]
        # the N most recent messages, less the replies before their first question
        assert texts[1] == texts[2] == ["Last question."]
        assert texts[3] == texts[4] == ["Question 2.", "Answer 2.", "Last question."]
        assert texts[7] == texts[100] == [m["content"] for m in conversation(3)]


async def test_last_messages_count_the_messages_that_reach_the_prompt(server):
    async with Client(server.base_url) as api:
        tid = await new_thread(api, [{"role": "user", "content": LONG}])
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**BODY, "max_prompt_tokens": 256})
        assert run["incomplete_details"] == {"reason": "max_prompt_tokens"}  # an empty reply, last in the thread
        one = {**BODY, "truncation_strategy": {"type": "last_messages", "last_messages": 1}}
        with spied(server) as seen:
            run = await run_to_end(api, f"/v1/threads/{tid}/runs", one)  # was a 400: the window held only that reply
        answered(run)
        assert [m.text for m in seen[0].messages] == [LONG]
        # a window of a reply alone is widened back to its question: a prompt needs a user turn
        with spied(server) as seen:
            answered(await run_to_end(api, f"/v1/threads/{tid}/runs", one))
        assert roles(seen[0]) == ["user", "assistant"]
        # a thread with nothing to answer stays a clear 400
        empty = await new_thread(api, [{"role": "assistant", "content": "Hello! Ask me anything."}])
        got, err = await api.post(f"/v1/threads/{empty}/runs", one)
        assert got == 400 and err["error"]["code"] == "empty_thread", err


async def test_a_thread_opened_by_an_assistant_greeting_is_answered(server):
    async with Client(server.base_url) as api:
        tid = await new_thread(api, [{"role": "assistant", "content": "Hello! Ask me anything."},
                                     {"role": "user", "content": "Why is the sea salty?"}])
        with spied(server) as seen:
            answered(await run_to_end(api, f"/v1/threads/{tid}/runs", {**BODY, "instructions": "Be brief."}))
        # the greeting stays, as a chat completion keeps it (the template puts an empty user turn first if it must)
        assert roles(seen[0]) == ["system", "assistant", "user"]
        assert seen[0].messages[1].text == "Hello! Ask me anything."
        # a window cut out of the thread still begins at its first question: a reply before it answers one left out
        tid = await new_thread(api, [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"},
                                     {"role": "user", "content": "Why is the sea salty?"}])
        with spied(server) as seen:
            answered(await run_to_end(api, f"/v1/threads/{tid}/runs", {
                **BODY, "truncation_strategy": {"type": "last_messages", "last_messages": 2}}))
        assert roles(seen[0]) == ["user"]


def test_a_greeting_renders_as_a_chat_completion_does_in_a_template_that_wants_a_user_turn_first():
    from jan.templates.chat import ChatTemplate
    from jan.testing.gguf_models import templates_dir

    greeting = [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hello! Ask me anything."},
                {"role": "user", "content": "Why?"}]
    for name in ("google-gemma-2-2b-it.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja"):
        template = ChatTemplate((templates_dir() / name).read_text(encoding="utf-8"), "<s>", "</s>")
        assert template.user_first, name
        prompt = template.render(renderable(greeting))
        assert prompt == template.render(greeting) and "Hello! Ask me anything." in prompt, name


# -- the rules, one by one -------------------------------------------------------------------------------------
def stored(role: str, text: str = "", status: str = "ready", **metadata) -> dict:
    content = [{"type": "text", "text": {"value": text, "annotations": []}}] if text else []
    return {"id": f"msg_{id(content)}", "role": role, "content": content, "status": status, "metadata": metadata}


def test_renderable_joins_turns_of_one_role_and_keeps_tool_rounds_whole():
    call = {"id": "call_1", "type": "function", "function": {"name": "ping", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "S"},
        {"role": "assistant", "content": "Hi!"},  # before the first question: kept (a greeting)
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": "f1"}},
                                     {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "thinking aloud"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "name": "ping", "content": "up"},
        {"role": "assistant", "content": "It is up.", "reasoning_content": "r1"},
        {"role": "assistant", "content": "Really.", "reasoning_content": "r2"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": None, "tool_calls": [{**call, "id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_2", "name": "ping", "content": "down"},
        {"role": "user", "content": "d"},  # after a tool round no reply answered
    ]
    out = renderable(messages)
    assert out.pop(1) == {"role": "assistant", "content": "Hi!"}
    assert [m["role"] for m in out] == ["system", "user", "assistant", "assistant", "tool", "assistant", "user",
                                        "assistant", "tool", "assistant", "user"]
    assert out[1]["content"] == [{"type": "text", "text": "a\n\n"}, {"type": "image_file", "image_file": {"file_id": "f1"}},
                                 {"type": "text", "text": "b"}]
    assert out[2]["content"] == "thinking aloud" and out[3]["tool_calls"] == [call]  # a call turn is never joined
    assert out[5] == {"role": "assistant", "content": "It is up.\n\nReally.", "reasoning_content": "r1\n\nr2"}
    assert out[9] == {"role": "assistant", "content": [{"type": "text", "text": ""}]}  # closes the round
    assert renderable([{"role": "assistant", "content": "x"}]) == [{"role": "assistant", "content": "x"}]
    assert renderable([{"role": "tool", "tool_call_id": "x", "content": "y"}, {"role": "user", "content": "q"}]) \
        == [{"role": "user", "content": "q"}]


def test_prompt_window_counts_what_reaches_the_prompt_and_holds_a_question():
    history = [stored("user", "q1"), stored("assistant", "a1"), stored("user", "q2"),
               stored("assistant", stop_reason="max_prompt_tokens", status="stopped"),  # empty: not counted
               stored("assistant", "partial", status="error"), stored("user", "q3"), stored("assistant", "a3")]

    def texts(window):
        return [message_text(m) for m in window]

    assert texts(prompt_window(history)) == ["q1", "a1", "q2", "q3", "a3"]
    assert texts(prompt_window(history, 2)) == ["q3", "a3"]
    assert texts(prompt_window(history, 1)) == ["q3", "a3"]  # widened back to the question
    assert texts(prompt_window(history, 3)) == ["q2", "q3", "a3"]
    assert texts(prompt_window(history, 4)) == ["q2", "q3", "a3"]  # a1 answers a question the window left out
    assert texts(prompt_window([stored("assistant", "hi"), stored("assistant", "hello")], 1)) == ["hello"]


def test_typed_history_of_joined_turns_keeps_images_in_order():
    from jan.services.runs import history_messages

    history = [{"id": "m1", "role": "user", "status": "ready", "metadata": {},
                "content": [{"type": "text", "text": {"value": "look", "annotations": []}},
                            {"type": "image_file", "image_file": {"file_id": "f1"}}]},
               {"id": "m2", "role": "user", "status": "ready", "metadata": {},
                "content": [{"type": "text", "text": {"value": "and this", "annotations": []}},
                            {"type": "image_file", "image_file": {"file_id": "f2"}}]}]
    images = {"f1": ImagePart(b"1", "image/png"), "f2": ImagePart(b"2", "image/png")}
    [message] = history_messages(history, "", images)
    assert message.role == "user"
    assert message.content == (TextPart("look"), images["f1"], TextPart("\n\nand this"), images["f2"])
