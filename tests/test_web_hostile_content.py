"""Content an attacker controls reaches the chat page as text, never as markup or script, on every render path.

Each case puts hostile text where one path of the page shows it (a reply's Markdown, its reasoning, a tool call's
name, arguments and result, a file name, a thread title, an assistant's name and
instructions, a model's name, an error the server echoes) and opens the page in a real Chromium (the ``new_page``
fixture of conftest.py), with its Content-Security-Policy bypassed: the renderer itself must make no element of
the text (the policy is a second wall, see test_web_page.py::test_page_runs_under_its_csp). Checked without a
clock: no element of the page carries an inline handler, no script, frame, object or image of the text's exists,
no link leaves for a scheme other than http(s), nothing was written to the trap and no dialog opened, and the text
shows as written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import requests

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread
from test_web_page import api, open_page

MODEL_ID = "stories260K"
#: Markup that runs script if the page ever makes an element of it.
HTML = ['<img src=x onerror="window.__pwned=1">', "<script>window.__pwned=2</script>",
        '<svg onload="window.__pwned=3"></svg>', '<iframe src="javascript:window.__pwned=4"></iframe>',
        "<b>bold?</b> &lt;i&gt; &amp; &#60;u&#62;"]
MARKUP = " ".join(HTML)
#: Markdown whose links and images must not become javascript:/data:/vbscript: ones (shown as written instead).
MARKDOWN = ["[a](javascript:window.__pwned=5)", "![b](javascript:window.__pwned=6)", "[c](data:text/html,<b>x</b>)",
            "[d](vbscript:msgbox)", "![e](https://img.test/x.png)", "<javascript:window.__pwned=7>",
            "[f](jav&#x09;ascript:window.__pwned=8)", "[g]( javascript:window.__pwned=9 )"]
#: A file name with markup (no quotes: a multipart client writes them as %22).
NAME = "<img src=x onerror=window.__pwned=13>.txt"
CODE = "```\n</code></pre><img src=x onerror=\"window.__pwned=10\">\n```"
TRAP = """(() => {
  window.__dialogs = 0;
  for (const name of ['alert', 'confirm', 'prompt']) window[name] = () => { window.__dialogs++; };
})();"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("web-hostile"), models=[str(stories_path)],
                          n_ctx=512, n_parallel=1, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


def _thread(server, title: str = "Hostile", **fields) -> str:
    return api(server, "POST", "/v1/threads", {"title": title, **fields})["id"]


def _message(server, thread_id: str, role: str, content, **fields) -> dict:
    return api(server, "POST", f"/v1/threads/{thread_id}/messages", {"role": role, "content": content, **fields})


def _text(value: str) -> list[dict]:
    return [{"type": "text", "text": {"value": value, "annotations": []}}]


# Each case: (the thread to open, the element whose text is checked, the texts it must show as written).
def case_markdown(server):
    thread = _thread(server)
    _message(server, thread, "user", MARKUP)
    _message(server, thread, "assistant", "\n\n".join([MARKUP, *MARKDOWN, CODE, "`</code><b>x</b>`"]))
    return thread, "#messages", [*HTML[:4], *MARKDOWN[:4], *MARKDOWN[5:], '</code></pre><img src=x onerror="window.__pwned=10">']


def case_reasoning(server):
    thread = _thread(server)
    _message(server, thread, "user", "think")
    _message(server, thread, "assistant", [{"type": "reasoning", "text": MARKUP}, *_text("done")])
    return thread, "article.assistant .thinking-body", HTML[:4]


def case_tool_call(server):
    thread = _thread(server)
    _message(server, thread, "user", "use a tool")
    _message(server, thread, "assistant", _text(""), metadata={"tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": HTML[0], "arguments": '{"q": "%s"}' % HTML[1].replace('"', "'")}}]})
    _message(server, thread, "tool", MARKUP, metadata={"tool_call_id": "call_1", "approved_by": HTML[2]})
    return thread, ".tool-calls", [HTML[0], HTML[2], *HTML[:4]]


def case_mcp_item_in_the_data_folder(server):
    """A response's kept MCP call, as the data folder holds it (the API takes no such item: the file is edited)."""
    thread = _thread(server)
    _message(server, thread, "user", "mcp")
    _message(server, thread, "assistant", _text(""), metadata={"marker": "mcp"})
    [path] = Path(server.config.data_folder).glob(f"threads/{thread}/messages.jsonl")
    item = {"type": "mcp_call", "id": "mcp_1", "server_label": HTML[0], "name": HTML[2], "arguments": HTML[1],
            "output": MARKUP}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in lines:
        if record.get("metadata", {}).get("marker") == "mcp":
            record["metadata"] = {"item": item}
    path.write_text("".join(json.dumps(record) + "\n" for record in lines))
    return thread, ".tool-calls", HTML[:4]


def case_file_name(server):
    upload = requests.post(f"{server.base_url}/v1/files", data={"purpose": "assistants"}, timeout=60,
                           files={"file": (NAME, io.BytesIO(b"notes"), "text/plain")})
    assert upload.status_code == 200, upload.text
    thread = _thread(server)
    _message(server, thread, "user", "read it", attachments=[{"file_id": upload.json()["id"]}])
    return thread, "#messages", [NAME]


def case_error_note(server):
    thread = _thread(server)
    _message(server, thread, "user", "fail")
    _message(server, thread, "assistant", _text("partial"), status="error", metadata={"error": MARKUP})
    return thread, "article.assistant", HTML[:4]


def case_thread_title(server):
    thread = _thread(server, title=MARKUP)
    _message(server, thread, "user", "hi")
    return thread, "#thread-list", HTML[:4]


def case_assistant(server):
    assistant = api(server, "POST", "/v1/assistants", {"name": MARKUP, "instructions": MARKUP, "model": MODEL_ID})
    thread = _thread(server, assistants=[{"assistant_id": assistant["id"], "assistant_name": MARKUP,
                                          "instructions": MARKUP}])
    _message(server, thread, "user", "hi")
    _message(server, thread, "assistant", "hello")
    return thread, "article.assistant", HTML[:4]


def case_model_name(server):
    api(server, "PATCH", f"/v1/models/{MODEL_ID}", {"name": MARKUP})
    thread = _thread(server)
    _message(server, thread, "user", "hi")
    return thread, "body", []


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}

#: Where the page shows text of others: no element of these may come from it (the page's own icons are svgs
#: hidden from assistive technology, which no text makes: an element with a handler is caught by its handler).
CONTENT_AREAS = "#messages, #thread-list, #thread-title, #toast"


def _check_inert(page) -> None:
    found = page.evaluate("""(areas) => {
        const all = [...document.querySelectorAll('*')];
        return {
            pwned: typeof window.__pwned, dialogs: window.__dialogs,
            handlers: all.flatMap(e => [...e.attributes].filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name)),
            tags: [...document.querySelectorAll(areas)].flatMap(a => [...a.querySelectorAll(
                'script, iframe, object, embed, svg:not([aria-hidden=true]), style, b, u, i, frame, form')].map(e => e.tagName + ' ' + e.outerHTML.slice(0, 80))),
            images: [...document.querySelectorAll('img')].map(i => i.getAttribute('src') || '')
                .filter(s => !/^(blob:|data:image\\/|\\/static\\/)/.test(s)),
            links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
                .filter(h => !/^(https?:\\/\\/|#)/i.test(h)),
        };
    }""", CONTENT_AREAS)
    assert found == {"pwned": "undefined", "dialogs": 0, "handlers": [], "tags": [], "images": [], "links": []}, found


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_content_shows_as_text(server, new_page, case):
    thread, where, shown = CASES[case](server)
    page = new_page()
    page.add_init_script(TRAP)
    open_page(page, server, f"#thread={thread}")
    page.wait_for_selector("#messages article")
    text = page.text_content(where)  # (a tool call's result and a reasoning are folded: text, not inner text)
    for expected in shown:
        assert expected in text, (expected, text)
    _check_inert(page)
    if case == "assistant":
        # the thread's settings show the assistant's instructions as text
        page.click("#toggle-settings")
        assert page.input_value("#set-instructions") == MARKUP
    if case == "model_name":
        page.click("#open-models")
        page.wait_for_selector(".model-name")
        assert HTML[0] in page.inner_text("body")
    _check_inert(page)


def test_an_error_echoing_an_id_shows_as_text(server, new_page):
    """An id the server names in its 404 ("thread '<id>' not found": the page's address names it) reaches the page
    as text."""
    page = new_page()
    page.add_init_script(TRAP)
    open_page(page, server, "#thread=" + HTML[0])
    page.wait_for_selector("#toast:not([hidden])")
    _check_inert(page)
