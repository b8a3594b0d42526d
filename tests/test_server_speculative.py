"""Speculative decoding and KV cache options through `jan serve`: per server, per request, usage, /metrics."""

from __future__ import annotations

import urllib.request

import openai
import pytest

import jan
from server_helpers import start_server
from test_speculative import COPY_PROMPT


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("spec"), [stories_path], speculative="ngram", draft_max=8, ngram=2,
                       cache_type_k="f32", cache_type_v="f32")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_served_speculative_output_is_plain_greedy_and_reports_acceptance(client, server, stories_path):
    with jan.Model(stories_path, n_ctx=512, n_threads=1) as m:
        expected = m.generate(COPY_PROMPT, max_tokens=80, temperature=0).text
    result = client.completions.create(model="stories260K", prompt=COPY_PROMPT, max_tokens=80, temperature=0)
    assert result.choices[0].text == expected
    details = result.usage.completion_tokens_details
    assert details is not None and details.accepted_prediction_tokens > 0
    metrics = urllib.request.urlopen(server.base_url + "/metrics").read().decode()
    accepted = [line for line in metrics.splitlines() if line.startswith("jan_draft_tokens_accepted_total{")]
    assert accepted and float(accepted[0].rsplit(" ", 1)[1]) > 0


def test_a_request_can_turn_drafting_off(client):
    result = client.completions.create(model="stories260K", prompt=COPY_PROMPT, max_tokens=40, temperature=0,
                                       extra_body={"speculative": "none"})
    assert result.usage.completion_tokens_details is None or not result.usage.completion_tokens_details.accepted_prediction_tokens


def test_bad_speculative_option_is_a_400(client):
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="stories260K", prompt="Once", max_tokens=2, extra_body={"speculative": "eagle"})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=2, extra_body={"draft_max": -1})
