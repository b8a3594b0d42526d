"""`jan chat --thread` without a server, on a thread whose message links to an image (an ``image_url`` part whose
URL is ``http(s)://`` or a file, which the store keeps as given: the library, an import, a hand edit). The server's
runs fetch such a link (``--allow-media-from``, :mod:`jan.server.media_fetch`); the CLI's local mode read the URL
as a data URL's base64 and refused the turn ("no data (the file is empty)"). It now fetches it with the same
fetcher, allowed by the same ``--allow-media-from`` entries, and refuses a link none allows naming the part and
the flag; aiohttp's client is imported only when a link is fetched."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from aiohttp import web

from api_helpers import AppThread
from jan.store import DataFolder
from test_cli_helpers import cli_env, fails, jan, ok


class _ImageHost(AppThread):
    def __init__(self, image: bytes) -> None:
        super().__init__()
        self.image = image

    def routes(self, router) -> None:
        async def photo(_request):
            return web.Response(body=self.image, content_type="image/jpeg")

        router.add_get("/img/photo.jpeg", photo)


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "jan")


def _thread(tmp_path, url: str) -> str:
    folder = DataFolder(tmp_path / "jan")
    thread = folder.threads.create(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": url}}]}])
    assert folder.messages.list(thread["id"]).data[0]["content"][1]["type"] == "image_url"  # kept as a link
    return thread["id"]


def _replies(tmp_path, thread_id: str) -> list[dict]:
    raw = (tmp_path / "jan" / "threads" / thread_id / "messages.jsonl").read_text()
    return [m for m in map(json.loads, filter(None, raw.splitlines())) if m["role"] == "assistant"]


def test_a_resumed_threads_image_link_is_fetched_as_the_server_fetches_it(tmp_path, env, vision_pair,
                                                                          test_image_path):
    model, _ = vision_pair
    args = ["chat", model, "--max-tokens", "3", "--temperature", "0", "--threads", "1"]
    with _ImageHost(test_image_path.read_bytes()) as host:
        for url, allowed in ((host.base + "/img/photo.jpeg", host.base + "/img/"),
                             (test_image_path.as_uri(), str(test_image_path.parent))):
            thread_id = _thread(tmp_path, url)
            # not allowed: the turn is refused naming the part and the flag (it was "no data (the file is empty)")
            fails(jan(*args, "--thread", thread_id, input="And?\n/exit\n", env=env),
                  "messages[0].content[1].image_url.url", "is a link to an image", "--allow-media-from")
            assert _replies(tmp_path, thread_id) == []
            # allowed as jan serve allows it: the model reads the image, the reply is saved
            ok(jan(*args, "--thread", thread_id, "--allow-media-from", allowed, input="And?\n/exit\n", env=env))
            assert len(_replies(tmp_path, thread_id)) == 1
        # a prefix that does not cover it: jan serve's refusal, naming the flag
        thread_id = _thread(tmp_path, host.base + "/img/photo.jpeg")
        fails(jan(*args, "--thread", thread_id, "--allow-media-from", host.base + "/other/", input="And?\n/exit\n",
                  env=env), "messages[0].content[1].image_url.url", "--allow-media-from")
    # a folder that is not there is refused as the command starts, as jan serve refuses it
    fails(jan(*args, "--allow-media-from", str(tmp_path / "nowhere"), input="/exit\n", env=env),
          "--allow-media-from: no such folder")


def test_the_fetcher_imports_aiohttps_client_only_for_a_link(tmp_path):
    """The allowlist is read as the command starts (its folders checked); the fetcher, and aiohttp's client with
    it, only when a link is met."""
    code = (
        "import sys, asyncio\n"
        "from jan.cli.local import LinkedMedia\n"
        f"media = LinkedMedia(('https://images.example.com/', {str(tmp_path)!r}))\n"
        "assert 'aiohttp.client' not in sys.modules, 'imported at start'\n"
        "assert asyncio.run(media.data_url('data:image/png;base64,AA==', 'p')) == 'data:image/png;base64,AA=='\n"
        "assert 'aiohttp.client' not in sys.modules, 'imported for a data URL'\n"
        "from jan.errors import MediaError\n"
        "async def link():\n"
        "    try:\n"
        "        await media.data_url('https://elsewhere.example.com/x.png', 'p')\n"
        "    except MediaError as exc:\n"
        "        assert exc.reason == 'not_allowed', exc\n"
        "    finally:\n"
        "        await media.close()\n"
        "asyncio.run(link())\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_jan_run_takes_an_image_link_that_allow_media_from_allows(tmp_path, env, vision_pair, test_image_path):
    """`jan run` had no --allow-media-from (jan serve and jan chat have it), and its --image took a path only (an
    https:// link was read as the path 'https:/host/...'). It takes the same option, one definition for the three
    commands, and an --image link that the option allows; a link none allows is refused naming the flag."""
    model, _ = vision_pair
    args = ["run", model, "What is in this picture?", "-n", "3", "--temperature", "0", "--threads", "1"]
    with _ImageHost(test_image_path.read_bytes()) as host:
        for url, allowed in ((host.base + "/img/photo.jpeg", host.base + "/img/"),
                             (test_image_path.as_uri(), str(test_image_path.parent))):
            fails(jan(*args, "--image", url, env=env), f"--image '{url}'", "is a link to an image",
                  "--allow-media-from")
            ok(jan(*args, "--image", url, "--allow-media-from", allowed, env=env))
        fails(jan(*args, "--image", host.base + "/img/photo.jpeg", "--allow-media-from", host.base + "/other/",
                  env=env), "--allow-media-from")
    fails(jan(*args, "--allow-media-from", str(tmp_path / "nowhere"), env=env), "--allow-media-from: no such folder")


@pytest.mark.parametrize("command", [["run", "m", "hi"], ["chat", "m"], ["serve"]])
def test_every_command_with_the_media_allowlist_refuses_a_bad_entry_alike(env, command):
    """One definition: an entry that is no URL prefix nor folder is a usage error naming the option, before anything
    starts, in each command."""
    result = jan(*command, "--allow-media-from", "ftp://host/", env=env)
    assert result.returncode == 2 and "--allow-media-from" in result.stderr and "http(s)://" in result.stderr, \
        result.stderr


def test_the_media_allowlist_of_a_command_that_sends_to_a_server_is_refused(tmp_path, env, stories_path):
    """With a server answering, the server fetches links by its own allowlist: the command's would do nothing."""
    from api_helpers import running

    with running(tmp_path / "served") as srv:
        served = cli_env(tmp_path / "jan", local=False, JAN_API_URL=srv.base_url)
        for command in (["run", str(stories_path), "hi", "-n", "1"], ["chat", str(stories_path)]):
            fails(jan(*command, "--allow-media-from", "https://", input="/exit\n", env=served),
                  "--allow-media-from applies without a server")
