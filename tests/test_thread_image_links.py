"""An image a thread message links to (an ``image_url`` part whose URL is ``http(s)://``): the store keeps such a
link as it was given (the library, an import, a hand edit; the server's routes fetch one when the message is
written), and a run left it out of the prompt without a word. A run now fetches it with the fetcher chat
completions use (``--allow-media-from``, its limits and errors): a link it may not fetch, or a model that cannot
see it, is the run request's 400 naming the message and the part; a fetch that fails once the run is under way
ends the run ``failed``, its ``last_error`` naming them."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from aiohttp import web

from api_helpers import AppThread, png_bytes
from jan.errors import MediaError
from jan.services.runs import thread_files
from jan.store import DataFolder
from run_helpers import wait_for_run_sync
from server_helpers import start_server


PNG = png_bytes()


class ImageHost(AppThread):
    """/img/photo.png; /img/once.png answers the image to its first GET and 404 after (a link that breaks between
    the run's request and its turn); /img/missing.png is a 404."""

    def routes(self, router) -> None:
        served: list[int] = []

        async def photo(_request):
            return web.Response(body=PNG, content_type="image/png")

        async def once(_request):
            served.append(1)
            if len(served) > 1:
                raise web.HTTPNotFound()
            return web.Response(body=PNG, content_type="image/png")

        router.add_get("/img/photo.png", photo)
        router.add_get("/img/once.png", once)


@pytest.fixture(scope="module")
def host():
    with ImageHost() as h:
        yield h


def _linked(url: str) -> list[dict]:
    return [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": url}}]


def _stored_thread(server, content) -> tuple[str, str]:
    """A thread holding one user message with ``content``, written by the library (which keeps a link as it is)."""
    folder = DataFolder(server.config.data_folder)
    thread = folder.threads.create(messages=[{"role": "user", "content": content}])
    message = folder.messages.list(thread["id"]).data[0]
    assert message["content"][1]["type"] == ("image_file" if content[1]["image_url"]["url"].startswith("data:")
                                             else "image_url")  # a link kept as it is
    return thread["id"], message["id"]


def _run(client: httpx.Client, thread_id: str, model: str) -> httpx.Response:
    return client.post(f"/v1/threads/{thread_id}/runs", json={"model": model, "max_tokens": 2, "temperature": 0})


def _ended(client: httpx.Client, response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return wait_for_run_sync(lambda path: client.get(path).json(), response.json())


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair, stories_path, host):
    srv = start_server(tmp_path_factory.mktemp("links"), [vision_pair[0], stories_path],
                       allow_media_from=[host.base + "/img/"])
    yield srv
    srv.stop()


def test_a_run_sends_the_image_a_stored_link_names(server, host):
    client = httpx.Client(base_url=server.base_url, timeout=300)
    inline, _ = _stored_thread(server, _linked("data:image/png;base64," + base64.b64encode(PNG).decode()))
    linked, _ = _stored_thread(server, _linked(host.base + "/img/photo.png"))
    with_image = _ended(client, _run(client, inline, "vision-chat"))
    with_link = _ended(client, _run(client, linked, "vision-chat"))
    assert with_link["status"] in ("completed", "incomplete"), with_link
    # the same prompt: the image's 64 tokens are in it (it was left out: 9 tokens)
    assert with_link["usage"]["prompt_tokens"] == with_image["usage"]["prompt_tokens"] > 64


def test_a_link_the_run_cannot_use_is_the_requests_400(server, host):
    client = httpx.Client(base_url=server.base_url, timeout=300)
    for url, model, code in ((host.base + "/other/photo.png", "vision-chat", "not_allowed"),
                             (host.base + "/img/missing.png", "vision-chat", "fetch_failed"),
                             (host.base + "/img/photo.png", "stories260K", "no_projector")):
        thread_id, message_id = _stored_thread(server, _linked(url))
        response = _run(client, thread_id, model)
        assert response.status_code == 400, (url, model, response.text)
        error = response.json()["error"]
        assert error["code"] == code, error
        assert error["param"] == f"message {message_id} content[1].image_url.url", error
        assert error["message"].startswith(error["param"] + ": "), error
        assert client.get(f"/v1/threads/{thread_id}/runs").json()["data"] == []


def test_a_link_that_breaks_under_way_fails_the_run(server, host):
    client = httpx.Client(base_url=server.base_url, timeout=300)
    thread_id, message_id = _stored_thread(server, _linked(host.base + "/img/once.png"))
    run = _ended(client, _run(client, thread_id, "vision-chat"))  # read when asked for, a 404 by its turn
    assert run["status"] == "failed", run
    message = run["last_error"]["message"]
    assert f"message {message_id} content[1].image_url.url" in message and "404" in message, run


def test_without_a_fetcher_a_link_is_refused_not_dropped():
    """The library's runs (no server, no --allow-media-from): a linked image is a MediaError naming the part."""

    class Store:
        async def read_file(self, thread_id, file_id):
            raise AssertionError("no file is named")

    message = {"id": "msg_1", "role": "user", "content": _linked("https://example.com/photo.png")}
    with pytest.raises(MediaError) as info:
        asyncio.run(thread_files(Store(), "thread_1", [message]))
    assert info.value.reason == "not_allowed" and info.value.param == "message msg_1 content[1].image_url.url"


@pytest.mark.parametrize("inline", [False, True], ids=["link", "data-url"])
def test_a_model_without_a_projector_refuses_the_image_part_the_run_request_sent(server, host, inline):
    """The refusal names the body's part (it named the prompt's ``messages[0]``, with ``param`` ``messages``), and
    the messages the refused request would have added are not left in the thread (they stayed)."""
    client = httpx.Client(base_url=server.base_url, timeout=300)
    url = "data:image/png;base64," + base64.b64encode(PNG).decode() if inline else host.base + "/img/photo.png"
    thread_id = client.post("/v1/threads", json={}).json()["id"]
    response = client.post(f"/v1/threads/{thread_id}/runs", json={
        "model": "stories260K", "max_tokens": 2,
        "additional_messages": [{"role": "user", "content": "Hello"}, {"role": "user", "content": _linked(url)}]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("no_projector", "additional_messages[1].content[1].image_url.url")
    assert error["message"].startswith(error["param"] + ": ") and "no projector" in error["message"], error
    assert client.get(f"/v1/threads/{thread_id}/messages").json()["data"] == []

    threads = len(client.get("/v1/threads", params={"limit": 100}).json()["data"])
    response = client.post("/v1/threads/runs", json={"model": "stories260K", "max_tokens": 2, "thread": {
        "messages": [{"role": "user", "content": "Hello"}, {"role": "user", "content": _linked(url)}]}})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("no_projector", "thread.messages[1].content[1].image_url.url")
    assert len(client.get("/v1/threads", params={"limit": 100}).json()["data"]) == threads


def test_a_responses_turn_in_a_conversation_reads_its_linked_image(server, host):
    """A conversation is a thread: a Responses turn reads a link its messages keep as a run does (it was left out)."""
    client = httpx.Client(base_url=server.base_url, timeout=300)
    folder = DataFolder(server.config.data_folder)

    def turn(content) -> httpx.Response:
        conversation = client.post("/v1/conversations", json={}).json()["id"]
        folder.messages.create(conversation, "user", content)
        return client.post("/v1/responses", json={"model": "vision-chat", "conversation": conversation,
                                                  "input": "Describe it.", "max_output_tokens": 2})

    inline = turn(_linked("data:image/png;base64," + base64.b64encode(PNG).decode()))
    linked = turn(_linked(host.base + "/img/photo.png"))
    assert inline.status_code == linked.status_code == 200, (inline.text, linked.text)
    assert linked.json()["usage"]["input_tokens"] == inline.json()["usage"]["input_tokens"] > 64
    refused = turn(_linked(host.base + "/other/photo.png"))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "not_allowed" and error["param"].endswith(" content[1].image_url.url"), error
