"""OpenAI Conversations (/v1/conversations) and the Responses API's ``conversation``, driven by the official openai
client against a real server.

A conversation is a Jan thread: the tests read it back through Jan's own thread API too.
"""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import openai
import pytest

from dialect_helpers import openai_client
from jan.server.config import ServerConfig
from jan.testing.server import ServerThread

MAX_TOKENS = 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tmp_path_factory.mktemp("conversations") / "data"


@pytest.fixture(scope="module")
def server(data, stories_path):
    config = ServerConfig(data_folder=data, models=[str(stories_path)], n_ctx=2048, n_parallel=2, n_threads=1)
    srv = ServerThread(config).__enter__()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def _http(server) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=120)


def _user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _texts(items) -> list[tuple[str, str, str]]:
    """(type, role or call id, text) of each item."""
    out = []
    for item in items:
        if item.type == "message":
            out.append(("message", item.role, "".join(getattr(p, "text", "") or "" for p in item.content)))
        elif item.type == "function_call":
            out.append(("function_call", item.call_id, item.arguments))
        elif item.type == "function_call_output":
            out.append(("function_call_output", item.call_id, item.output))
        else:
            out.append((item.type, "", "".join(p.text for p in item.content or ())))
    return out


def _all(client, conversation_id: str) -> list:
    return list(client.conversations.items.list(conversation_id, order="asc", limit=100))


# -- the conversation object ------------------------------------------------------------------------
def test_create_retrieve_update_delete(client, server):
    conv = client.conversations.create(metadata={"topic": "demo"})
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "demo"} and conv.created_at > 0
    again = client.conversations.retrieve(conv.id)
    assert again.model_dump() == conv.model_dump()

    updated = client.conversations.update(conv.id, metadata={"topic": "billing", "status": "open"})
    assert updated.metadata == {"topic": "billing", "status": "open"}
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "billing", "status": "open"}

    # the conversation is a Jan thread (the web page lists it), its metadata the thread's, titled by its first
    # user turn
    with _http(server) as http:
        thread = http.get(f"/v1/threads/{conv.id}").json()
        assert thread["id"] == conv.id and thread["metadata"] == {"topic": "billing", "status": "open"}
        assert thread["title"] == "New conversation"
        client.conversations.items.create(conv.id, items=[_user("What is   the weather?")])
        assert http.get(f"/v1/threads/{conv.id}").json()["title"] == "What is the weather?"
        client.conversations.items.create(conv.id, items=[_user("Another")])
        assert http.get(f"/v1/threads/{conv.id}").json()["title"] == "What is the weather?"
        deleted = client.conversations.delete(conv.id)
        assert deleted.id == conv.id and deleted.deleted is True and deleted.object == "conversation.deleted"
        assert http.get(f"/v1/threads/{conv.id}").status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.delete(conv.id)


def test_items_on_create_list_and_paginate(client):
    conv = client.conversations.create(items=[
        {"type": "message", "role": "developer", "content": "Be brief."},
        _user("one"),
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "two"}]},
        _user("three"),
    ])
    items = _all(client, conv.id)
    # (a developer message is kept as one: listed with the role it was sent with)
    assert _texts(items) == [("message", "developer", "Be brief."), ("message", "user", "one"),
                             ("message", "assistant", "two"), ("message", "user", "three")]
    assert items[2].content[0].type == "output_text" and items[1].content[0].type == "input_text"
    assert all(item.status == "completed" for item in items)

    # desc by default; ids stable across reads
    desc = client.conversations.items.list(conv.id)
    assert [i.id for i in desc.data] == [i.id for i in reversed(items)]
    assert desc.has_more is False and desc.first_id == items[-1].id and desc.last_id == items[0].id

    # limit and the after cursor, page by page (the SDK follows last_id)
    first = client.conversations.items.list(conv.id, order="asc", limit=3)
    assert [i.id for i in first.data] == [i.id for i in items[:3]] and first.has_more is True
    second = client.conversations.items.list(conv.id, order="asc", limit=3, after=first.last_id)
    assert [i.id for i in second.data] == [items[3].id] and second.has_more is False
    assert [i.id for i in client.conversations.items.list(conv.id, order="asc", limit=1)] == [i.id for i in items]
    back = client.conversations.items.list(conv.id, order="desc", limit=2, after=items[2].id)
    assert [i.id for i in back.data] == [items[1].id, items[0].id]


def test_add_retrieve_and_delete_items(client):
    conv = client.conversations.create(items=[_user("hello")])
    added = client.conversations.items.create(conv.id, items=[
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q": "x"}'},
        {"type": "function_call", "call_id": "call_2", "name": "lookup", "arguments": '{"q": "y"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "found x"},
        {"type": "function_call_output", "call_id": "call_2", "output": "found y"},
    ])
    assert added.object == "list"
    assert _texts(added.data) == [("message", "assistant", "calling"), ("function_call", "call_1", '{"q": "x"}'),
                                  ("function_call", "call_2", '{"q": "y"}'),
                                  ("function_call_output", "call_1", "found x"),
                                  ("function_call_output", "call_2", "found y")]
    items = _all(client, conv.id)
    assert [i.id for i in items[1:]] == [i.id for i in added.data]  # the created ids are the listed ones
    assert len({i.id for i in items}) == len(items)

    call = client.conversations.items.retrieve(added.data[2].id, conversation_id=conv.id)
    assert call.type == "function_call" and call.call_id == "call_2" and call.name == "lookup"

    # removing one call of a turn keeps the turn's other items, with their ids
    result = client.conversations.items.delete(added.data[1].id, conversation_id=conv.id)
    assert result.id == conv.id and result.object == "conversation"
    left = _all(client, conv.id)
    assert [i.id for i in left] == [items[0].id, items[1].id, items[3].id, items[4].id, items[5].id]
    client.conversations.items.delete(items[0].id, conversation_id=conv.id)
    assert [i.id for i in _all(client, conv.id)] == [items[1].id, items[3].id, items[4].id, items[5].id]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(items[0].id, conversation_id=conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(items[0].id, conversation_id=conv.id)


def test_reasoning_and_images_round_trip(client):
    url = _png()
    conv = client.conversations.create(items=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "see"},
                                                        {"type": "input_image", "image_url": url, "detail": "auto"}]},
        {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "red square"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is red."}]},
    ])
    items = _all(client, conv.id)
    assert [i.type for i in items] == ["message", "reasoning", "message"]
    image = items[0].content[1]
    assert image.type == "input_image" and image.image_url.startswith("data:image/png;base64,")
    assert items[1].content[0].text == "red square"
    assert items[2].content[0].text == "It is red."
    # deleting the reasoning leaves the answer
    client.conversations.items.delete(items[1].id, conversation_id=conv.id)
    assert [i.id for i in _all(client, conv.id)] == [items[0].id, items[2].id]


def test_an_image_sent_as_an_upload_lists_its_file_id_and_stays_after_the_file_is_deleted(client):
    """An input_image given by file_id read back as a data URL with file_id null: the client's reference was lost
    (OpenAI lists it). It lists the file_id as sent, with the image, which the conversation keeps."""
    import base64

    png = base64.b64decode(_png().partition(",")[2])
    uploaded = client.files.create(file=("red.png", png, "image/png"), purpose="vision")
    conv = client.conversations.create(items=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "see"},
                                                        {"type": "input_image", "file_id": uploaded.id,
                                                         "detail": "low"}]}])
    image = _all(client, conv.id)[0].content[1]
    assert image.type == "input_image" and image.file_id == uploaded.id and image.detail == "low", image
    assert image.image_url.startswith("data:image/png;base64,"), image
    # the upload deleted, the conversation still holds (and lists) its image
    client.files.delete(uploaded.id)
    again = _all(client, conv.id)[0].content[1]
    assert again.file_id == uploaded.id and again.image_url == image.image_url, again
    # an image sent as a data URL has no file to name
    other = client.conversations.create(items=[_user("hi") | {"content": [
        {"type": "input_image", "image_url": _png(), "detail": "auto"}]}])
    assert _all(client, other.id)[0].content[0].file_id is None


def test_a_stored_image_link_is_listed_as_an_input_image_by_its_url(server, client):
    """A message of the conversation's thread holding an image link (an ``image_url`` part the store keeps as given:
    ``https://...``, written by the library, an import, a hand edit) was listed without it, an item of the text alone (or no item): it is the
    ``input_image`` whose ``image_url`` is the link, as the Responses API lists one, in the listing and the item
    alike, nothing fetched; the other parts beside it as they are."""
    from jan.store import DataFolder

    conv = client.conversations.create(items=[_user("first")])
    link = "https://images.example.com/cat.png"
    folder = DataFolder(server.config.data_folder)  # (the library keeps a link as given; the server fetches one)
    folder.messages.create(conv.id, "user", [{"type": "text", "text": "what is this"},
                                             {"type": "image_url", "image_url": {"url": link, "detail": "low"}},
                                             {"type": "image_url", "image_url": {"url": _png()}}])
    folder.messages.create(conv.id, "user", [{"type": "image_url", "image_url": {"url": link}}])
    items = _all(client, conv.id)
    assert len(items) == 3, items
    text, image, data = items[1].content
    assert (text.type, text.text) == ("input_text", "what is this")
    assert (image.type, image.image_url, image.detail, image.file_id) == ("input_image", link, "low", None), image
    assert data.type == "input_image" and data.image_url.startswith("data:image/png;base64,"), data
    [only] = items[2].content
    assert (only.type, only.image_url, only.detail) == ("input_image", link, "auto"), only
    assert client.conversations.items.retrieve(items[2].id, conversation_id=conv.id).content[0].image_url == link


# -- responses in a conversation ----------------------------------------------------------------------
def _answer(response) -> str:
    return "".join(p.text for item in response.output if item.type == "message" for p in item.content)


def test_responses_in_a_conversation(client, server):
    conv = client.conversations.create(items=[{"type": "message", "role": "developer", "content": "Tell stories."}])
    first = client.responses.create(model="stories260K", conversation=conv.id, input="Once upon",
                                    max_output_tokens=MAX_TOKENS, temperature=0)
    assert first.conversation is not None and first.conversation.id == conv.id
    second = client.responses.create(model="stories260K", conversation={"id": conv.id}, input="Then",
                                     max_output_tokens=MAX_TOKENS, temperature=0)
    assert second.conversation.id == conv.id
    items = _all(client, conv.id)
    assert _texts(items) == [("message", "developer", "Tell stories."), ("message", "user", "Once upon"),
                             ("message", "assistant", _answer(first)), ("message", "user", "Then"),
                             ("message", "assistant", _answer(second))]
    # the second response read the first's turns: its prompt is longer by them
    assert second.usage.input_tokens > first.usage.input_tokens

    # the history was read: the same prompt by hand gives the same answer
    manual = client.responses.create(model="stories260K", input=[
        {"type": "message", "role": "developer", "content": "Tell stories."},
        {"type": "message", "role": "user", "content": "Once upon"},
        {"type": "message", "role": "assistant", "content": _answer(first)},
        {"type": "message", "role": "user", "content": "Then"}], max_output_tokens=MAX_TOKENS, temperature=0,
        store=False)
    assert _answer(manual) == _answer(second) and manual.usage.input_tokens == second.usage.input_tokens

    # a stored response of a conversation is retrievable, and continuing it by previous_response_id forks: the
    # conversation keeps only its own responses' turns
    assert client.responses.retrieve(second.id).conversation.id == conv.id
    client.responses.create(model="stories260K", previous_response_id=second.id, input="Fork",
                            max_output_tokens=MAX_TOKENS, temperature=0)
    assert len(_all(client, conv.id)) == 5


def test_listed_items_are_input_again(client):
    """What the Agents SDK's session does: the items listed are sent back as a response's input, unchanged."""
    conv = client.conversations.create(items=[
        _user("hi"),
        {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "a call"}]},
        {"type": "function_call", "call_id": "call_9", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_9", "output": "done"},
    ])
    items = [item.model_dump() for item in _all(client, conv.id)]  # (all fields, None ones too: the SDK's dump)
    assert [i["type"] for i in items] == ["message", "reasoning", "function_call", "function_call_output"]
    response = client.responses.create(model="stories260K", input=items, max_output_tokens=2, store=False)
    within = client.responses.create(model="stories260K", conversation=conv.id, input=[], max_output_tokens=2,
                                     store=False)
    assert response.usage.input_tokens == within.usage.input_tokens


def test_a_session_as_the_agents_sdk_keeps_one(server):
    """What the Agents SDK's OpenAIConversationsSession calls, in its order: a conversation made with no items, the
    turn's input and the response's output items added as it dumps them, read back (all, or the last by a desc
    page of one) and popped."""
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        session = (await client.conversations.create(items=[])).id

        async def get_items(limit=None) -> list[dict]:
            if limit is None:
                return [i.model_dump() async for i in client.conversations.items.list(session, order="asc")]
            out = []
            async for item in client.conversations.items.list(session, limit=limit, order="desc"):
                out.append(item.model_dump())
                if len(out) >= limit:
                    break
            return out[::-1]

        for turn in ("Hi", "More"):
            new = [{"role": "user", "content": turn}]  # (the Runner's input items: no type)
            response = await client.responses.create(model="stories260K", input=[*await get_items(), *new],
                                                     max_output_tokens=MAX_TOKENS, temperature=0)
            await client.conversations.items.create(session, items=[
                *new, *(item.model_dump(exclude_unset=True) for item in response.output)])
        items = await get_items()
        assert [(i["type"], i["role"]) for i in items] == [("message", "user"), ("message", "assistant")] * 2
        assert items[3]["content"][0]["text"] == response.output_text
        last = (await get_items(limit=1))[0]
        assert last == items[-1]
        await client.conversations.items.delete(last["id"], conversation_id=session)
        assert await get_items() == items[:-1]
        await client.conversations.delete(session)
        with pytest.raises(openai.NotFoundError):
            await client.conversations.items.list(session)
        await client.close()

    asyncio.run(go())


WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather of a city.", "strict": True,
                "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                               "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}}}}


def test_a_tool_round_trip_as_the_agents_sdk_runs_one_in_a_conversation(client):
    """What the Agents SDK's Runner.run(..., conversation_id=...) sends: the turn's input with ``conversation``, the
    model's forced call, then only the call's output (the conversation holds the rest). The items a response adds
    are its output items, ids and statuses as the response said them (OpenAI's: the same items)."""
    conv = client.conversations.create()
    settings = {"model": "stories260K", "conversation": conv.id, "tools": [WEATHER_TOOL], "parallel_tool_calls": False,
                "temperature": 0, "instructions": "Use tools."}
    first = client.responses.create(input=[{"role": "user", "content": "Weather in Paris?"}], tool_choice="required",
                                    **settings)
    assert first.status == "completed" and [o.type for o in first.output] == ["function_call"]
    call = first.output[0]
    second = client.responses.create(input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "sunny"}], tool_choice="none", max_output_tokens=MAX_TOKENS,
                                     **settings)
    assert second.status == "incomplete" and second.output[-1].status == "incomplete"  # (its token limit)
    items = _all(client, conv.id)
    assert _texts(items) == [("message", "user", "Weather in Paris?"), ("function_call", call.call_id, call.arguments),
                             ("function_call_output", call.call_id, "sunny"),
                             ("message", "assistant", _answer(second))]
    # the response's output items are the conversation's: same ids, same statuses (the answer cut off)
    assert (items[1].id, items[1].status) == (call.id, "completed")
    assert (items[3].id, items[3].status) == (second.output[-1].id, "incomplete")
    assert client.conversations.items.retrieve(call.id, conversation_id=conv.id).call_id == call.call_id
    # the history was read: the second prompt is the whole exchange, as sent by hand
    by_hand = client.responses.input_tokens.count(
        model="stories260K", instructions="Use tools.", tools=[WEATHER_TOOL], parallel_tool_calls=False,
        tool_choice="none", input=[{"role": "user", "content": "Weather in Paris?"}, call.model_dump(),
                                   {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.usage.input_tokens == by_hand.input_tokens
    # an unstored response's output is found by its id in the conversation (no stored response holds it)
    unstored = client.responses.create(input="More", store=False, max_output_tokens=2, **settings)
    again = client.responses.input_tokens.count(model="stories260K", conversation=conv.id,
                                                input=[{"type": "item_reference", "id": unstored.output[-1].id}])
    assert again.input_tokens > 0
    # deleting the answer by the response's id leaves the rest
    client.conversations.items.delete(second.output[-1].id, conversation_id=conv.id)
    assert [i.id for i in _all(client, conv.id)][:3] == [i.id for i in items[:3]]
    assert second.output[-1].id not in [i.id for i in _all(client, conv.id)]


def test_an_item_reference_names_a_conversation_item(client):
    conv = client.conversations.create(items=[_user("remember this")])
    item = _all(client, conv.id)[0]
    # (counted: a response made would add its turn to the conversation)
    by_reference = client.responses.input_tokens.count(model="stories260K", conversation=conv.id,
                                                       input=[{"type": "item_reference", "id": item.id}])
    by_value = client.responses.input_tokens.count(model="stories260K", conversation=conv.id,
                                                   input=[_user("remember this")])
    assert by_reference.input_tokens == by_value.input_tokens
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="stories260K", conversation=conv.id, max_output_tokens=2,
                                input=[{"type": "item_reference", "id": "msg_nothere"}])
    assert err.value.body["param"] == "input[0].id"


def test_streamed_and_unstored_responses_join_the_conversation(client):
    conv = client.conversations.create()
    events = list(client.responses.create(model="stories260K", conversation=conv.id, input="Hello", stream=True,
                                          max_output_tokens=MAX_TOKENS, temperature=0))
    final = events[-1].response  # (response.incomplete: the token limit cut the story off)
    assert events[-1].type in ("response.completed", "response.incomplete") and final.conversation.id == conv.id
    # store: false keeps no response, yet its items join the conversation (OpenAI's)
    unstored = client.responses.create(model="stories260K", conversation=conv.id, input="Again", store=False,
                                       max_output_tokens=MAX_TOKENS, temperature=0)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    assert _texts(_all(client, conv.id)) == [("message", "user", "Hello"), ("message", "assistant", _answer(final)),
                                              ("message", "user", "Again"),
                                              ("message", "assistant", _answer(unstored))]


def test_a_background_response_cancelled_adds_its_input_and_what_it_said(client):
    conv = client.conversations.create()
    response = client.responses.create(model="stories260K", conversation=conv.id, input="Long story",
                                       background=True, max_output_tokens=1000)
    try:
        cancelled = client.responses.cancel(response.id)
    except openai.BadRequestError:  # it ended before the cancel came (a fast machine)
        cancelled = client.responses.retrieve(response.id)
    assert cancelled.status in ("cancelled", "completed", "incomplete") and cancelled.conversation.id == conv.id
    items = _all(client, conv.id)
    assert _texts(items[:1]) == [("message", "user", "Long story")] and len(items) <= 2
    if len(items) == 2:  # it had begun to answer: its answer is kept, cut off
        assert items[1].role == "assistant"
        # (cut off either way: by the cancel, or by its token limit; completed only when it ended by itself)
        assert items[1].status == ("incomplete" if cancelled.status in ("cancelled", "incomplete") else "completed")
        assert _texts(items[1:])[0][2] == _answer(cancelled)


def test_concurrent_responses_do_not_interleave(server):
    # one response at a time in a conversation, as OpenAI's API: those asked while another is being made are a 400
    # conversation_locked (tests/test_responses_conversation_lock.py); whichever ran, each turn is whole and in order
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        conv = await client.conversations.create()
        answers = await asyncio.gather(*(client.responses.create(
            model="stories260K", conversation=conv.id, input=f"turn {k}", max_output_tokens=MAX_TOKENS,
            temperature=0) for k in range(3)), return_exceptions=True)
        made = {k: a for k, a in enumerate(answers) if not isinstance(a, BaseException)}
        for answer in answers:
            if isinstance(answer, BaseException):
                assert isinstance(answer, openai.BadRequestError) and answer.code == "conversation_locked", answer
        assert made
        items = [i async for i in client.conversations.items.list(conv.id, order="asc", limit=100)]
        assert len(items) == 2 * len(made)
        pairs = [(items[k], items[k + 1]) for k in range(0, len(items), 2)]
        by_input = {_texts([u])[0][2]: _texts([a])[0] for u, a in pairs}
        for k, answer in made.items():
            assert by_input[f"turn {k}"] == ("message", "assistant", _answer(answer))
        await client.close()

    asyncio.run(go())


# -- refusals -----------------------------------------------------------------------------------------
def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_conversation_parameter_refusals(client, server):
    conv = client.conversations.create()
    with _http(server) as http:
        both = http.post("/v1/responses", json={"model": "stories260K", "input": "hi", "conversation": conv.id,
                                                "previous_response_id": "resp_abc"})
        error = _error(both, 400)
        assert error["param"] == "conversation" and "Mutually exclusive" in error["message"]
        unknown = _error(http.post("/v1/responses", json={"model": "stories260K", "input": "hi",
                                                          "conversation": "conv_00000000000000000000000000"}), 404)
        assert unknown["param"] == "conversation" and "not found" in unknown["message"]
        bad = _error(http.post("/v1/responses", json={"model": "stories260K", "input": "hi",
                                                      "conversation": "../etc"}), 400)
        assert bad["param"] == "conversation"
        # an id with a line end after it is no id either (a regex's "$" took one for its end): refused as one, in
        # OpenAI's words, never as a thread id the conversation's hold cannot name
        newline = _error(http.post("/v1/responses", json={"model": "stories260K", "input": "hi",
                                                          "conversation": conv.id + "\n"}), 400)
        assert newline["param"] == "conversation" and newline["code"] == "invalid_value", newline
        assert _error(http.post("/v1/responses", json={"model": "stories260K", "input": "hi",
                                                       "conversation": {"id": 5}}), 400)["param"].startswith("conversation")
        # nothing was added to the conversation by the refused requests
        assert http.get(f"/v1/conversations/{conv.id}/items").json()["data"] == []
        # counted tokens read the conversation too
        client.conversations.items.create(conv.id, items=[_user("a long first turn of the conversation")])
        alone = http.post("/v1/responses/input_tokens", json={"model": "stories260K", "input": "hi"}).json()
        within = http.post("/v1/responses/input_tokens", json={"model": "stories260K", "input": "hi",
                                                                "conversation": conv.id}).json()
        assert within["input_tokens"] > alone["input_tokens"]


@pytest.mark.parametrize("body, param", [
    ({"items": [_user(str(k)) for k in range(21)]}, "items"),
    ({"items": [{"type": "item_reference", "id": "msg_1"}]}, "items[0].id"),  # (no item of that id is stored)
    ({"items": [{"type": "mystery"}]}, "items[0]"),
    ({"items": [{"type": "message", "role": "user", "content": 5}]}, "items[0].content"),
    ({"items": [{"type": "message", "role": "user", "content": [
        {"type": "input_file", "file_data": "%%%", "filename": "a.txt"}]}]}, "items[0].content[0].file_data"),
    ({"items": [{"type": "message", "role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,@@"}]}]}, "items[0].content[0].image_url"),
    # an image the thread store cannot keep, said of the item (the store names its own message's part)
    ({"items": [_user("a"), {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "b"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}, "items[1].content[1].image_url"),
    ({"items": [{"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": [
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}, "items[1].output[0].image_url"),
    ({"items": [{"type": "message", "role": "assistant", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}, "items[0].content[0]"),
    ({"metadata": {str(k): "v" for k in range(17)}}, "metadata"),
    ({"metadata": {"k" * 65: "v"}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata"),
    ({"metadata": {"k": 1}}, "metadata"),
    ({"items": "hello"}, "items"),
    ({"unknown_field": 1}, "unknown_field"),
])
def test_bad_create_bodies(server, body, param):
    with _http(server) as http:
        before = len(http.get("/v1/threads", params={"limit": 100}).json()["data"])
        error = _error(http.post("/v1/conversations", json=body), 400)
        assert error["param"] is not None and error["param"].startswith(param), error
        assert len(http.get("/v1/threads", params={"limit": 100}).json()["data"]) == before  # nothing made


def _png() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_a_refused_image_names_its_item_in_a_response_too(client):
    # (the items' field names are the one reading's: a call's output after the call is input[1].output, never a
    # field of the turn the call joined)
    with pytest.raises(openai.BadRequestError) as err:  # stories260K reads no images
        client.responses.create(model="stories260K", max_output_tokens=2, input=[
            {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": [
                {"type": "input_image", "image_url": _png(), "detail": "auto"}]}])
    assert err.value.body["param"].startswith("input[1].output"), err.value.body


def test_bad_paths_queries_and_item_bodies(client, server):
    conv = client.conversations.create(items=[_user("x")])
    with _http(server) as http:
        assert _error(http.get("/v1/conversations/nope"), 400)["param"] == "conversation_id"
        assert _error(http.get("/v1/conversations/thread_1"), 400)["param"] == "conversation_id"
        assert _error(http.get("/v1/conversations/conv_0000000000000000000000000A"), 404)["code"] == "not_found"
        assert _error(http.get("/v1/conversations/conv_0000000000000000000000000A/items"), 404)
        assert _error(http.post("/v1/conversations/conv_0000000000000000000000000A/items",
                                json={"items": [_user("x")]}), 404)
        items = f"/v1/conversations/{conv.id}/items"
        assert _error(http.get(items, params={"limit": 0}), 400)["param"] == "limit"
        assert _error(http.get(items, params={"limit": 101}), 400)["param"] == "limit"
        assert _error(http.get(items, params={"order": "up"}), 400)["param"] == "order"
        assert _error(http.get(items, params={"after": "msg_unknown"}), 400)["param"] == "after"
        assert _error(http.get(items, params={"include[]": "nonsense"}), 400)["param"] == "include"
        assert http.get(items, params={"include[]": "message.input_image.image_url"}).status_code == 200
        assert _error(http.get(f"{items}/..%2F..%2Fx"), 400)["param"] == "item_id"
        assert _error(http.get(f"{items}/msg_unknown%0A"), 400)["param"] == "item_id"  # (a line end after it)
        assert _error(http.get(f"{items}/msg_unknown"), 404)
        assert _error(http.post(items, json={"items": []}), 400)["param"].startswith("items")
        assert _error(http.post(items, json={}), 400)["param"] == "items"
        assert _error(http.post(items, json={"items": [_user(str(k)) for k in range(21)]}), 400)["param"] == "items"
        # nothing of a refused batch is kept
        assert _error(http.post(items, json={"items": [_user("ok"), {"type": "item_reference", "id": "msg_1"}]}), 400)
        assert len(http.get(items).json()["data"]) == 1
        assert _error(http.post(f"/v1/conversations/{conv.id}", json={}), 400)["param"] == "metadata"
        assert _error(http.post(f"/v1/conversations/{conv.id}", json={"metadata": {"k": 2}}), 400)["param"] == "metadata"
        assert http.post(f"/v1/conversations/{conv.id}", json={"metadata": None}).json()["metadata"] == {}


def test_a_damaged_thread_is_read_as_the_store_reads_one(client, server, data):
    torn, gone = client.conversations.create(items=[_user("one")]), client.conversations.create(items=[_user("two")])
    folder = {p.name: p for p in (data / "threads").rglob("conv_*") if p.is_dir()}
    with (folder[torn.id] / "messages.jsonl").open("ab") as f:
        f.write(b'{"id": "msg_torn", "role": "us')  # a write cut off: the line is skipped
    assert _texts(_all(client, torn.id)) == [("message", "user", "one")]
    client.responses.create(model="stories260K", conversation=torn.id, input="next", max_output_tokens=2)
    assert [t[:2] for t in _texts(_all(client, torn.id))] == [("message", "user"), ("message", "user"),
                                                              ("message", "assistant")]
    (folder[gone.id] / "thread.json").write_text("{torn")  # set aside: the conversation is gone
    with _http(server) as http:
        assert _error(http.get(f"/v1/conversations/{gone.id}"), 404)["code"] == "not_found"
        assert _error(http.get(f"/v1/conversations/{gone.id}/items"), 404)
        assert _error(http.post("/v1/responses", json={"model": "stories260K", "input": "x",
                                                       "conversation": gone.id}), 404)["param"] == "conversation"


def test_without_a_conversation_store_a_503(client, server):
    conv = client.conversations.create(items=[_user("kept")])
    with _http(server) as http:
        assert http.post("/v1/extensions/conversational/disable", json={}).status_code == 200
        try:
            assert _error(http.post("/v1/conversations", json={}), 503)
            assert _error(http.get(f"/v1/conversations/{conv.id}/items"), 503)
            assert _error(http.post("/v1/responses", json={"model": "stories260K", "input": "x", "store": False,
                                                           "conversation": conv.id}), 503)
        finally:
            assert http.post("/v1/extensions/conversational/enable", json={}).status_code == 200
    assert _texts(_all(client, conv.id)) == [("message", "user", "kept")]


def test_documented(server):
    with _http(server) as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert {"post"} <= set(paths["/v1/conversations"])
    assert {"get", "post", "delete"} <= set(paths["/v1/conversations/{conversation_id}"])
    assert {"get", "post"} <= set(paths["/v1/conversations/{conversation_id}/items"])
    assert {"get", "delete"} <= set(paths["/v1/conversations/{conversation_id}/items/{item_id}"])


def test_a_conversations_items_and_a_responses_input_items_page_alike(client, server):
    # one page reader for both lists (jan.server.item_lists): the same five user turns, read in both orders, with
    # the cursors each list takes; an unknown cursor is a 400 naming it, an empty one is none
    texts = [f"turn {k}" for k in range(5)]
    conv = client.conversations.create(items=[_user(t) for t in texts])
    response = client.responses.create(model="stories260K", input=[_user(t) for t in texts], max_output_tokens=1)
    lists = {"items": f"/v1/conversations/{conv.id}/items", "input_items": f"/v1/responses/{response.id}/input_items"}
    with _http(server) as http:
        for name, path in lists.items():
            def read(**query) -> tuple[list[str], dict]:
                body = http.get(path, params=query).json()
                return ["".join(p["text"] for p in item["content"]) for item in body["data"]], body

            assert read(order="asc")[0] == texts, name
            assert read()[0] == texts[::-1], name  # desc by default
            ids = [item["id"] for item in http.get(path, params={"order": "asc"}).json()["data"]]
            page, body = read(order="asc", limit=2, after=ids[1])
            assert page == texts[2:4] and body["has_more"] and (body["first_id"], body["last_id"]) == (ids[2], ids[3])
            page, body = read(order="desc", limit=2, after=ids[1])
            assert page == [texts[0]] and not body["has_more"], name
            assert read(order="asc", after="")[0] == texts, name
            error = _error(http.get(path, params={"after": ids[0] + "X"}), 400)
            assert (error["param"], error["code"]) == ("after", "invalid_value"), name
        # before: the input items' (OpenAI's), not the conversation items'
        ids = [item["id"] for item in http.get(lists["input_items"], params={"order": "asc"}).json()["data"]]
        body = http.get(lists["input_items"], params={"order": "asc", "before": ids[2]}).json()
        assert [item["id"] for item in body["data"]] == ids[:2]
        assert _error(http.get(lists["input_items"], params={"before": "msg_nope"}), 400)["param"] == "before"


# -- one item, one id; what a response read, listed --------------------------------------------------------
def _ids(page) -> list[str]:
    return [item.id for item in page]


def test_a_response_in_a_conversation_lists_the_items_it_read_under_their_ids(client):
    """The items a response adds to its conversation are its input items with their ids (before, the conversation
    gave its input new ones); its ``input_items`` are the conversation's items it read, then its input (OpenAI's:
    "items from this conversation are prepended to input_items"), each with the one id it has there."""
    conv = client.conversations.create(items=[{"type": "message", "role": "developer", "content": "Tell stories."}])
    first = client.responses.create(model="stories260K", conversation=conv.id, max_output_tokens=2,
                                    input=[_user("Once"), {"type": "message", "role": "user", "id": "msg_mine1",
                                                           "content": "upon"}])
    items = _all(client, conv.id)
    listed = list(client.responses.input_items.list(first.id, order="asc"))
    assert _ids(listed) == _ids(items[:3]) and listed[2].id == "msg_mine1"
    assert items[3].id == first.output[-1].id
    # the next one read all four: they come first in its input items, with the conversation's ids
    second = client.responses.create(model="stories260K", conversation=conv.id, input="Then", max_output_tokens=2)
    items = _all(client, conv.id)
    assert _ids(client.responses.input_items.list(second.id, order="asc")) == _ids(items[:5])
    # an id sent that the conversation has already is given anew, the same in both lists: ids stay unique
    third = client.responses.create(model="stories260K", conversation=conv.id, max_output_tokens=2,
                                    input=[{"type": "message", "role": "user", "id": "msg_mine1", "content": "again"}])
    items = _all(client, conv.id)
    assert len({i.id for i in items}) == len(items)
    again = list(client.responses.input_items.list(third.id, order="asc"))[-1]
    assert again.id != "msg_mine1" and again.id == items[-2].id
    assert client.conversations.items.retrieve(again.id, conversation_id=conv.id).content[0].text == "again"
    # one id sent twice in one input, and one that cannot name an item: each item is listed under one id, the same
    # in both lists
    fourth = client.responses.create(model="stories260K", conversation=conv.id, max_output_tokens=2, input=[
        {"type": "message", "role": "user", "id": "msg_dup", "content": "a"},
        {"type": "message", "role": "user", "id": "msg_dup", "content": "b"},
        {"type": "message", "role": "user", "id": "no good/id", "content": "c"}])
    mine = list(client.responses.input_items.list(fourth.id, order="asc", limit=100))[-3:]
    held = {i.id: i for i in _all(client, conv.id)}
    assert mine[0].id == "msg_dup" and len({i.id for i in mine}) == 3
    assert [held[i.id].content[0].text for i in mine] == ["a", "b", "c"]
    # an item the conversation no longer holds is no longer listed as read
    client.conversations.items.delete(items[1].id, conversation_id=conv.id)
    assert items[1].id not in _ids(client.responses.input_items.list(second.id, order="asc"))


def test_a_continued_response_lists_the_responses_it_continues(client):
    """``previous_response_id``: a response's input items are the earlier responses' input and output items, then
    its own (the whole conversation the model read), with their ids."""
    first = client.responses.create(model="stories260K", input="Once", max_output_tokens=2)
    second = client.responses.create(model="stories260K", previous_response_id=first.id, input="upon",
                                     max_output_tokens=2)
    third = client.responses.create(model="stories260K", previous_response_id=second.id, input="a time",
                                    max_output_tokens=2)
    one, two = [list(client.responses.input_items.list(r.id, order="asc")) for r in (first, second)]
    listed = list(client.responses.input_items.list(third.id, order="asc", limit=100))
    assert _ids(listed) == _ids(one) + _ids(first.output) + _ids(two[-1:]) + _ids(second.output) + [listed[-1].id]
    assert _ids(two) == _ids(one) + _ids(first.output) + [two[-1].id]
    assert [listed[i].content[0].text for i in (0, 2, 4)] == ["Once", "upon", "a time"]


# -- every kind of item a conversation keeps ----------------------------------------------------------------
def _document(text: str) -> str:
    return "data:text/plain;base64," + base64.b64encode(text.encode()).decode()


KINDS = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
    {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Read this:"},
        {"type": "input_file", "filename": "notes.txt", "file_data": _document("The code word is plum.")}]},
    {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "plum"}},
    {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "patch it"}]},
    {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch"},
    {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done."},
    {"type": "function_call", "call_id": "call_f", "name": "lookup", "arguments": '{"q": "plum"}'},
    {"type": "function_call_output", "call_id": "call_f", "output": [
        {"type": "input_text", "text": "found"},
        {"type": "input_file", "filename": "hit.txt", "file_data": _document("plum: a fruit")}]},
    {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot say."}]},
    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "a last thought"}]},
]


def _same(sent: dict, listed: dict) -> None:
    """What was sent is what is listed (the list adds ids and statuses, and a part's defaults)."""
    for key, value in sent.items():
        if key == "content" and isinstance(value, list) or key == "output" and isinstance(value, list):
            assert len(listed[key]) == len(value), (sent, listed)
            for part, back in zip(value, listed[key]):
                assert {k: back.get(k) for k in part} == part, (sent, listed)
        elif key == "summary" and value:
            assert listed["summary"] == value or listed.get("content"), (sent, listed)
        else:
            assert listed.get(key) == value, (key, sent, listed)


def test_every_item_kind_a_response_takes_is_kept_as_sent(client, server):
    """Custom tool calls and their output, web search calls, documents (``input_file``, read as text for the
    model), reasoning no answer follows, a developer message: kept and listed back as sent (before, all but the
    last were refused as conversation items while the Responses API took them as input)."""
    conv = client.conversations.create(items=KINDS[:3])
    added = client.conversations.items.create(conv.id, items=KINDS[3:])
    items = _all(client, conv.id)
    assert _ids(items[3:]) == _ids(added.data) and items[2].id == "ws_1"
    with _http(server) as http:
        raw = http.get(f"/v1/conversations/{conv.id}/items", params={"order": "asc", "limit": 100}).json()["data"]
    assert [i["type"] for i in raw] == [k["type"] for k in KINDS]
    for sent, listed in zip(KINDS, raw):
        _same(sent, listed)
    assert client.conversations.items.retrieve("ws_1", conversation_id=conv.id).type == "web_search_call"
    # the model reads the conversation as it reads the same items sent as a response's input: the documents' text,
    # the custom call as its input, no web search
    within = client.responses.input_tokens.count(model="stories260K", conversation=conv.id, input="Next?")
    alone = client.responses.input_tokens.count(model="stories260K", input=[*KINDS, _user("Next?")])
    assert within.input_tokens == alone.input_tokens
    # and a response made in it adds its input items of every kind the same way
    response = client.responses.create(model="stories260K", conversation=conv.id, max_output_tokens=2,
                                       input=KINDS[2:6])
    listed = list(client.responses.input_items.list(response.id, order="asc", limit=100))
    after = _all(client, conv.id)
    assert [i.type for i in after[len(items):len(items) + 4]] == [k["type"] for k in KINDS[2:6]]
    assert _ids(after[len(items):len(items) + 4]) == _ids(listed[-4:])
    # removing the web search and the custom call's output leaves the rest
    client.conversations.items.delete("ws_1", conversation_id=conv.id)
    client.conversations.items.delete(items[5].id, conversation_id=conv.id)
    assert _ids(_all(client, conv.id))[:7] == _ids(items[:2]) + _ids(items[3:5]) + _ids(items[6:9])


def test_a_custom_tool_call_the_model_made_is_listed_as_one(client):
    """A response's ``custom_tool_call`` output item joins its conversation as a custom tool call (before, it was
    listed as a function call with JSON arguments)."""
    conv = client.conversations.create()
    tool = {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "regex",
                                                                "definition": "[a-c]{3}"}}
    response = client.responses.create(model="stories260K", conversation=conv.id, input="Patch it", tools=[tool],
                                       tool_choice={"type": "custom", "name": "apply_patch"},
                                       parallel_tool_calls=False, max_output_tokens=40, temperature=0)
    call = response.output[-1]
    assert call.type == "custom_tool_call"
    listed = _all(client, conv.id)[-1]
    assert (listed.type, listed.id, listed.call_id, listed.input) == ("custom_tool_call", call.id, call.call_id,
                                                                      call.input)


# -- hostile turns of events ----------------------------------------------------------------------------------
def _ended(client, response):
    """The response once it has ended: cancelled now, or as it ended before the cancel came."""
    try:
        return client.responses.cancel(response.id)
    except openai.BadRequestError:
        return client.responses.retrieve(response.id)


def test_a_conversation_deleted_while_its_response_runs(client, server, caplog, monkeypatch):
    """Deleted under it (by the store itself: the Conversations API and Jan's threads API refuse it meanwhile, the
    latter 400 ``run_active``, as for a run) the response still ends and is kept; its items have nowhere to go: one
    warning line, no traceback (before, the store's refusal was logged with its traceback), and nothing brings the
    conversation back."""
    import logging

    from gate_helpers import gate_engine
    from jan.server.keys import SERVICES

    caplog.set_level(logging.WARNING, logger="jan.server")
    gate = gate_engine(monkeypatch)
    try:
        conv = client.conversations.create(items=[_user("kept")])
        response = client.responses.create(model="stories260K", conversation=conv.id, input="Long story",
                                           background=True, max_output_tokens=200)
        # (held at the gate: the response is being made in the conversation)
        with _http(server) as http:
            refused = http.delete(f"/v1/threads/{conv.id}")
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "run_active", refused.text
        store = server.app[SERVICES].runs.conversations()
        asyncio.run_coroutine_threadsafe(store.delete_thread(conv.id), server._loop).result(60)
    finally:
        gate.set()
    final = _ended(client, response)
    assert final.status in ("cancelled", "completed", "incomplete") and final.conversation.id == conv.id
    told = [r for r in caplog.records if r.name == "jan.server" and response.id in r.getMessage()]
    assert len(told) == 1 and told[0].exc_info is None and "deleted" in told[0].getMessage(), told
    # its input items are its own (the conversation's are gone)
    assert [i.content[0].text for i in client.responses.input_items.list(response.id)] == ["Long story"]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(conv.id)


def test_no_item_is_deleted_or_added_while_a_response_runs(client, monkeypatch):
    """OpenAI's conversation takes one request at a time: while a response is being made in it (held at the gate),
    an item deleted or added, or the conversation deleted, is refused (400 ``conversation_locked``) and nothing is
    written. They used to be done: an item added landed before the response's turn, which had answered without it.
    Once it ended, its turn follows exactly the history it read."""
    import time

    from gate_helpers import gate_engine

    gate = gate_engine(monkeypatch)
    try:
        conv = client.conversations.create(items=[_user("one"), _user("two")])
        first, second = _all(client, conv.id)
        response = client.responses.create(model="stories260K", conversation=conv.id, input="three",
                                           background=True, max_output_tokens=200)
        for write in (lambda: client.conversations.items.delete(first.id, conversation_id=conv.id),
                      lambda: client.conversations.items.create(conv.id, items=[_user("meanwhile")]),
                      lambda: client.conversations.update(conv.id, metadata={"k": "v"}),
                      lambda: client.conversations.delete(conv.id)):
            with pytest.raises(openai.BadRequestError) as refused:
                write()
            assert refused.value.code == "conversation_locked" and refused.value.param == "conversation_id"
    finally:
        gate.set()
    deadline = time.monotonic() + 120
    while (final := client.responses.retrieve(response.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, "the response never ended"
        time.sleep(0.05)
    items = _all(client, conv.id)
    assert _ids(items[:2]) == [first.id, second.id] and _texts(items[2:3]) == [("message", "user", "three")]
    assert len(items) == (4 if final.output else 3)
    assert _ids(client.responses.input_items.list(response.id, order="asc")) == [first.id, second.id, items[2].id]
    assert client.conversations.retrieve(conv.id).metadata == {}
    added = client.conversations.items.create(conv.id, items=[_user("after")]).data[0]
    assert _ids(_all(client, conv.id))[-1] == added.id


def test_concurrent_adds_keep_every_item_with_its_own_id(server):
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        conv = await client.conversations.create()
        # the same client ids sent by every batch: each item still gets one id of its own
        batches = await asyncio.gather(*(client.conversations.items.create(conv.id, items=[
            {"type": "message", "role": "user", "id": "msg_same", "content": f"{k}a"},
            {"type": "message", "role": "user", "id": "msg_same", "content": f"{k}b"}]) for k in range(6)))
        items = [i async for i in client.conversations.items.list(conv.id, order="asc", limit=100)]
        assert len(items) == 12 and len({i.id for i in items}) == 12
        assert sorted(i.id for b in batches for i in b.data) == sorted(i.id for i in items)
        assert sum(i.id == "msg_same" for i in items) == 1
        await client.close()

    asyncio.run(go())


@pytest.mark.parametrize("path, query", [
    ("/v1/conversations/conv_%E2%9C%93", {}),
    ("/v1/conversations/conv_" + "A" * 65, {}),
    ("/v1/conversations/conv_abc%00/items", {}),
    ("/v1/conversations/{id}/items", {"limit": "1e2"}),
    ("/v1/conversations/{id}/items", {"limit": "-1"}),
    ("/v1/conversations/{id}/items", {"order": "ASC"}),
    ("/v1/conversations/{id}/items", {"after": "msg_\u00e9"}),
    ("/v1/conversations/{id}/items", {"include": "message.input_image.image_url,x"}),
    ("/v1/conversations/{id}/items/msg_%E2%9C%93", {}),
    ("/v1/conversations/{id}/items/" + "m" * 300, {}),
])
def test_hostile_paths_and_queries_are_4xx(client, server, path, query):
    conv = client.conversations.create(items=[_user("x")])
    with _http(server) as http:
        response = http.get(path.replace("{id}", conv.id), params=query)
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("body", [
    {"items": [None]},
    {"items": [{"type": "message", "role": "user", "content": None}]},
    {"items": [{"type": "message", "role": "user", "content": [None]}]},
    {"items": [{"type": "message", "role": "tool", "content": "x"}]},
    {"items": [{"type": "function_call", "call_id": None, "name": "n", "arguments": "{}"}]},
    {"items": [{"type": "function_call_output", "call_id": "c", "output": {"a": 1}}]},
    {"items": [{"type": "custom_tool_call", "call_id": "c", "name": "n", "input": 5}]},
    {"items": [{"type": "web_search_call", "id": 7}]},
    {"items": [{"type": "message", "role": "user", "content": [{"type": "input_file"}]}]},
    {"items": {"type": "message"}},
    {"metadata": {"k": None}},
    {"metadata": {"\u00e9" * 64: "v" * 512, **{str(k): "x" for k in range(15)}}, "items": [1]},
    [],
    "items",
])
def test_hostile_item_bodies_are_400(server, body):
    with _http(server) as http:
        before = len(http.get("/v1/threads", params={"limit": 100}).json()["data"])
        _error(http.post("/v1/conversations", json=body), 400)
        conv = http.post("/v1/conversations", json={}).json()["id"]
        if isinstance(body, dict) and "items" in body:
            _error(http.post(f"/v1/conversations/{conv}/items", json=body), 400)
        assert http.get(f"/v1/conversations/{conv}/items").json()["data"] == []
        assert len(http.get("/v1/threads", params={"limit": 100}).json()["data"]) == before + 1


def test_unicode_and_big_metadata_round_trip(client):
    metadata = {("\u00e9" * 16)[:16] + str(k): "\U0001F600" * 128 for k in range(16)}
    conv = client.conversations.create(metadata=metadata, items=[_user("\u2603 \U0001F600 \u0000 nul")])
    assert client.conversations.retrieve(conv.id).metadata == metadata
    assert _texts(_all(client, conv.id)) == [("message", "user", "\u2603 \U0001F600 \u0000 nul")]


def test_a_broken_pair_in_the_conversation_is_said_of_it(client):
    """A call deleted from the conversation leaves its output answering nothing: a response made in it is refused
    naming the conversation, not its input (before: param 'input', which held nothing wrong)."""
    conv = client.conversations.create(items=[
        _user("look it up"), {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "found"}])
    call = _all(client, conv.id)[1]
    client.conversations.items.delete(call.id, conversation_id=conv.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="stories260K", conversation=conv.id, input="and?", max_output_tokens=2)
    assert err.value.body["param"] == "conversation" and "call_1" in err.value.body["message"], err.value.body
    # in the input, it is still said of the input
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="stories260K", max_output_tokens=2, store=False, input=[
            {"type": "function_call_output", "call_id": "call_9", "output": "x"}])
    assert err.value.body["param"] == "input"


def test_a_call_with_an_empty_name_or_id_is_kept(client):
    """What the Responses API takes as input, a conversation keeps: a function call whose name (or call id) is
    empty was dropped when read back (the item listed as an empty assistant message)."""
    sent = [{"type": "function_call", "call_id": "", "name": "", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "", "output": "x"}]
    conv = client.conversations.create(items=sent)
    assert _texts(_all(client, conv.id)) == [("function_call", "", "{}"), ("function_call_output", "", "x")]


def test_a_web_search_call_is_no_message_of_the_thread(client, server):
    """The web page's thread shows the conversation's messages: an item kept for the list alone (a web search
    call) is tool bookkeeping there, as a run's tool calls are, not an empty reply."""
    conv = client.conversations.create(items=[_user("find plums"), KINDS[2]])
    with _http(server) as http:
        messages = http.get(f"/v1/threads/{conv.id}/messages", params={"order": "asc"}).json()["data"]
    assert [m["role"] for m in messages] == ["user"]
    assert [i.type for i in _all(client, conv.id)] == ["message", "web_search_call"]


def test_a_response_and_an_add_sending_one_id_each_list_their_own(server):
    """A response made in a conversation as items are added to it (one request at a time: an add while the response
    is being made is conversation_locked, and is sent again once it ended), its input sent with the id an added item
    has too: the second to be added is given a new id, in the conversation and in the response's input_items
    alike."""
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        conv = await client.conversations.create()
        turn = [{"type": "message", "role": "user", "id": "msg_twice", "content": "turn 1"}]
        answer, added = await asyncio.gather(
            client.responses.create(model="stories260K", conversation=conv.id, max_output_tokens=2, input=[
                {"type": "message", "role": "user", "id": "msg_twice", "content": "turn 0"}]),
            client.conversations.items.create(conv.id, items=turn), return_exceptions=True)
        assert not isinstance(answer, BaseException), answer
        if isinstance(added, openai.BadRequestError):  # (it came while the response was being made)
            assert added.code == "conversation_locked", added
            await client.conversations.items.create(conv.id, items=turn)
        else:
            assert not isinstance(added, BaseException), added
        items = [i async for i in client.conversations.items.list(conv.id, order="asc", limit=100)]
        assert len({i.id for i in items}) == len(items) == 3
        listed = [i async for i in client.responses.input_items.list(answer.id, order="asc")]
        mine = next(i for i in items if i.id == listed[-1].id)  # its input item is the conversation's
        assert mine.content[0].text == listed[-1].content[0].text == "turn 0"
        assert sum(i.id == "msg_twice" for i in items) == 1
        await client.close()

    asyncio.run(go())


def test_an_item_reference_adds_the_item_it_names(client):
    """As in a response's input, an ``item_reference`` among the items stands for the item it names: one of the
    conversation's (added again, under a new id: ids stay unique) or of a stored response (under its id)."""
    response = client.responses.create(model="stories260K", input="Once", max_output_tokens=2)
    answer = response.output[-1]
    conv = client.conversations.create(items=[_user("hello"), {"type": "item_reference", "id": answer.id}])
    items = _all(client, conv.id)
    assert items[1].id == answer.id and items[1].content[0].text == answer.content[0].text
    added = client.conversations.items.create(conv.id, items=[{"type": "item_reference", "id": items[0].id}])
    again = added.data[0]
    assert again.id != items[0].id and _texts([again]) == _texts(items[:1])
    assert _ids(_all(client, conv.id)) == _ids(items) + [again.id]
    with pytest.raises(openai.BadRequestError) as err:
        client.conversations.items.create(conv.id, items=[_user("x"), {"type": "item_reference", "id": "msg_none"}])
    assert err.value.body["param"] == "items[1].id"


def test_an_item_the_continued_responses_hold_is_not_sent_again(client):
    """OpenAI's 400 "Duplicate item found with id ...": an input item (by its id, or by reference) that the responses
    ``previous_response_id`` continues hold already would be read twice and listed twice under one id."""
    first = client.responses.create(model="stories260K", input="Once", max_output_tokens=2)
    answer = first.output[-1]
    for again in (answer.model_dump(exclude_none=True), {"type": "item_reference", "id": answer.id}):
        with pytest.raises(openai.BadRequestError) as err:
            client.responses.create(model="stories260K", previous_response_id=first.id, max_output_tokens=2,
                                    input=[_user("next"), again])
        assert err.value.body["param"] == "input[1]" and "Duplicate item" in err.value.body["message"]
        with pytest.raises(openai.BadRequestError):
            client.responses.input_tokens.count(model="stories260K", previous_response_id=first.id,
                                                input=[_user("next"), again])
    # the same item without its id, or in a response that does not continue it, is taken
    fresh = client.responses.create(model="stories260K", previous_response_id=first.id, max_output_tokens=2,
                                    input=[{"type": "message", "role": "assistant", "content": "Hm."}, _user("next")])
    assert fresh.status in ("completed", "incomplete")
    client.responses.create(model="stories260K", max_output_tokens=2, input=[answer.model_dump(exclude_none=True),
                                                                              _user("next")])


@pytest.mark.parametrize("gone", ["conversation", "message"])
def test_an_item_whose_conversation_or_message_goes_as_it_is_deleted_is_a_404_said_of_it(client, server,
                                                                                          monkeypatch, gone):
    """The conversation deleted (its DELETE takes no lock of its items), or the item's message deleted through the
    threads API, after the item was found and before it was removed: a 404 that names the conversation or the item,
    as every other route of conversations does (before: the store's "thread 'conv_...' not found" or "message
    'msg_...' not found", words of an API the client never called)."""
    from jan.server.dialects.conversations_store import ConversationStore

    conv = client.conversations.create(items=[_user("one")])
    item = _all(client, conv.id)[0]
    read = ConversationStore._items

    async def read_then_lose(self, conversation_id):
        items = await read(self, conversation_id)
        if gone == "conversation":
            await self._threads.delete_thread(conversation_id)
        else:
            for message in await self._threads.list_messages(conversation_id):
                await self._threads.delete_message(conversation_id, message["id"])
        return items

    monkeypatch.setattr(ConversationStore, "_items", read_then_lose)
    with _http(server) as http:
        response = http.delete(f"/v1/conversations/{conv.id}/items/{item.id}")
    assert response.status_code == 404, response.text
    message = response.json()["error"]["message"]
    named = f"conversation '{conv.id}' not found" if gone == "conversation" else f"item '{item.id}' not found"
    assert message.startswith(named), message
