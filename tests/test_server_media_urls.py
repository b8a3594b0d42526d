"""Images by URL or path: refused by default (400 naming the field), fetched for a server started
with ``--allow-media-from`` (``ServerConfig.allow_media_from``) — only from the allowed URL
prefixes and folders, size-limited, redirects re-checked — through OpenAI, Anthropic and Responses."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import anthropic
import openai
import pytest
from aiohttp import web

from api_helpers import AppThread, png_bytes
from server_helpers import start_server

QUESTION = "What is in this picture?"


PNG = png_bytes()


class ImageHost(AppThread):
    """A tiny web server for images, in a thread: /img/photo.png, redirects, a 404, a huge file."""

    def routes(self, router) -> None:
        async def photo(_request):
            return web.Response(body=PNG, content_type="image/png")

        async def huge(_request):
            response = web.StreamResponse()
            response.content_length = 64 * 1024 * 1024  # announced: refused before it is read
            await response.prepare(_request)
            await response.write(PNG)
            return response

        def redirect(to: str):
            async def handler(_request):
                raise web.HTTPFound(to)
            return handler

        router.add_get("/img/photo.png", photo)
        router.add_get("/img/moved.png", redirect("/img/photo.png"))
        router.add_get("/img/away.png", redirect("/private/photo.png"))
        router.add_get("/private/photo.png", photo)
        router.add_get("/img/huge.png", huge)

        async def silent(request):  # answers nothing until the fetcher gave up and hung up (or a minute passed)
            for _ in range(1200):
                if request.transport is None or request.transport.is_closing():
                    break
                await asyncio.sleep(0.05)
            return web.Response(body=PNG, content_type="image/png")

        router.add_get("/img/silent.png", silent)


@pytest.fixture(scope="module")
def host():
    with ImageHost() as h:
        yield h


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures")
    (path / "photo.png").write_bytes(PNG)
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    outside.write_bytes(PNG)
    os.symlink(outside, path / "link.png")  # inside the folder, pointing out of it
    if hasattr(os, "mkfifo"):
        os.mkfifo(path / "pipe.png")  # a named pipe: opening it to read waits for a writer that never comes
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_pair, host, folder):
    srv = start_server(tmp_path_factory.mktemp("media-urls"), [vision_pair[0]],
                       allow_media_from=[host.base + "/img/", str(folder)])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory, vision_pair):
    srv = start_server(tmp_path_factory.mktemp("media-plain"), [vision_pair[0]])
    yield srv
    srv.stop()


def _client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _ask(client, url: str):
    return client.chat.completions.create(model="vision-chat", max_tokens=5, temperature=0, messages=[
        {"role": "user", "content": [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": url}}]}])


def _error(exc) -> dict:
    body = exc.body if isinstance(exc.body, dict) else json.loads(exc.response.text)
    return body.get("error", body)


@pytest.fixture(scope="module")
def inline_answer(server):
    return _ask(_client(server), "data:image/png;base64," + base64.b64encode(PNG).decode()).choices[0].message.content


@pytest.mark.parametrize("where", ["/img/photo.png", "/img/moved.png", "file", "path", "upper_case_scheme",
                                   "dot_segments_inside"])
def test_allowed_urls_and_paths_give_the_inline_answer(server, host, folder, inline_answer, where):
    url = {"file": f"file://{folder}/photo.png", "path": str(folder / "photo.png"),
           # the same URLs as the allowed prefix's, written otherwise (RFC 3986: the scheme is case-insensitive)
           "upper_case_scheme": "HTTP" + host.base[4:] + "/img/photo.png",
           "dot_segments_inside": host.base + "/img/sub/../photo.png"}.get(where, host.base + where)
    result = _ask(_client(server), url)
    assert result.choices[0].message.content == inline_answer and result.usage.prompt_tokens > 64


@pytest.mark.parametrize("where, code", [
    ("/private/photo.png", "not_allowed"),  # not under the allowed prefix
    # under it as written, not as fetched: the HTTP client removes the dot segments, so it asked for /private/...
    ("/img/../private/photo.png", "not_allowed"),
    ("/img/%2e%2e/private/photo.png", "not_allowed"),
    ("/img/./../private/photo.png", "not_allowed"),
    ("/img/away.png", "not_allowed"),  # redirected out of it
    ("/img/missing.png", "fetch_failed"),
    ("/img/huge.png", "too_large"),
    ("link", "not_allowed"),  # a symlink out of the allowed folder
    ("/etc/hostname", "not_allowed"),
    ("ftp", "not_allowed"),
    # neither a hang (a named pipe held the request and a worker thread forever) nor an error naming no field
    ("pipe", "fetch_failed"),
    ("bad_ipv6", "fetch_failed"),
    ("nul", "fetch_failed"),
])
def test_refused_urls_and_paths(server, host, folder, where, code):
    if where == "pipe" and not (folder / "pipe.png").exists():
        pytest.skip("no named pipes here")
    url = {"link": str(folder / "link.png"), "/etc/hostname": "/etc/hostname",
           "ftp": "ftp://127.0.0.1/x.png", "pipe": str(folder / "pipe.png"), "bad_ipv6": "http://[::1/x.png",
           "nul": str(folder / "photo.png") + "\0.txt"}.get(where, host.base + where)
    with pytest.raises(openai.BadRequestError) as info:
        _ask(_client(server), url)
    error = _error(info.value)
    assert error["code"] == code and error["param"] == "messages[0].content[1].image_url.url", error


def test_anthropic_and_responses_fetch_allowed_urls(server, host, inline_answer):
    url = host.base + "/img/photo.png"
    reply = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120).messages.create(
        model="vision-chat", max_tokens=5, extra_body={"temperature": 0}, messages=[{"role": "user", "content": [
            {"type": "text", "text": QUESTION}, {"type": "image", "source": {"type": "url", "url": url}}]}])
    assert reply.content[0].text == inline_answer
    response = _client(server).responses.create(
        model="vision-chat", max_output_tokens=5, temperature=0, store=False, input=[{"role": "user", "content": [
            {"type": "input_text", "text": QUESTION}, {"type": "input_image", "image_url": url}]}])
    assert response.output_text == inline_answer


def test_urls_are_refused_by_default_naming_the_field(plain_server, host):
    url = host.base + "/img/photo.png"
    with pytest.raises(openai.BadRequestError) as info:
        _ask(_client(plain_server), url)
    error = _error(info.value)
    assert (error["code"], error["param"]) == ("not_allowed", "messages[0].content[1].image_url.url")
    assert "--allow-media-from" in error["message"]
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic.Anthropic(base_url=plain_server.base_url, api_key="unused", max_retries=0).messages.create(
            model="vision-chat", max_tokens=5, messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": url}}]}])
    assert "messages.0.content.0.source.url" in str(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        _client(plain_server).responses.create(model="vision-chat", max_output_tokens=5, store=False, input=[
            {"role": "user", "content": [{"type": "input_image", "image_url": url}]}])
    assert "input[0].content[0].image_url" in str(info.value)


def test_token_counts_fetch_allowed_urls_too(server, host):
    url = host.base + "/img/photo.png"
    count = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0).messages.count_tokens(
        model="vision-chat", messages=[{"role": "user", "content": [
            {"type": "text", "text": QUESTION}, {"type": "image", "source": {"type": "url", "url": url}}]}])
    assert count.input_tokens > 64


def fetch_once(fetcher, url):
    """One ``data_url`` fetch as a chat's image part would make it, the fetcher closed after."""
    async def fetch():
        try:
            return await fetcher.data_url(url, "messages[0].content[1].image_url.url")
        finally:
            await fetcher.close()

    return asyncio.run(fetch())


def test_a_fetch_that_times_out_says_so(host):
    """A timeout's str() is empty: the message said 'cannot fetch URL: ' and stopped there."""
    from jan.errors import MediaError
    from jan.server.media_fetch import MediaAllowlist, MediaFetcher

    with pytest.raises(MediaError) as info:
        fetch_once(MediaFetcher(MediaAllowlist.parse([host.base + "/img/"]), timeout_s=0.5),
                   host.base + "/img/silent.png")
    assert info.value.reason == "fetch_failed"
    assert str(info.value).endswith("no answer within 0.5 seconds"), str(info.value)


def test_the_allowlist_judges_a_url_as_the_client_will_send_it():
    """One check for every URL the server may connect to (media, documents, MCP servers): dot segments are removed
    before the prefix is compared, as aiohttp and httpx remove them before they connect."""
    from jan.server.media_fetch import MediaAllowlist

    allowed = MediaAllowlist.parse(["https://host.example/pub/", "http://Other.Example"])
    for url in ("https://host.example/pub/../admin/x.png", "https://host.example/pub/%2E%2E/admin/x.png",
                "https://host.example/pub/a/../../admin/x.png", "http://other.example.evil/x.png", "not a url"):
        assert not allowed.allows_url(url), url
    for url in ("https://host.example/pub/x.png", "HTTPS://HOST.example:443/pub/x.png",
                "https://host.example/pub/a/../x.png", "http://other.example/x.png"):
        assert allowed.allows_url(url), url


LOCAL_URLS = ("http://127.0.0.1:8080/x.png", "https://localhost/x.png", "http://localhost./x.png",
              "http://foo.localhost/x.png", "http://[::1]/x.png", "http://[::ffff:127.0.0.1]/x.png",
              "http://2130706433/x.png", "http://0x7f.1/x.png", "http://127.1/x.png", "http://0/x.png",
              "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/x.png", "https://192.168.0.9/x.png",
              "http://[fe80::1]/x.png", "http://[fd00::5]/x.png")


def test_a_bare_scheme_allows_public_hosts_only():
    """``--allow-media-from https://`` ("any") let every client have the server fetch from itself, its LAN or a
    cloud's metadata address (169.254.169.254), for media and for a request's MCP server URL alike (one check):
    such hosts, however their address is spelled, need a prefix naming them."""
    from jan.server.media_fetch import MediaAllowlist

    any_host = MediaAllowlist.parse(["http://", "https://"])
    for url in LOCAL_URLS:
        assert not any_host.allows_url(url), url
    for url in ("https://example.com/x.png", "http://8.8.8.8/x.png", "https://[2001:4860:4860::8888]/x.png"):
        assert any_host.allows_url(url), url
    named = MediaAllowlist.parse(["http://127.0.0.1:8080/", "http://169.254.169.254/", "https://"])
    assert named.allows_url("http://127.0.0.1:8080/x.png") and named.allows_url("http://169.254.169.254/a")
    assert not named.allows_url("http://127.0.0.1:8081/x.png") and not named.allows_url("http://10.1.2.3/x.png")


def test_a_local_url_refused_under_a_bare_scheme_says_how_to_allow_it(host):
    from jan.errors import MediaError
    from jan.server.media_fetch import MediaAllowlist, MediaFetcher

    with pytest.raises(MediaError) as info:
        fetch_once(MediaFetcher(MediaAllowlist.parse(["http://"])), host.base + "/img/photo.png")
    assert info.value.reason == "not_allowed"
    assert "public hosts only; name this host to allow it" in str(info.value), str(info.value)
