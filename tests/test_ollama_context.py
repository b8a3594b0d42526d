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
from test_server_ollama import FIM, JPEG, write_fim_model

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
    """The token ids of ``prompt`` as one user turn on Ollama's API, without a BOS of its own: stories260K has no
    chat template, so Ollama's default one (``{{ .Prompt }}``) writes the prompt as it is."""
    return _tokens(server, prompt, model)


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
    ([1, -1], "context[1]: stands for image 1"),  # (an image's place: tests/test_dialects_vision.py)
    ([1, -2], "context[1]: stands for image 2"),  # (-1 - n: images[n], which the request does not send)
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
def test_with_truncate_false_a_context_longer_than_the_window_is_a_400(server, stream):
    # 600 tokens in a 512-token context: refused as any over-long prompt is when truncation is off
    response = _post(server, "/api/generate", {"model": "stories260K", "prompt": STORY, "context": [1] + [403] * 600,
                                               "truncate": False, "stream": stream})
    assert response.status_code == 400
    assert list(response.json()) == ["error"] and "512" in response.json()["error"]


# -- a context that fills the window: its oldest tokens dropped, as Ollama's truncate -------------------------
N_CTX = 1024


@pytest.fixture(scope="module")
def window(tmp_path_factory, stories_path):
    """A server whose slots hold 1024 tokens (as ``jan serve --ctx-size 1024``)."""
    srv = start_server(tmp_path_factory.mktemp("ollama-context-window"), [stories_path], n_ctx=N_CTX)
    yield srv
    srv.stop()


def _generate(server, body: dict, stream: bool) -> dict:
    """The done object of one /api/generate (streamed: the last line, with the pieces' text as its response)."""
    response = _post(server, "/api/generate", {"model": "stories260K", **body, "stream": stream})
    assert response.status_code == 200, response.text
    if not stream:
        return response.json()
    objects = _lines(response)
    return {**objects[-1], "response": "".join(o["response"] for o in objects)}


#: Ollama's default num_keep: the context tokens after its BOS that a cut keeps
NUM_KEEP = 4


def _check_cut(server, sent: list[int], reply: dict, turn: str, keep: int = NUM_KEEP) -> list[int]:
    """The reply's prompt is the ``sent`` context's BOS and ``keep`` tokens after it, then its newest tokens, then
    the new turn whole."""
    bos, new_turn = _bos(server, "stories260K"), _rendered(server, turn)
    prompt = reply["context"][:reply["prompt_eval_count"]]
    assert sent[0] == bos and prompt[:1 + keep] == sent[:1 + keep]
    newest = prompt[1 + keep:len(prompt) - len(new_turn)]
    assert prompt[len(prompt) - len(new_turn):] == new_turn
    assert 0 < len(newest) < len(sent) - 1 - keep and newest == sent[len(sent) - len(newest):]
    return prompt


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_carried_in_context_goes_on_past_the_window(window, stream):
    # the tester's case: a context that ends "length" with more ids than the window holds, sent back
    options = {"temperature": 0, "num_predict": 200}
    first = _generate(window, {"prompt": "Hi", "context": [5] * 950, "options": options}, stream)
    # the first request too: its context (no BOS of its own: one comes first) cut to leave num_predict's room
    assert first["context"][0] == _bos(window, "stories260K") and first["prompt_eval_count"] + 200 <= N_CTX
    assert first["done_reason"] == "length" and first["eval_count"] == 200
    context = first["context"]
    for turn in ("more", "and more", "the end"):  # each turn continues the last, never a lasting 400
        reply = _generate(window, {"prompt": turn, "context": context, "options": options}, stream)
        _check_cut(window, context, reply, turn)
        # as much of the context as leaves the reply its num_predict (the BOS, kept, counted)
        assert reply["prompt_eval_count"] == N_CTX - 200 and reply["eval_count"] == 200
        assert reply["context"][reply["prompt_eval_count"]:] and len(reply["context"]) >= N_CTX
        context = reply["context"]
    # streamed or not, the same cut (not the same reply's ids: a prompt the KV cache holds all of is evaluated in
    # other batches than the first time, and greedy decoding on stories260K flips where its top two tokens tie)
    again = _generate(window, {"prompt": "the end", "context": context, "options": options}, not stream)
    other = _generate(window, {"prompt": "the end", "context": context, "options": options}, stream)
    assert again["context"][:again["prompt_eval_count"]] == other["context"][:other["prompt_eval_count"]]
    assert again["eval_count"] == other["eval_count"] == 200


def test_without_num_predict_the_cut_leaves_half_the_window_for_the_reply(window):
    # as Ollama's runner frees half of what the kept start leaves when it truncates (contextShiftPromptLimit): a
    # reply of one token would end every later turn
    half = (N_CTX - 1 - NUM_KEEP) // 2  # (the BOS and num_keep tokens after it are kept)
    full = _generate(window, {"prompt": "Hi", "context": [5] * 1100, "options": {"temperature": 0}}, False)
    assert full["prompt_eval_count"] <= N_CTX - half and full["eval_count"] > 1
    reply = _generate(window, {"prompt": "more", "context": full["context"], "options": {"temperature": 0}}, False)
    _check_cut(window, full["context"], reply, "more")
    assert reply["prompt_eval_count"] <= N_CTX - half and reply["eval_count"] > 1


@pytest.mark.parametrize("stream", [False, True])
def test_with_truncate_false_the_full_context_stays_a_400(window, stream):
    full = _generate(window, {"prompt": "Hi", "context": [5] * 950, "options": {"num_predict": 200}}, False)
    response = _post(window, "/api/generate", {"model": "stories260K", "prompt": "more", "context": full["context"],
                                               "truncate": False, "stream": stream})
    assert response.status_code == 400 and list(response.json()) == ["error"]
    assert f"the context holds {N_CTX}" in response.json()["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_new_turn_too_long_by_itself_is_still_a_400(window, stream):
    # the whole context dropped leaves the new turn, which does not fit either: the over-long prompt's 400
    prompt = "one two three " * 400
    response = _post(window, "/api/generate", {"model": "stories260K", "prompt": prompt, "context": [1] + [5] * 300,
                                               "stream": stream})
    assert response.status_code == 400 and list(response.json()) == ["error"]
    error = response.json()["error"]
    assert f"the context holds {N_CTX}" in error and "no earlier turn to drop" in error


def test_a_context_over_the_small_window_is_cut_by_default(server):
    sent = [1] + [403] * 600  # 600 tokens in a 512-token context: truncate is on unless a request says false
    reply = _generate(server, {"prompt": STORY, "context": sent, "options": GREEDY}, False)
    prompt = reply["context"][:reply["prompt_eval_count"]]
    assert prompt[0] == 1 and prompt[1:-len(_rendered(server, STORY))] == [403] * (len(prompt) - 1
                                                                                    - len(_rendered(server, STORY)))
    assert reply["prompt_eval_count"] + GREEDY["num_predict"] <= 512


# -- a stop string: not in the context, as not in the response -------------------------------------------------
def _pieces(server, model: str, prompt: str, options: dict, **extra) -> tuple[dict, list[str]]:
    """A greedy reply without stop strings and its generated tokens' text (from logprobs)."""
    reply = _post(server, "/api/generate", {"model": model, "prompt": prompt, "options": options, "logprobs": True,
                                            "stream": False, **extra}).json()
    pieces = [lp["token"] for lp in reply["logprobs"]]
    assert "".join(pieces) == reply["response"]
    return reply, pieces


def _detokenized(server, model: str, tokens: list[int]) -> str:
    return _post(server, "/v1/detokenize", {"model": model, "tokens": tokens}).json()["content"]


def _stops(pieces: list[str]) -> tuple[str, int, str, int]:
    """Two stop strings from a reply's tokens, each found first where it is cut: one that starts inside a
    token (after its leading space, as the tester's "scary" after " s") and one that starts with a token."""
    text = "".join(pieces)
    starts = [sum(len(p) for p in pieces[:j]) for j in range(len(pieces))]
    inside = next((j for j in range(2, len(pieces) - 1) if pieces[j].startswith(" ") and len(pieces[j]) >= 2
                   and text.find(pieces[j][1:] + pieces[j + 1]) == starts[j] + 1), None)
    whole = next((j for j in range(2, len(pieces) - 1) if len(pieces[j]) >= 2
                  and text.find(pieces[j] + pieces[j + 1]) == starts[j]), None)
    assert inside is not None and whole is not None, pieces
    return pieces[inside][1:] + pieces[inside + 1], inside, pieces[whole] + pieces[whole + 1], whole


@pytest.mark.parametrize("stream", [False, True])
def test_the_context_leaves_out_a_matched_stop_string(server, stream):
    options = {"temperature": 0, "num_predict": 60}
    plain, pieces = _pieces(server, "stories260K", STORY, options)
    generated = plain["context"][plain["prompt_eval_count"]:]
    inside, j, whole, k = _stops(pieces)
    # a stop string starting inside a token: the tokens before it exactly, then that token's shown part
    # (its leading space) spelled again, so the context's reply reads as the response the client saw
    cut = _generate(server, {"prompt": STORY, "options": {**options, "stop": [inside]}}, stream)
    assert cut["done_reason"] == "stop" and cut["response"] == "".join(pieces[:j]) + " "
    ids = cut["context"][cut["prompt_eval_count"]:]
    assert _detokenized(server, "stories260K", ids) == cut["response"]
    assert ids[:j] == generated[:j] and len(ids) == j + 1
    assert cut["context"][:cut["prompt_eval_count"]] == plain["context"][:plain["prompt_eval_count"]]
    # one at a token's start: exactly the tokens generated before it
    cut = _generate(server, {"prompt": STORY, "options": {**options, "stop": [whole]}}, stream)
    assert cut["response"] == "".join(pieces[:k])
    assert cut["context"][cut["prompt_eval_count"]:] == generated[:k]
    # and the exchange continues from what the client saw
    more = _generate(server, {"prompt": "Then", "context": cut["context"], "options": GREEDY}, stream)
    assert more["context"][:len(cut["context"])] == cut["context"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_cut_by_length_or_ended_by_the_model_keeps_every_token(server, stream):
    plain = _generate(server, {"prompt": STORY, "options": {"temperature": 0, "num_predict": 40}}, stream)
    assert plain["done_reason"] == "length"
    assert len(plain["context"]) == plain["prompt_eval_count"] + plain["eval_count"]
    assert _detokenized(server, "stories260K", plain["context"][plain["prompt_eval_count"]:]) == plain["response"]
    # a reply that ends with the model's end-of-generation token (never part of the reply): a grammar that is
    # complete lets nothing else be sampled (stories260K, free, writes on until the limit)
    ended = _generate(server, {"prompt": STORY, "format": {"type": "string", "enum": ["once", "twice"]},
                               "options": {"temperature": 0, "num_predict": 40}}, stream)
    assert ended["done_reason"] == "stop" and ended["response"].strip() in ('"once"', '"twice"')
    assert len(ended["context"]) == ended["prompt_eval_count"] + ended["eval_count"]
    assert _detokenized(server, "stories260K", ended["context"][ended["prompt_eval_count"]:]) == ended["response"]


@pytest.mark.parametrize("stream", [False, True])
def test_fill_in_the_middle_leaves_a_stop_string_out_of_the_context_too(server, stream):
    options = {"temperature": 0, "num_predict": 20}
    body = {"prompt": "def add(a, b):", "suffix": "    return c"}
    plain, pieces = _pieces(server, FIM, body["prompt"], options, suffix=body["suffix"])
    generated = plain["context"][plain["prompt_eval_count"]:]
    _, _, whole, k = _stops(pieces)
    cut = _generate(server, {**body, "model": FIM, "options": {**options, "stop": [whole]}}, stream)
    assert cut["response"] == "".join(pieces[:k]) and cut["context"][cut["prompt_eval_count"]:] == generated[:k]


# -- images: named by the fields that sent them --------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path, body, message", [
    ("/api/generate", {"prompt": "x", "images": [JPEG]}, "images: model 'stories260K' cannot take images"),
    ("/api/generate", {"prompt": "x", "images": [JPEG, "not base64!"]}, "images[1]: invalid base64 image data"),
    # a data: URL is read as its base64 (llama-server's multimodal_data alike): one that is not base64 says so
    ("/api/generate", {"prompt": "x", "images": ["data:image/jpeg,%FF%D8"]},
     "images[0]: a data: URL here must be base64"),
    ("/api/generate", {"prompt": "x", "images": ["data:image/jpeg;base64,@@"]},
     "images[0]: the data: URL's data is not valid base64"),
    ("/api/chat", {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                {"role": "user", "content": "x", "images": [JPEG]}]},
     "messages[2].images: model 'stories260K' cannot take images"),
    ("/api/chat", {"messages": [{"role": "user", "content": "a"}, {"role": "user", "images": [JPEG, "%%"]}]},
     "messages[1].images[1]: invalid base64 image data"),
])
def test_images_errors_name_the_ollama_field(server, path, body, message, stream):
    response = _post(server, path, {"model": "stories260K", **body, "stream": stream})
    assert response.status_code == 400 and list(response.json()) == ["error"]
    error = response.json()["error"]
    assert error.startswith(message) and "content parts" not in error and "prompt." not in error
