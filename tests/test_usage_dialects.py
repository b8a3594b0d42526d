"""Token usage told the same way by every front end: one generation's prompt, completion, reasoning and cached
prompt tokens are the same numbers in each dialect's own fields (:class:`jan.services.token_counts.TokenCounts`,
renamed).

Each front end asks the same thing of a tiny QwQ model (its prompt opens ``<think>``: all it writes within the token
limit is reasoning) twice in a row, cut by its token limit: the counts of the second answer are compared with those
of a chat completion (``/v1/chat/completions``, not streamed): the prompt's size, the tokens generated, the
thinking's share of them (where the dialect has a field for it) and the prompt's prefix the KV cache held from the
first answer (where the dialect has one). One slot, so the second answer finds the first's prefix.

The fault this guards: Assistants runs (their ``usage``, their steps' and their messages' ``metadata.usage``) told
no ``completion_tokens_details.reasoning_tokens``, which ``/v1/chat/completions`` tells for the same generation.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import openai
import pytest

from api_helpers import parse_sse, until
from dialect_helpers import named_events, reasoning_model
from server_helpers import start_server

MODEL = "qwq-tiny"
ASK = "What is 2+2?"
MESSAGES = [{"role": "user", "content": ASK}]
LIMIT = 6  # tokens: the reply is cut inside its thinking (finish "length", all of it reasoning)
WAIT_S = 300.0


@dataclass(frozen=True)
class Counts:
    """What a dialect's usage says, read from its own fields: None where it has no field for it."""

    prompt: int
    completion: int
    reasoning: int | None
    cached: int | None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("usage-dialects")
    # one slot and no host-memory cache: each answer's cached prefix is the slot's, left by the one before
    srv = start_server(tmp, [reasoning_model(tmp)], n_parallel=1, cache_ram_mib=0)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _post(server, path: str, body: dict) -> httpx.Response:
    response = httpx.post(server.base_url + path, json=body, timeout=120)
    assert response.status_code == 200, (path, response.text)
    return response


def _get(server, path: str) -> dict:
    response = httpx.get(server.base_url + path, timeout=120)
    assert response.status_code == 200, (path, response.text)
    return response.json()


def _sse(response: httpx.Response) -> list[tuple[str | None, Any]]:
    """(event name or None, data) of an SSE body; ``[DONE]`` left out."""
    return [(name, data) for name, data in parse_sse(response.text) if isinstance(data, dict)]


def _ended(get: Callable[[], dict], what: str) -> dict:
    """``get()``'s answer once its ``status`` no longer says it is under way."""
    return until(lambda: (value := get())["status"] not in ("validating", "queued", "in_progress", "finalizing")
                 and value, what, WAIT_S)


# -- each dialect's fields -------------------------------------------------------------------------------------
def _openai(usage: dict) -> Counts:
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], usage
    return Counts(usage["prompt_tokens"], usage["completion_tokens"],
                  usage["completion_tokens_details"]["reasoning_tokens"],
                  usage["prompt_tokens_details"]["cached_tokens"])


def _responses(usage: dict) -> Counts:
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"], usage
    return Counts(usage["input_tokens"], usage["output_tokens"], usage["output_tokens_details"]["reasoning_tokens"],
                  usage["input_tokens_details"]["cached_tokens"])


def _anthropic(usage: dict) -> Counts:
    # input_tokens leave the cached prefix out; Anthropic has no reasoning count (output_tokens hold the thinking)
    cached = usage["cache_read_input_tokens"]
    return Counts(usage["input_tokens"] + cached + usage["cache_creation_input_tokens"], usage["output_tokens"], None,
                  cached)


def _openai_text(usage: dict) -> Counts:
    """A text completion's usage: OpenAI's chat names, no reasoning count (it parses no thinking)."""
    assert "reasoning_tokens" not in (usage.get("completion_tokens_details") or {}), usage
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], usage
    return Counts(usage["prompt_tokens"], usage["completion_tokens"], None,
                  usage["prompt_tokens_details"]["cached_tokens"])


def _llamacpp(result: dict) -> Counts:
    """llama-server's: the prompt evaluated or not (``tokens_evaluated``), the cached part in ``timings``."""
    timings = result["timings"]
    assert timings["cache_n"] + timings["prompt_n"] == result["tokens_evaluated"], result
    assert timings["predicted_n"] == result["tokens_predicted"], result
    return Counts(result["tokens_evaluated"], result["tokens_predicted"], None, timings["cache_n"])


def _ollama(answer: dict) -> Counts:
    return Counts(answer["prompt_eval_count"], answer["eval_count"], None, None)


# -- each front end, asking the same -------------------------------------------------------------------------
def chat(server) -> Counts:
    body = _post(server, "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "temperature": 0,
                                                   "max_tokens": LIMIT, "reasoning_effort": "high"}).json()
    assert body["choices"][0]["finish_reason"] == "length"
    return _openai(body["usage"])


def chat_streamed(server) -> Counts:
    events = _sse(_post(server, "/v1/chat/completions", {
        "model": MODEL, "messages": MESSAGES, "temperature": 0, "max_tokens": LIMIT, "reasoning_effort": "high",
        "stream": True, "stream_options": {"include_usage": True}}))
    [usage] = [data["usage"] for _, data in events if data.get("usage")]
    return _openai(usage)


def _responses_body(**extra) -> dict:
    return {"model": MODEL, "input": ASK, "temperature": 0, "max_output_tokens": LIMIT,
            "reasoning": {"effort": "high"}, **extra}


def responses(server) -> Counts:
    body = _post(server, "/v1/responses", _responses_body()).json()
    assert body["status"] == "incomplete"
    return _responses(body["usage"])


def responses_streamed(server) -> Counts:
    events = _sse(_post(server, "/v1/responses", _responses_body(stream=True)))
    [final] = [data["response"] for name, data in events if name == "response.incomplete"]
    return _responses(final["usage"])


def responses_stored(server) -> Counts:
    """A stored response read back with GET tells the usage it was answered with."""
    answered = _post(server, "/v1/responses", _responses_body(store=True)).json()
    stored = _get(server, f"/v1/responses/{answered['id']}")
    assert stored["usage"] == answered["usage"]
    return _responses(stored["usage"])


def _messages_body(**extra) -> dict:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": LIMIT, "temperature": 0,
            "thinking": {"type": "adaptive"}, **extra}  # (adaptive: a budget is at least 1024 tokens, over LIMIT)


def anthropic_messages(server) -> Counts:
    body = _post(server, "/v1/messages", _messages_body()).json()
    assert body["stop_reason"] == "max_tokens"
    return _anthropic(body["usage"])


def anthropic_streamed(server) -> Counts:
    response = _post(server, "/v1/messages", _messages_body(stream=True))
    events = named_events(response.content)
    [start] = [data["message"]["usage"] for name, data in events if name == "message_start"]
    [delta] = [data["usage"] for name, data in events if name == "message_delta"]
    # message_start tells the prompt as message_delta does (the same split of it), before any output
    assert (start["input_tokens"], start["cache_read_input_tokens"], start["output_tokens"]) == (
        delta["input_tokens"], delta["cache_read_input_tokens"], 0)
    return _anthropic(delta)


def ollama_chat(server) -> Counts:
    body = _post(server, "/api/chat", {"model": MODEL, "messages": MESSAGES, "stream": False, "think": True,
                                       "options": {"temperature": 0, "num_predict": LIMIT}}).json()
    return _ollama(body)


def ollama_chat_streamed(server) -> Counts:
    lines = [json.loads(line) for line in _post(server, "/api/chat", {
        "model": MODEL, "messages": MESSAGES, "stream": True, "think": True,
        "options": {"temperature": 0, "num_predict": LIMIT}}).text.splitlines() if line.strip()]
    assert lines[-1]["done"]
    return _ollama(lines[-1])


def ollama_generate(server) -> Counts:
    body = _post(server, "/api/generate", {"model": MODEL, "prompt": ASK, "stream": False, "think": True,
                                           "options": {"temperature": 0, "num_predict": LIMIT}}).json()
    return _ollama(body)


def _rendered(server) -> str:
    """The chat's prompt as text (the model's template applied, thinking opened), for the text endpoints."""
    return _post(server, "/apply-template", {"model": MODEL, "messages": MESSAGES,
                                             "reasoning_effort": "high"}).json()["prompt"]


def completions(server) -> Counts:
    body = _post(server, "/v1/completions", {"model": MODEL, "prompt": _rendered(server), "temperature": 0,
                                             "max_tokens": LIMIT}).json()
    return _openai_text(body["usage"])


def completions_streamed(server) -> Counts:
    events = _sse(_post(server, "/v1/completions", {
        "model": MODEL, "prompt": _rendered(server), "temperature": 0, "max_tokens": LIMIT, "stream": True,
        "stream_options": {"include_usage": True}}))
    [usage] = [data["usage"] for _, data in events if data.get("usage") and not data.get("choices")]
    return _openai_text(usage)


def llamacpp_completion(server) -> Counts:
    body = _post(server, "/completion", {"model": MODEL, "prompt": _rendered(server), "temperature": 0,
                                         "n_predict": LIMIT}).json()
    return _llamacpp(body)


def llamacpp_completion_streamed(server) -> Counts:
    events = _sse(_post(server, "/completion", {"model": MODEL, "prompt": _rendered(server), "temperature": 0,
                                                "n_predict": LIMIT, "stream": True}))
    assert events[-1][1]["stop"]
    return _llamacpp(events[-1][1])


def _run_body(**extra) -> dict:
    return {"assistant_id": "jan", "model": MODEL, "thread": {"messages": MESSAGES}, "temperature": 0,
            "max_completion_tokens": LIMIT, "reasoning_effort": "high", **extra}


def _ended_run(server, thread_id: str, run_id: str) -> dict:
    return _ended(lambda: _get(server, f"/v1/threads/{thread_id}/runs/{run_id}"), f"run {run_id}")


def run(server) -> Counts:
    """An Assistants run (polled), its step and its message each tell the turn's usage (one turn: the same)."""
    created = _post(server, "/v1/threads/runs", _run_body()).json()
    ended = _ended_run(server, created["thread_id"], created["id"])
    assert ended["status"] == "incomplete", ended
    steps = _get(server, f"/v1/threads/{created['thread_id']}/runs/{created['id']}/steps")["data"]
    [step] = [s for s in steps if s["type"] == "message_creation"]
    assert step["usage"] == ended["usage"]
    message = _get(server, f"/v1/threads/{created['thread_id']}/messages/"
                           f"{step['step_details']['message_creation']['message_id']}")
    assert message["metadata"]["usage"] == ended["usage"], message["metadata"]
    return _openai(ended["usage"])


def run_streamed(server) -> Counts:
    """A streamed run's terminal event carries the run's usage."""
    events = _sse(_post(server, "/v1/threads/runs", _run_body(stream=True)))
    [final] = [data for name, data in events if name in ("thread.run.completed", "thread.run.incomplete")]
    [step] = [data for name, data in events if name == "thread.run.step.completed"]
    assert step["usage"] == final["usage"]
    return _openai(final["usage"])


FRONT_ENDS = [chat_streamed, responses, responses_streamed, responses_stored, anthropic_messages,
              anthropic_streamed, ollama_chat, ollama_chat_streamed, ollama_generate, completions,
              completions_streamed, llamacpp_completion, llamacpp_completion_streamed, run, run_streamed]


@pytest.fixture(scope="module")
def reference(server) -> Counts:
    """The chat completion's counts of the second of two answers: what every front end must tell."""
    chat(server)
    counts = chat(server)
    assert counts.completion == LIMIT and counts.reasoning == LIMIT  # all thinking: QwQ's prompt opened it
    assert 0 < counts.cached < counts.prompt  # the first answer's prompt, less the token evaluated again
    return counts


@pytest.mark.parametrize("front_end", FRONT_ENDS, ids=lambda f: f.__name__)
def test_every_front_end_tells_the_same_counts_in_its_fields(server, reference, front_end):
    front_end(server)  # the first: its prompt is then in the slot
    counts = front_end(server)
    assert counts.prompt == reference.prompt and counts.completion == reference.completion, (counts, reference)
    if counts.reasoning is not None:
        assert counts.reasoning == reference.reasoning, (counts, reference)
    if counts.cached is not None:
        assert counts.cached == reference.cached, (counts, reference)


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/messages/count_tokens", {"model": MODEL, "messages": MESSAGES, "thinking": {"type": "adaptive"}},
     "input_tokens"),
    ("/v1/responses/input_tokens", {"model": MODEL, "input": ASK, "reasoning": {"effort": "high"}}, "input_tokens"),
], ids=["anthropic", "responses"])
def test_counting_the_prompt_tells_what_the_answer_counts(server, reference, path, body, field):
    assert _post(server, path, body).json()[field] == reference.prompt


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/responses"])
def test_a_batch_tells_its_items_counts_summed(server, client, reference, endpoint):
    """A batch's usage (Responses' names) is its items' summed, cached and reasoning tokens too (they read 0)."""
    body = ({"model": MODEL, "messages": MESSAGES, "temperature": 0, "max_tokens": LIMIT, "reasoning_effort": "high"}
            if endpoint == "/v1/chat/completions" else _responses_body())
    lines = [{"custom_id": f"item-{i}", "method": "POST", "url": endpoint, "body": body} for i in range(2)]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    upload = client.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint=endpoint, completion_window="24h")
    batch = client.batches.retrieve(_ended(lambda: _get(server, f"/v1/batches/{batch.id}"), "batch")["id"])
    assert batch.status == "completed" and batch.request_counts.completed == 2, batch
    read = _openai if endpoint == "/v1/chat/completions" else _responses
    items = [read(json.loads(line)["response"]["body"]["usage"])
             for line in client.files.content(batch.output_file_id).text.splitlines() if line.strip()]
    for counts in items:
        assert (counts.prompt, counts.completion, counts.reasoning) == (
            reference.prompt, reference.completion, reference.reasoning), counts
    assert sum(c.cached for c in items) > 0  # the second item, at least, found the first's prompt
    usage = batch.usage.model_dump()
    assert _responses(usage) == Counts(sum(c.prompt for c in items), sum(c.completion for c in items),
                                       sum(c.reasoning for c in items), sum(c.cached for c in items))


# -- without a model: the renaming of one count ---------------------------------------------------------------
def test_each_dialect_renames_the_same_counts():
    from jan.engine.results import Usage
    from jan.server.dialects.anthropic import _usage as anthropic_usage
    from jan.server.dialects.responses import _usage as responses_usage
    from jan.server.openai_wire import usage_dict
    from jan.services.runs import usage_fields

    usage = Usage(prompt_tokens=40, completion_tokens=9, cached_tokens=31)
    expected = Counts(40, 9, 5, 31)
    assert _openai(usage_dict(usage, 5)) == expected
    assert _openai(usage_fields(usage, 5)) == expected
    assert _responses(responses_usage(usage, 5)) == expected
    assert _anthropic(anthropic_usage(usage)) == Counts(40, 9, None, 31)
    assert _openai_text(usage_dict(usage)) == Counts(40, 9, None, 31)
    # a part is never told larger than its whole (an engine whose cache count is past the prompt's)
    odd = Usage(prompt_tokens=3, completion_tokens=2, cached_tokens=7)
    assert _openai(usage_dict(odd, 4)) == _responses(responses_usage(odd, 4)) == Counts(3, 2, 2, 3)
    assert anthropic_usage(odd)["input_tokens"] == 0


def test_a_runs_usage_sums_each_turns_details():
    """A run of two model turns (a tool call, then the answer) tells both turns' reasoning and cached tokens; a
    turn's usage an older jan saved (no details) adds nothing to them."""
    from jan.engine.results import Usage
    from jan.services.runs import add_usage, usage_fields

    calling = usage_fields(Usage(prompt_tokens=30, completion_tokens=12, cached_tokens=0), 8)
    answering = usage_fields(Usage(prompt_tokens=50, completion_tokens=6, cached_tokens=41), 2)
    total = add_usage(add_usage(None, calling), answering)
    assert _openai(total) == Counts(80, 18, 10, 41)
    assert calling["completion_tokens_details"] == {"reasoning_tokens": 8}  # (summing copied, never changed it)
    old = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    assert _openai(add_usage(total, old)) == Counts(85, 19, 10, 41)
    assert "completion_tokens_details" not in add_usage(old, old)
