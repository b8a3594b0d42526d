"""OpenAI Responses ``item_reference`` inputs: an earlier item by id (an input or output item of a stored response)
stands for the item itself, in the prompt, the input token count and the input items listed; one not stored (or
of a response stored with ``store: false``) is a 400 naming it. Through the official openai SDK."""

from __future__ import annotations

import openai
import pytest

from dialect_helpers import openai_client
from jan.server.config import ServerConfig
from jan.testing.server import ServerThread


@pytest.fixture(scope="module")
def client(tmp_path_factory, stories_path):
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("data"), models=[str(stories_path)], n_ctx=1024,
                          n_threads=1)
    with ServerThread(config) as srv:
        yield openai_client(srv)


def _create(client, **kwargs):
    return client.responses.create(**{"model": "stories260K", "max_output_tokens": 8, "temperature": 0, **kwargs})


def test_references_stand_for_the_items_they_name(client):
    first = _create(client, input="Once upon a time")
    user = client.responses.input_items.list(first.id).data[0]
    answer = first.output[0]
    follow = {"role": "user", "content": "And then?"}
    # by reference (the SDK's ItemReference, with and without its type), from the conversation continued or not
    for refs in ([{"type": "item_reference", "id": user.id}, {"type": "item_reference", "id": answer.id}],
                 [{"id": user.id}, {"id": answer.id}]):
        referenced = _create(client, input=[*refs, follow])
        whole = _create(client, store=False, input=[{"role": "user", "content": "Once upon a time"},
                                                    {"role": "assistant", "content": answer.content[0].text}, follow])
        assert referenced.output_text == whole.output_text
        assert referenced.usage.input_tokens == whole.usage.input_tokens
        items = client.responses.input_items.list(referenced.id, order="asc").data
        assert [i.id for i in items[:2]] == [user.id, answer.id] and items[1].role == "assistant"
        count = client.responses.input_tokens.count(model="stories260K", input=[*refs, follow])
        assert count.input_tokens == whole.usage.input_tokens


def test_a_reference_to_nothing_stored_is_a_400(client):
    unstored = _create(client, input="Hi", store=False)
    for item_id in ("msg_nothere", unstored.output[0].id):
        with pytest.raises(openai.BadRequestError) as err:
            _create(client, input=[{"type": "item_reference", "id": item_id}, {"role": "user", "content": "Hi"}])
        assert err.value.body["param"] == "input[0].id" and item_id in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        _create(client, input=[{"type": "item_reference"}])
    assert err.value.body["param"] == "input[0].id"
