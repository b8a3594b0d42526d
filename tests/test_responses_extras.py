"""OpenAI Responses, the rest of the SDK's surface, driven by the official openai client against a real server:
``responses.input_tokens.count`` (POST /v1/responses/input_tokens: the same typed prompt as a response request,
counted) and resuming a background response's stream (``responses.retrieve(id, stream=True, starting_after=N)``)."""

from __future__ import annotations

import openai
import pytest

from dialect_helpers import WEATHER_SCHEMA, openai_client, tool_model
from jan.server.routes.responses import STREAMS
from server_helpers import start_server

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": WEATHER_SCHEMA, "strict": True}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("responses-extras")
    # a context long enough that a greedy stories260K answer is still running when the test reads it
    srv = start_server(tmp, [stories_path, tool_model(tmp)], n_ctx=4096, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


# -- input token counts ------------------------------------------------------------------------------
def test_input_tokens_equal_the_prompt_a_response_uses(client):
    kwargs = dict(model="stories260K", input="Once upon a time", instructions="You tell stories.")
    count = client.responses.input_tokens.count(**kwargs)
    assert count.object == "response.input_tokens" and count.input_tokens > 0
    response = client.responses.create(**kwargs, max_output_tokens=1, temperature=0)
    assert count.input_tokens == response.usage.input_tokens
    # the stored conversation a previous_response_id continues is counted too
    follow = dict(model="stories260K", input="And then?", previous_response_id=response.id)
    counted = client.responses.input_tokens.count(**follow)
    assert counted.input_tokens > count.input_tokens
    assert counted.input_tokens == client.responses.create(**follow, max_output_tokens=1).usage.input_tokens


def test_input_tokens_count_tools_and_list_input(client):
    items = [{"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}]
    plain = client.responses.input_tokens.count(model="tool-model", input=items)
    with_tools = client.responses.input_tokens.count(model="tool-model", input=items, tools=TOOLS,
                                                     tool_choice="auto", parallel_tool_calls=True)
    assert with_tools.input_tokens > plain.input_tokens  # the tools are in the prompt
    answered = client.responses.create(model="tool-model", input=items, tools=TOOLS, max_output_tokens=1)
    assert with_tools.input_tokens == answered.usage.input_tokens


def test_input_tokens_refusals_are_the_create_routes(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.input_tokens.count(model="no-such-model", input="Hi")
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.input_tokens.count(model="stories260K", input="Hi", previous_response_id="resp_missing")
    assert err.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.input_tokens.count(model="stories260K")
    assert err.value.param == "input"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.input_tokens.count(model="stories260K", input=[{"type": "function_call_output",
                                                                        "call_id": "c1", "output": "x"}])
    assert err.value.param == "input"
    with pytest.raises(openai.NotFoundError) as err:  # (a conversation that is not there: tests/test_conversations.py)
        client.responses.input_tokens.count(model="stories260K", input="Hi", conversation="conv_1")
    assert err.value.body["param"] == "conversation"


# -- resuming a background stream --------------------------------------------------------------------
def _events(stream) -> list:
    with stream:
        return list(stream)


def _dumped(events) -> list[dict]:
    return [e.model_dump(mode="json", exclude_unset=True) for e in events]


def test_a_finished_background_stream_replays_from_the_start_the_middle_and_the_end(client):
    events = _events(client.responses.create(model="stories260K", input="Hi", max_output_tokens=12, temperature=0,
                                             background=True, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.incomplete"
    response_id = events[0].response.id
    assert _dumped(_events(client.responses.retrieve(response_id, stream=True))) == _dumped(events)
    assert _dumped(_events(client.responses.retrieve(response_id, stream=True, starting_after=5))) == _dumped(events[6:])
    last = events[-1].sequence_number
    assert _events(client.responses.retrieve(response_id, stream=True, starting_after=last)) == []
    assert _events(client.responses.retrieve(response_id, stream=True, starting_after=last + 10)) == []
    # without stream=true: the response object, as ever
    assert client.responses.retrieve(response_id, starting_after=5).status == "incomplete"


def test_a_resumed_stream_follows_the_response_live_to_its_end(client):
    # greedy stories260K does not end before max_output_tokens: only the cancel below ends this one
    first = client.responses.create(model="stories260K", input="Resume me", max_output_tokens=4000, temperature=0,
                                    background=True, stream=True)
    seen = []
    with first:
        for event in first:
            seen.append(event)
            if event.type == "response.output_text.delta":
                break  # the connection drops; a background response goes on without it
    response_id = seen[0].response.id
    resumed = client.responses.retrieve(response_id, stream=True, starting_after=seen[-1].sequence_number)
    followed, cancelled = [], False
    with resumed:
        for event in resumed:
            followed.append(event)
            if not cancelled and sum(e.type == "response.output_text.delta" for e in followed) >= 3:
                cancelled = True
                assert client.responses.cancel(response_id).status == "cancelled"
    assert cancelled and followed[-1].type == "response.incomplete"
    assert followed[-1].response.status == "cancelled"
    numbers = [e.sequence_number for e in seen + followed]
    assert numbers == list(range(len(numbers)))  # nothing lost or repeated across the reconnect
    # the whole stream, replayed now it is over, is what the two connections read together
    assert _dumped(_events(client.responses.retrieve(response_id, stream=True))) == _dumped(seen + followed)


def test_only_a_background_response_created_streaming_can_be_streamed(client, server):
    foreground = client.responses.create(model="stories260K", input="Hi", max_output_tokens=2)
    with pytest.raises(openai.BadRequestError) as err:
        _events(client.responses.retrieve(foreground.id, stream=True))
    assert err.value.param == "stream" and "background=true" in err.value.message
    background = client.responses.create(model="stories260K", input="Hi", max_output_tokens=4000, temperature=0,
                                         background=True)
    with pytest.raises(openai.BadRequestError) as err:  # while it runs, jan knows it was not streamed
        _events(client.responses.retrieve(background.id, stream=True))
    assert err.value.param == "stream" and "stream=true" in err.value.message
    client.responses.cancel(background.id)
    with pytest.raises(openai.BadRequestError) as err:
        _events(client.responses.retrieve(background.id, stream=True))
    assert err.value.param == "stream"
    with pytest.raises(openai.NotFoundError):
        _events(client.responses.retrieve("resp_missing", stream=True))
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.retrieve(foreground.id, extra_query={"stream": "yes"})
    assert err.value.param == "stream"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.retrieve(foreground.id, extra_query={"stream": "true", "starting_after": "x"})
    assert err.value.param == "starting_after"


def test_a_stream_is_kept_a_while_after_it_ends_and_no_longer_after_a_delete(client, server):
    events = _events(client.responses.create(model="stories260K", input="Hi", max_output_tokens=3, temperature=0,
                                             background=True, stream=True))
    response_id = events[0].response.id
    streams = server.app[STREAMS]
    kept = streams.kept_s
    streams.kept_s = -1.0  # as if the window had passed
    try:
        with pytest.raises(openai.BadRequestError) as err:
            _events(client.responses.retrieve(response_id, stream=True))
        assert err.value.param == "stream" and "not kept" in err.value.message
    finally:
        streams.kept_s = kept
    assert client.responses.retrieve(response_id).status == "incomplete"  # the response itself stays stored
    again = _events(client.responses.create(model="stories260K", input="Hi", max_output_tokens=3, temperature=0,
                                            background=True, stream=True))
    client.responses.delete(again[0].response.id)
    with pytest.raises(openai.NotFoundError):
        _events(client.responses.retrieve(again[0].response.id, stream=True))
