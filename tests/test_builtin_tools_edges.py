"""The built-in tools on the pages and paths a model may hand them: ``fetch_url`` returns a page whole (up to its
limit, marked truncated past it) however the body arrives, in the page's charset, and tells a redirect loop, a
redirect out of http(s), an invalid URL, a timeout and binary content as what they are; ``read_file`` tells a path
that can name no file as such, never raising."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from jan.extensions.tools.extension import MAX_READ_BYTES, FetchUrl, ReadFile
from local_site import answer, serve_app

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def site():
    release = asyncio.Event()

    async def streamed(request):
        # the body in many writes, one of them only after the client has read a first part
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        await response.write(b"a" * 1000)
        await asyncio.sleep(0.2)  # (the client's first read returns the first part alone: what was cut before)
        for _ in range(6):
            await response.write(b"b" * 64_000)
        await response.write(b"c" * 1000)
        return response

    async def two_parts(request):
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        await response.write(b"first ")
        await asyncio.sleep(0.2)
        await response.write(b"second")
        return response

    async def never_done(request):
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"x")
        await release.wait()
        return response

    async def loop(_request):
        raise web.HTTPFound("/loop")

    async def to_ftp(_request):
        raise web.HTTPFound("ftp://example.invalid/x")

    app = web.Application()
    app.router.add_get("/streamed", streamed)
    app.router.add_get("/two", two_parts)
    app.router.add_get("/never", never_done)
    app.router.add_get("/loop", loop)
    app.router.add_get("/ftp", to_ftp)
    app.router.add_get("/bin", answer(body=bytes(range(256)) * 4, content_type="application/octet-stream"))
    app.router.add_get("/latin", answer(body="café".encode("latin-1"), content_type="text/plain",
                                                    charset="latin-1"))
    app.router.add_get("/json", answer(text='{"a": "é"}', content_type="application/json"))
    async with serve_app(app) as base_url:
        yield base_url
        release.set()


async def fetch(url: str, timeout: float = 30.0):
    return await FetchUrl(timeout).call({"url": url})


async def test_a_page_is_read_whole_up_to_the_limit_however_it_arrives(site):
    two = await fetch(f"{site}/two")
    assert not two.is_error and two.as_text() == "HTTP 200\n\nfirst second"
    page = await fetch(f"{site}/streamed")
    body = page.as_text().split("\n\n", 1)[1]
    assert page.truncated and len(body) == MAX_READ_BYTES and body.startswith("a" * 1000 + "b")


async def test_charset_and_binary(site):
    assert (await fetch(f"{site}/latin")).as_text() == "HTTP 200\n\ncafé"
    assert (await fetch(f"{site}/json")).as_text() == 'HTTP 200\n\n{"a": "é"}'
    binary = await fetch(f"{site}/bin")
    assert binary.is_error and "application/octet-stream content, not text" in binary.as_text()


async def test_failures_are_told_as_what_they_are(site):
    cases = {f"{site}/loop": "redirects (a redirect loop?)", f"{site}/ftp": "redirects to ftp://example.invalid/x",
             "http://127.0.0.1:99999/": "not a valid URL", "http://[::1": "not a valid URL",
             "http://": "not a valid URL"}
    for url, why in cases.items():
        result = await fetch(url)
        assert result.is_error and why in result.as_text(), (url, result.as_text())
    slow = await fetch(f"{site}/never", timeout=1.0)
    assert slow.is_error and "no whole answer within 1 seconds" in slow.as_text()


async def test_read_file_paths_that_name_no_file(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    tool = ReadFile(tmp_path)
    assert (await tool.call({"path": "a.txt"})).as_text() == "hello"
    for path in ("a\0b", "x" * 5000, "d/" * 3000 + "f"):
        result = await tool.call({"path": path})
        assert result.is_error and len(result.as_text()) < 600, result.as_text()[:300]


def test_files_folder_must_be_a_folder_when_it_is_set(tmp_path):
    """Before: a files_folder that does not exist (a typo) was taken silently, and every read_file failed as "No
    file". A folder is checked when it is set (the settings API, the Python API) and refused naming the extension;
    one stored earlier that is gone for now (an unmounted disk) is kept, not dropped from the file, and read_file
    says the folder is not there."""
    import json

    from jan.core.exceptions import SettingsValidationError
    from jan.core.settings import ExtensionSettings
    from jan.extensions.tools.extension import BuiltinToolsSettings

    settings = ExtensionSettings("tools", BuiltinToolsSettings, data_folder=tmp_path)
    (tmp_path / "a-file").write_text("x")
    for value, why in ((str(tmp_path / "typo"), "no such folder"), (str(tmp_path / "a-file"), "not a folder")):
        with pytest.raises(SettingsValidationError, match=f"extension 'tools': invalid setting 'files_folder'.*{why}"):
            settings.update({"files_folder": value})
    notes = tmp_path / "notes"
    notes.mkdir()
    settings.update({"files_folder": str(notes)})
    notes.rmdir()  # the disk went away
    again = ExtensionSettings("tools", BuiltinToolsSettings, data_folder=tmp_path)
    assert again.get("files_folder") == str(notes) and again.problems == []
    again.update({"fetch_enabled": True})  # another change keeps it
    stored = json.loads((tmp_path / "settings" / "tools" / "settings.json").read_text())
    assert stored == {"files_folder": str(notes), "fetch_enabled": True}
    result = ReadFile(notes)._read("x.txt")
    assert result.is_error and "allowed folder is not there" in result.parts[0].text and "no such folder" in \
        result.parts[0].text
