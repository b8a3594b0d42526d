"""A prompt longer than the context is refused in the words client libraries recognise.

litellm tells that refusal from any other 400 by OpenAI's message ("This model's maximum context length is N
tokens. ..."), not by the ``context_length_exceeded`` code: with jan's own words alone, litellm raised a plain
BadRequestError where its callers wait for ContextWindowExceededError (its context-window fallbacks, the agents that
trim their history on it). Every route whose error carries a message of jan's: the OpenAI routes, Ollama's and
llama-server's. (Anthropic's own words, "prompt is too long: N tokens > M maximum", are tested with that dialect.)"""

from __future__ import annotations

import re

import pytest

from server_helpers import post, start_server

N_CTX = 256
LONG = "one two three " * 200  # (600 tokens and more: longer than N_CTX, within the embedding context)
OPENAI_WORDS = re.compile(r"^This model's maximum context length is (\d+) tokens\. However, your request has (\d+) "
                          r"input tokens: ")


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("overflow"), [stories_path], n_ctx=N_CTX, n_parallel=1)
    yield srv
    srv.stop()


def _numbers(message: str) -> tuple[int, int]:
    match = OPENAI_WORDS.match(message)
    assert match, message
    return int(match[1]), int(match[2])


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}], "max_tokens": 4}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}], "max_tokens": 4, "stream": True},
     "messages"),
    ("/v1/completions", {"prompt": LONG, "max_tokens": 4}, "prompt"),
    ("/v1/responses", {"input": LONG, "max_output_tokens": 4}, "input"),
    ("/v1/responses", {"input": LONG, "max_output_tokens": 4, "stream": True}, "input"),
])
def test_openai_routes_say_it_in_openai_words(server, path, body, param):
    response = post(server, path, {"model": "stories260K", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == param
    n_ctx, n_tokens = _numbers(error["message"])
    assert n_ctx == N_CTX and n_tokens > N_CTX
    assert f"the context holds {N_CTX}" in error["message"]  # jan's own words follow
    # ... naming the setting to change as this API knows it (the model.json's ctx_len: the services' advice is data,
    # which the CLI says as its -c/--ctx-size)
    assert "use a larger context (ctx_len)" in error["message"], error["message"]


def test_an_embedding_input_longer_than_its_context_says_it_too(server):
    response = post(server, "/v1/embeddings", {"model": "stories260K", "input": "word " * 5000})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    n_ctx, n_tokens = _numbers(error["message"])
    assert error["code"] == "context_length_exceeded" and n_tokens > n_ctx


@pytest.mark.parametrize("path,body", [
    ("/api/chat", {"messages": [{"role": "user", "content": LONG}], "stream": False}),
    ("/api/generate", {"prompt": LONG, "stream": False}),
])
def test_ollama_routes_say_it_too(server, path, body):
    response = post(server, path, {"model": "stories260K", **body})
    assert response.status_code == 400 and list(response.json()) == ["error"], response.text
    n_ctx, n_tokens = _numbers(response.json()["error"])
    assert n_ctx == N_CTX and n_tokens > N_CTX
    # the setting to change said as Ollama's clients know it (a Modelfile PARAMETER), not as jan's model.json key
    # alone: the advice is data, each dialect names it its own way
    message = response.json()["error"]
    assert "use a larger context (num_ctx)" in message, message


@pytest.mark.parametrize("path,body", [
    ("/api/chat", {"messages": [{"role": "user", "content": LONG}], "stream": False}),
    ("/api/chat", {"messages": [{"role": "user", "content": LONG}]}),
    ("/api/generate", {"prompt": LONG, "stream": False}),
    ("/api/generate", {"prompt": LONG, "raw": True}),
])
def test_ollama_advice_says_where_num_ctx_is_set(server, path, body):
    """A client that already sent a larger ``options.num_ctx`` (Open WebUI sends one with every request) was told
    "use a larger context (num_ctx)" and nothing else: jan reads that option but applies a model's context per
    model (README: ignored per request), so the advice sent it round in a circle. It now says where num_ctx is set."""
    response = post(server, path, {"model": "stories260K", "options": {"num_ctx": 8 * N_CTX}, **body})
    assert response.status_code == 400 and list(response.json()) == ["error"], response.text
    message = response.json()["error"]
    assert _numbers(message)[0] == N_CTX
    assert "use a larger context (num_ctx)" in message, message
    assert "/api/create's parameters" in message and "ctx_len" in message, message
    assert "options.num_ctx is not applied" in message, message


def test_llama_server_route_keeps_its_shape_and_says_it_too(server):
    response = post(server, "/completion", {"prompt": LONG, "n_predict": 4})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "exceed_context_size_error" and error["n_ctx"] == N_CTX
    assert _numbers(error["message"]) == (N_CTX, error["n_prompt_tokens"])


@pytest.mark.parametrize("prompt,param", [
    (["Once", LONG], "prompt[1]"),
    ([LONG, "Once"], "prompt[0]"),
    ([[1, 2], [1] + [300] * 400], "prompt[1]"),  # token lists alike
    (LONG, "prompt"),  # one prompt: its field
])
def test_a_list_of_prompts_names_the_one_too_long(server, prompt, param):
    """A list of prompts: the error names the one the context cannot hold (it said ``prompt`` for any of them, and
    the message's numbers were that one's, so a client could not tell which to shorten)."""
    response = post(server, "/v1/completions", {"model": "stories260K", "prompt": prompt, "max_tokens": 4})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == param, error
    assert _numbers(error["message"])[0] == N_CTX
