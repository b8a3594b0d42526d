"""Broken third-party extensions are reported by GET /v1/extensions while the server keeps serving.

A tiny distribution is written into tmp_path at test time with three entry
points: one whose ``on_load`` raises, one naming a module that does not exist,
and one that requires a future extension API.
"""

from __future__ import annotations

import textwrap

import openai
import pytest

from extension_helpers import call, on_sys_path, records, write_distribution
from server_helpers import start_server

MODULE = textwrap.dedent('''
    from jan.core import Extension


    class FailsToLoad(Extension):
        name = "broken-on-load"
        description = "raises in on_load"
        requires_api = ">=1,<2"
        settings_schema = {"type": "object", "properties": {"retries": {"type": "integer", "minimum": 0, "default": 1}}}

        async def on_load(self, ctx):
            async def handler(request):
                raise AssertionError("never mounted")

            ctx.add_route("GET", "/v1/broken", handler)
            raise RuntimeError("the database file is missing")


    class TooNew(Extension):
        name = "too-new"
        requires_api = ">=2"
''')


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("broken")
    site = tmp / "site"
    write_distribution(site, "jan-broken-demo", "0.0.1", {
        "broken-on-load": "jan_broken_demo:FailsToLoad",
        "broken-import": "jan_broken_demo_no_such_module:Extension",
        "too-new": "jan_broken_demo:TooNew",
    }, {"jan_broken_demo/__init__.py": MODULE})
    with on_sys_path(site, "jan_broken_demo"):
        srv = start_server(tmp, [stories_path])
        yield srv
        srv.stop()


def test_failures_are_listed_with_state_and_error(server):
    found = records(server)
    on_load = found["broken-on-load"]
    assert on_load["state"] == "failed" and on_load["enabled"] is True
    assert on_load["error"] == "on_load failed: RuntimeError: the database file is missing"
    assert on_load["version"] == "0.0.1" and on_load["description"] == "raises in on_load"

    missing = found["broken-import"]
    assert missing["state"] == "failed"
    assert missing["error"].startswith("import failed: ModuleNotFoundError") and "jan_broken_demo_no_such_module" in missing["error"]

    too_new = found["too-new"]
    assert too_new["state"] == "incompatible" and ">=2" in too_new["error"]

    for name in ("llamacpp", "models", "monitoring", "remote"):
        assert found[name]["state"] == "loaded", found[name]
    # what the failed extension registered before raising was removed again
    assert call(server, "GET", "/v1/broken")[0] == 404


def test_the_server_keeps_serving_chat(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "Hello"}]
    reply = client.chat.completions.create(model="stories260K", messages=messages, max_tokens=8, temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    streamed = client.chat.completions.create(model="stories260K", messages=messages, max_tokens=8, temperature=0,
                                              stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == reply.choices[0].message.content


def test_enabling_retries_and_reports_the_failure_again(server):
    status, record = call(server, "POST", "/v1/extensions/broken-on-load/enable")
    assert status == 200 and record["state"] == "failed" and "database file is missing" in record["error"]
    status, record = call(server, "POST", "/v1/extensions/too-new/enable")
    assert status == 200 and record["state"] == "incompatible"


def test_settings_of_broken_extensions(server):
    # on_load failed, but its schema is known: settings can still be fixed
    status, body = call(server, "PATCH", "/v1/extensions/broken-on-load/settings", {"retries": -1})
    assert status == 400 and body["error"]["param"] == "retries"
    status, body = call(server, "PATCH", "/v1/extensions/broken-on-load/settings", {"retries": 3})
    assert status == 200 and body["values"] == {"retries": 3}
    # an extension that never imported has no known schema
    status, body = call(server, "GET", "/v1/extensions/broken-import/settings")
    assert status == 409 and body["error"]["code"] == "extension_unavailable"
