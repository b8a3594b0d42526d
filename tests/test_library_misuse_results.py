"""Results used as the values they are: compared with anything, and written as JSON.

``Usage`` (the native type in every Completion, Chunk and service result) compared with anything but a Usage raised
TypeError ("incompatible function arguments"): ``usage == None``, and so two chunks compared where one has usage and
the other None. And a result turned into plain data (``dataclasses.asdict``) kept the native Usage, which
``json.dumps`` refuses: ``to_dict()`` (and ``jan.services.types.as_dict``) give plain, JSON-ready data.
"""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

import jan
from jan.engine.results import Chunk, Usage


@pytest.fixture(scope="module")
def model(stories_path):
    with jan.Model(stories_path, n_ctx=256) as m:
        yield m


@pytest.mark.parametrize("other", [None, 0, "usage", object(), (1, 2)])
def test_usage_compares_with_anything(other):
    usage = Usage(prompt_tokens=3, completion_tokens=2)
    assert (usage == other) is False
    assert (usage != other) is True
    assert usage in [other, usage]
    assert usage == Usage(prompt_tokens=3, completion_tokens=2)
    assert usage != Usage(prompt_tokens=3)


def test_chunks_with_and_without_usage_compare(model):
    chunks = list(model.stream("Once upon a time", max_tokens=8, temperature=0))
    last = chunks[-1]
    assert last.usage is not None
    without = dataclasses.replace(last, usage=None)
    assert (last == without) is False
    assert last == pickle.loads(pickle.dumps(last))
    assert [c for c in chunks if c.usage != None] == [last]  # noqa: E711 - what a user writes


def test_usage_to_dict_takes_the_constructor_back():
    usage = Usage(prompt_tokens=3, completion_tokens=2, cached_tokens=1, queue_ms=0.5, prompt_ms=1.25,
                  generation_ms=2.0, draft_tokens=4, draft_accepted=3)
    data = usage.to_dict()
    assert Usage(**data) == usage
    assert json.loads(json.dumps(data)) == data


def test_results_to_dict_are_json(model):
    completion = model.generate("Once upon a time", max_tokens=6, temperature=0, logprobs=True, top_logprobs=2)
    data = completion.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["text"] == completion.text and data["token_ids"] == completion.token_ids
    assert data["usage"] == completion.usage.to_dict()
    assert data["logprobs"][0]["top"][0]["token_id"] == completion.logprobs[0].top[0].token_id
    for chunk in model.stream("Once upon a time", max_tokens=6, temperature=0, logprobs=True):
        assert isinstance(chunk, Chunk)
        json.dumps(chunk.to_dict())  # progress and usage are Usages too
    assert completion.logprobs[0].to_dict()["token_id"] == completion.logprobs[0].token_id


def test_service_results_as_dict_are_json():
    from jan.services.types import ChatMessage, ChatResult, ChoiceResult, as_dict

    result = ChatResult(model="m", choices=(ChoiceResult(message=ChatMessage.of_text("assistant", "hi"),
                                                         finish_reason="stop"),),
                        usage=Usage(prompt_tokens=2, completion_tokens=1))
    data = as_dict(result)
    assert data["usage"] == {**Usage().to_dict(), "prompt_tokens": 2, "completion_tokens": 1}
    assert json.loads(json.dumps(data))["model"] == "m"
    with pytest.raises(TypeError, match="obj: expected a dataclass instance"):
        as_dict({"model": "m"})


def test_a_text_prompt_costs_its_tokens_read_with_special_tokens(model):
    """generate() reads a text prompt as a chat template writes it (special tokens' text is those tokens): the
    README's word for counting it, tokenize(parse_special=True), gives its usage.prompt_tokens."""
    prompt = "Once upon a time</s> there was <s> a dog"
    completion = model.generate(prompt, max_tokens=1, temperature=0)
    assert completion.usage.prompt_tokens == len(model.tokenize(prompt, parse_special=True))
    assert len(model.tokenize(prompt)) != completion.usage.prompt_tokens  # (plain text: </s> is several tokens)
