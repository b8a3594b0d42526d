"""The texts a thread or an assistant keeps are bounded as OpenAI bounds an assistant's (name 256, description 512,
instructions 256,000 characters; a thread's title as a description): one over its bound is a 400 naming the field,
on every route that takes it, never stored (a 100,000-character title was kept, and carried by every thread list);
one at its bound is taken."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import running
from extension_helpers import call

from jan.server.schemas import DESCRIPTION_MAX_CHARS, INSTRUCTIONS_MAX_CHARS, NAME_MAX_CHARS

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("bounds") / "data", stories_path) as srv:
        yield srv


@pytest.fixture(scope="module")
def thread_id(server) -> str:
    status, thread = call(server, "POST", "/v1/threads", {"title": "bounded"})
    assert status == 200, thread
    return thread["id"]


@pytest.fixture(scope="module")
def assistant_id(server) -> str:
    status, assistant = call(server, "POST", "/v1/assistants", {"name": "bounded", "model": "*"})
    assert status == 200, assistant
    return assistant["id"]


#: name -> (method, path (with {thread}/{assistant}), body of a text of n characters, the field the 400 names, bound)
CASES: dict[str, tuple[str, str, Any, str, int]] = {
    "thread create title": ("POST", "/v1/threads", lambda t: {"title": t}, "title", DESCRIPTION_MAX_CHARS),
    "thread modify title": ("PATCH", "/v1/threads/{thread}", lambda t: {"title": t}, "title", DESCRIPTION_MAX_CHARS),
    "thread modify title (POST)": ("POST", "/v1/threads/{thread}", lambda t: {"title": t}, "title",
                                   DESCRIPTION_MAX_CHARS),
    "assistant create name": ("POST", "/v1/assistants", lambda t: {"name": t, "model": "*"}, "name", NAME_MAX_CHARS),
    "assistant create description": ("POST", "/v1/assistants", lambda t: {"description": t, "model": "*"},
                                     "description", DESCRIPTION_MAX_CHARS),
    "assistant create instructions": ("POST", "/v1/assistants", lambda t: {"instructions": t, "model": "*"},
                                      "instructions", INSTRUCTIONS_MAX_CHARS),
    "assistant modify name": ("POST", "/v1/assistants/{assistant}", lambda t: {"name": t}, "name", NAME_MAX_CHARS),
}


def _path(template: str, thread_id: str, assistant_id: str) -> str:
    return template.format(thread=thread_id, assistant=assistant_id)


@pytest.mark.parametrize("name", list(CASES))
def test_a_text_over_its_bound_is_refused_naming_it(server, thread_id, assistant_id, name):
    method, path, body, field, bound = CASES[name]
    status, answer = call(server, method, _path(path, thread_id, assistant_id), body("y" * (bound + 1)))
    assert status == 400, answer
    assert answer["error"]["param"] == field and str(bound) in answer["error"]["message"], answer


@pytest.mark.parametrize("name", list(CASES))
def test_a_text_at_its_bound_is_taken(server, thread_id, assistant_id, name):
    method, path, body, field, bound = CASES[name]
    status, answer = call(server, method, _path(path, thread_id, assistant_id), body("y" * bound))
    assert status == 200, answer
    assert answer[field] == "y" * bound


def test_a_new_threads_title_in_a_thread_and_run_is_bounded_too(server):
    status, answer = call(server, "POST", "/v1/threads/runs", {
        "assistant_id": "jan", "thread": {"title": "y" * (DESCRIPTION_MAX_CHARS + 1), "messages": HI}})
    assert status == 400 and answer["error"]["param"] == "thread.title", answer
