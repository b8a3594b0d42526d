"""Ollama's ``context`` on ``/api/generate``: the done object gives the exchange's token ids (the prompt as
the model evaluated it, then the generated tokens), and a request that sends them back continues from them.
A real server with the real stories260K (and a tiny fill-in-the-middle model), greedy decoding throughout."""

from __future__ import annotations

import json

import httpx
import ollama
import openai
import pytest
from server_helpers import start_server
from test_server_ollama import FIM, write_fim_model

STORY = "Once upon a time"
GREEDY = {"temperature": 0, "num_predict": 8}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("ollama-context")
    srv = start_server(tmp, [stories_path, write_fim_model(tmp / f"{FIM}.gguf")])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base_url, timeout=120)


def _post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=120)


def _lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def _tokens(server, text: str, model: str = "stories260K", add_special: bool = False) -> list[int]:
    response = _post(server, "/v1/tokenize", {"model": model, "content": text, "add_special": add_special})
    return response.json()["tokens"]


def _rendered(server, prompt: str, model: str = "stories260K") -> list[int]:
    """The token ids of ``prompt`` as one user turn in the model's chat template, without a BOS of its own."""
    text = _post(server, "/v1/apply-template", {"model": model, "messages": [{"role": "user", "content": prompt}]})
    tokens = _tokens(server, text.json()["prompt"], model)
    bos = _bos(server, model)
    return tokens[1:] if tokens[:1] == [bos] else tokens


def _bos(server, model: str) -> int | None:
    with_bos, without = _tokens(server, "x", model, add_special=True), _tokens(server, "x", model)
    return with_bos[0] if len(with_bos) > len(without) else None


def test_the_done_object_carries_the_exchange_streamed_or_not(server, client):
    whole = client.generate(model="stories260K", prompt=STORY, options=GREEDY)
    context = whole.context
    assert isinstance(context, list) and all(type(t) is int for t in context)
    # the prompt as evaluated (BOS, then the rendered template), then every generated token
    assert len(context) == whole.prompt_eval_count + whole.eval_count
    assert context[:whole.prompt_eval_count] == [_bos(server, "stories260K"), *_rendered(server, STORY)]
    detokenized = _post(server, "/v1/detokenize", {"model": "stories260K", "tokens": context[whole.prompt_eval_count:]})
    assert detokenized.json()["content"] == whole.response
    parts = list(client.generate(model="stories260K", prompt=STORY, options=GREEDY, stream=True))
    assert parts[-1].done and parts[-1].context == context  # only the done object has it, as Ollama's
    assert all(p.context is None for p in parts[:-1])
    # in Ollama's field order: after done_reason, before the statistics
    keys = list(_post(server, "/api/generate", {"model": "stories260K", "prompt": STORY, "options": GREEDY,
                                                "stream": False}).json())
    assert keys.index("done_reason") + 1 == keys.index("context") < keys.index("total_duration")


def test_sending_the_context_back_continues_the_exchange(server, client):
    first = client.generate(model="stories260K", prompt=STORY, options=GREEDY)
    second = client.generate(model="stories260K", prompt="The end", context=first.context, options=GREEDY)
    # exactly the earlier exchange, then the new turn rendered in the template (no second BOS mid-prompt)
    new_turn = _rendered(server, "The end")
    assert second.prompt_eval_count == len(first.context) + len(new_turn)
    assert second.context[:second.prompt_eval_count] == [*first.context, *new_turn]
    assert len(second.context) == second.prompt_eval_count + second.eval_count
    # what the model wrote is what it writes after those tokens as a plain prompt
    v1 = openai.OpenAI(base_url=server.base_url + "/v1", api_key="-")
    same = v1.completions.create(model="stories260K", prompt=second.context[:second.prompt_eval_count],
                                 max_tokens=GREEDY["num_predict"], temperature=0)
    assert second.response == same.choices[0].text
    streamed = list(client.generate(model="stories260K", prompt="The end", context=first.context, options=GREEDY,
                                    stream=True))
    assert "".join(p.response for p in streamed) == second.response and streamed[-1].context == second.context
    # and a third turn continues the second
    third = client.generate(model="stories260K", prompt="Again", context=second.context, options=GREEDY)
    assert third.context[:len(second.context)] == second.context


def test_fill_in_the_middle_gives_and_takes_a_context(server, client):
    options = {"temperature": 0, "num_predict": 4}
    first = client.generate(model=FIM, prompt="def add(a, b):", suffix="    return c", options=options)
    assert len(first.context) == first.prompt_eval_count + first.eval_count
    alone = client.generate(model=FIM, prompt="def sub(a, b):", suffix="    return d", options=options)
    second = client.generate(model=FIM, prompt="def sub(a, b):", suffix="    return d", options=options,
                             context=first.context)
    infill = alone.context[:alone.prompt_eval_count]
    bos = _bos(server, FIM)
    infill = infill[1:] if infill[:1] == [bos] else infill
    assert second.context[:second.prompt_eval_count] == [*first.context, *infill]


@pytest.mark.parametrize("body", [
    {"model": "stories260K", "prompt": STORY, "raw": True},  # Ollama: a raw prompt gives no context back
    {"model": "stories260K", "prompt": STORY, "raw": True, "context": []},  # (an empty one is no context)
    {"model": "stories260K", "context": [1, 403]},  # no prompt: the model is loaded, nothing generated
    {"model": "stories260K", "context": [1, 403], "keep_alive": 0},  # and with keep_alive 0, unloaded
])
@pytest.mark.parametrize("stream", [False, True])
def test_no_context_where_ollama_gives_none(server, body, stream):
    response = _post(server, "/api/generate", {**body, "stream": stream, "options": {"num_predict": 2}})
    assert response.status_code == 200
    objects = _lines(response)
    assert objects[-1]["done"] is True and all("context" not in o for o in objects)


def test_chat_replies_have_no_context(server):
    body = {"model": "stories260K", "messages": [{"role": "user", "content": STORY}], "options": GREEDY,
            "stream": False}
    reply = _post(server, "/api/chat", body).json()
    assert reply["done"] is True and "context" not in reply


@pytest.mark.parametrize("context, message", [
    ([1, 512], "context[1]: token id 512 is outside the model's vocabulary (0..511)"),
    ([1, 10**6], "context[1]: token id 1000000 is outside the model's vocabulary (0..511)"),
    ([1, -1], "context[1]"),
    ([1, "2"], "context[1]"),
    ([1, 2.5], "context[1]"),
    ([True], "context[0]"),
    ([[1]], "context[0]"),
    ("1 2 3", "context"),
    ({"0": 1}, "context"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_context_is_a_400_in_ollamas_shape(server, context, message, stream):
    response = _post(server, "/api/generate", {"model": "stories260K", "prompt": STORY, "context": context,
                                               "stream": stream})
    assert response.status_code == 400
    assert list(response.json()) == ["error"] and message in response.json()["error"]


def test_a_bad_context_for_fill_in_the_middle_is_a_400_too(server):
    response = _post(server, "/api/generate", {"model": FIM, "prompt": "a", "suffix": "b", "context": [10**8]})
    assert response.status_code == 400 and "context[0]: token id 100000000" in response.json()["error"]


def test_raw_mode_refuses_a_context_as_ollama(server):
    response = _post(server, "/api/generate", {"model": "stories260K", "prompt": STORY, "raw": True, "context": [1]})
    assert response.status_code == 400
    assert "raw mode does not support template, system, or context" in response.json()["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_context_longer_than_the_window_is_the_routes_400(server, stream):
    # 600 tokens in a 512-token context: refused as any over-long prompt is (the context is never cut)
    response = _post(server, "/api/generate", {"model": "stories260K", "prompt": STORY, "context": [1] + [403] * 600,
                                               "stream": stream})
    assert response.status_code == 400
    assert list(response.json()) == ["error"] and "512" in response.json()["error"]
