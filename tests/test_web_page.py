"""The chat page in a real headless Chromium against a real server with stories260K.

Driven by Playwright for Python with Debian's ``chromium`` (never a browser
that Playwright downloads). Without Playwright or Chromium the tests skip,
except under ``JAN_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs
Chromium), where that is a failure. Screenshots of each step go to
``tests/artifacts/web/``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread
from cut_off_helpers import LONG_N_CTX
from run_helpers import wait_for_run_sync

ARTIFACTS = Path(__file__).parent / "artifacts" / "web"
MODEL_ID = "stories260K"
XSS_SCRIPT = "<script>window.__pwned=1</script>"
XSS_IMG = '<img src=x onerror="window.__pwned=1">'


# -- browser: the `browser` and `new_page` fixtures are in conftest.py ---------------------


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def open_page(page, server, fragment: str = ""):
    page.goto(f"{server.base_url}/{fragment}")
    page.wait_for_selector("body[data-ready=true]")


SLOW_MODELS_REFRESH_MS = 15000  # app.js: how often an idle page reads the models again


def without_the_slow_models_refresh(page):
    """The page's periodic read of the models (every SLOW_MODELS_REFRESH_MS) never runs in ``page``: a test that
    checks a read comes some other way (a run's end, a loading model's heartbeat) can then wait for it as long as a
    busy machine needs, instead of a bound below the refresh's period. :func:`slow_models_refresh_was_off` checks
    that it was the one left out (the page still sets it so)."""
    page.add_init_script("""(() => {
      const real = window.setInterval;
      window.setInterval = function (fn, ms, ...rest) {
        if (ms === %d) { window.__slowModelsRefreshOff = true; return 0; }
        return real.call(this, fn, ms, ...rest);
      };
    })();""" % SLOW_MODELS_REFRESH_MS)


def slow_models_refresh_was_off(page) -> bool:
    return page.evaluate("window.__slowModelsRefreshOff === true")


# -- servers and API -----------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_server(tmp_path_factory, stories_path):
    """stories260K with a 4096-token context: a story ends at its EOS, or at the context's end."""
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("web-data"), models=[str(stories_path)],
                          n_ctx=4096, n_parallel=2, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


@pytest.fixture(scope="module")
def held_server(tmp_path_factory, stories_path):
    """stories260K whose answers run until the test stops them, long enough to watch one grow, stop it or rename
    beside it however fast the machine: the assistant ``jan`` answers with ``ignore_eos``, to a context that fits
    LONG tokens (tens of seconds on a fast core). A story ended at its EOS in a few hundred tokens, or at a 4096
    context in about a second on a fast core, maybe before the browser's steps that were to stop it or rename
    beside it (the tests then failed)."""
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("web-held"), models=[str(stories_path)],
                          n_ctx=LONG_N_CTX, n_parallel=2, n_threads=1)
    with ServerThread(config) as srv:
        api(srv, "POST", "/v1/assistants/jan", {"parameters": {"ignore_eos": True}})
        yield srv


def call(server, method: str, path: str, body=None, key: str | None = None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, (json.loads(raw) if raw else None)


def api(server, method: str, path: str, body=None, key: str | None = None):
    status, data = call(server, method, path, body, key)
    assert status == 200, f"{method} {path}: {status} {data}"
    return data


def messages_of(server, thread_id: str, key: str | None = None) -> list[dict]:
    # all: the calling turns and tool results too, as the page reads a thread (OpenAI's list leaves them out)
    return api(server, "GET", f"/v1/threads/{thread_id}/messages?order=asc&limit=100&all=true", key=key)["data"]


def text_of(message: dict) -> str:
    return "".join(p["text"]["value"] for p in message["content"] if p.get("type") == "text")


def busy_slots(server) -> float:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=30) as response:
        metrics = response.read().decode()
    found = re.search(r'^jan_slots_busy\{model="%s"\} ([0-9.]+)$' % MODEL_ID, metrics, re.M)
    return float(found.group(1)) if found else 0.0


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1):
    # (a bound only, left as soon as true: a busy machine's MCP server start or model turn can take many seconds)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def start_answer(page, answer: str = "article.assistant") -> None:
    """Send "Once upon a time" and wait until ``answer`` (the reply's article) shows more than 10 characters:
    an answer under way, to stop, switch away from or rename beside."""
    page.fill("#prompt", "Once upon a time")
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"(document.querySelector('{answer} .message-body')?.textContent.length ?? 0) > 10")


def thread_id_of(page) -> str:
    found = re.match(r"^#thread=(.+)$", page.evaluate("location.hash"))
    assert found, page.evaluate("location.hash")
    return found.group(1)


def assistant_text(page) -> str:
    return page.evaluate("document.querySelector('article.assistant:last-of-type .message-body')?.innerText ?? ''")


# -- the chat flow --------------------------------------------------------------------
def test_send_stream_stop_and_reload(held_server, new_page):
    page = new_page()
    open_page(page, held_server)
    assert page.input_value("#model-select") == MODEL_ID
    assert page.text_content("#model-state") == "ready"
    assert page.evaluate("document.activeElement.id") == "prompt"
    assert page.is_visible("#empty-state")
    shot(page, "01-empty")

    # Shift+Enter is a new line, Enter sends
    page.keyboard.type("Once upon a time")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("there was a dog.")
    assert page.input_value("#prompt") == "Once upon a time\nthere was a dog."
    assert page.locator("article.message").count() == 0
    page.keyboard.press("Enter")

    # the thread was created and the answer streams in, growing over time
    page.wait_for_selector("article.message.user")
    page.wait_for_function(
        "(document.querySelector('article.assistant .message-body')?.textContent.length ?? 0) > 10")
    assert page.is_visible("#stop") and page.is_hidden("#send")
    # it grows: three different lengths, each longer than the last (waited for, not timed)
    lengths = [len(assistant_text(page))]
    for _ in range(2):
        page.wait_for_function("n => (document.querySelector('article.assistant .message-body')?.textContent.length"
                               " ?? 0) > n", arg=lengths[-1], timeout=60_000)
        lengths.append(len(assistant_text(page)))
    assert lengths == sorted(lengths) and len(set(lengths)) == 3, lengths
    thread_id = thread_id_of(page)
    assert api(held_server, "GET", f"/v1/threads/{thread_id}")["id"] == thread_id
    assert busy_slots(held_server) >= 1
    shot(page, "02-streaming")

    # Esc stops: the server frees the slot and saves the text as stopped, and the page ends up
    # showing exactly what was saved (issue 10, item 26) — behaviour, not timing (item 28)
    page.keyboard.press("Escape")
    page.wait_for_selector("#stop", state="hidden")
    assert page.is_visible("#send")
    page.wait_for_selector("article.assistant[data-done=true]", timeout=30_000)
    stopped_text = assistant_text(page)
    assert len(stopped_text) > len("Once upon a time")
    assert page.text_content("article.assistant .message-status") == "Stopped"
    assert page.evaluate("document.activeElement.id") == "prompt"
    wait_until(lambda: busy_slots(held_server) == 0, timeout=30)
    saved = wait_until(lambda: [m for m in messages_of(held_server, thread_id)
                                if m["role"] == "assistant" and m["status"] == "incomplete"], timeout=30)
    # cut off by the stop (not run to its end), and saved exactly as shown
    assert saved[0]["metadata"]["stop_reason"] == "client disconnected"
    saved_text = text_of(saved[0])
    assert " ".join(saved_text.split()) == " ".join(stopped_text.split())
    assert page.get_attribute("article.assistant", "data-chars") == str(len(saved_text))
    shot(page, "03-stopped")

    # the server titled the thread after the first message; the sidebar shows it
    page.wait_for_function(
        "document.querySelector('.thread-item.active .thread-open')?.textContent.startsWith('Once upon a time')")
    assert page.text_content("#thread-title").startswith("Once upon a time")

    # reload: the thread and its messages come back from the API
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert thread_id_of(page) == thread_id
    page.wait_for_selector("article.message.assistant")
    assert page.text_content("article.message.user .message-body") == "Once upon a time\nthere was a dog."
    reloaded = assistant_text(page)
    assert " ".join(reloaded.split()).startswith(" ".join(stopped_text.split())[:60])
    assert page.text_content("article.assistant .message-status") == "Stopped"
    assert page.locator(".thread-item.active").count() == 1
    shot(page, "04-reloaded")

    # a fresh visit (no #thread) starts empty; the thread opens from the sidebar
    open_page(page, held_server)
    assert page.locator("article.message").count() == 0
    page.click(f".thread-item[data-thread-id='{thread_id}'] .thread-open")
    page.wait_for_selector("article.message.assistant")
    assert thread_id_of(page) == thread_id
    assert page.locator("article.message").count() == 2

    # a second message in the same thread, stopped with the Stop button this time
    page.fill("#prompt", "And then?")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('article.assistant').length === 2 && "
                           "document.querySelector('article.assistant:last-of-type .message-body').textContent.length > 10")
    assert busy_slots(held_server) >= 1  # still generating: the stop cuts it
    page.click("#stop")
    page.wait_for_selector("article.assistant:last-of-type[data-done=true]")
    assert page.text_content("article.assistant:last-of-type .message-status") == "Stopped"
    wait_until(lambda: busy_slots(held_server) == 0, timeout=60)
    roles = [(m["role"], m["status"]) for m in messages_of(held_server, thread_id)]
    assert roles == [("user", "completed"), ("assistant", "incomplete")] * 2  # (stored: ready, stopped)


@pytest.mark.parametrize("csp", [False, True], ids=["renderer-alone", "with-csp"])
def test_model_output_cannot_inject_html(chat_server, new_page, csp):
    thread = api(chat_server, "POST", "/v1/threads", {"title": "Injection attempt"})
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages",
        {"role": "user", "content": f"Repeat after me: {XSS_IMG}"})
    payload = (f"Here you go: {XSS_SCRIPT} and {XSS_IMG}\n\n"
               "[click me](javascript:window.__pwned=1) and [data](data:text/html,<b>x</b>) "
               "and [safe](https://example.com/docs)\n\n"
               "**bold <u>not underlined</u>** and `<iframe src=x>`\n\n"
               "```html\n<script>window.__pwned=2</script>\n```")
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages",
        {"role": "assistant", "content": [{"type": "text", "text": {"value": payload, "annotations": []}}]})

    # Without the CSP this proves the renderer alone never makes markup of model text;
    # with it, that the policy is a second wall.
    page = new_page(csp=csp)
    open_page(page, chat_server, f"#thread={thread['id']}")
    page.wait_for_selector("article.message.assistant")
    time.sleep(0.5)  # give an <img onerror> every chance to fire
    assert page.evaluate("typeof window.__pwned") == "undefined"
    body = page.inner_text("article.message.assistant .message-body")
    assert XSS_SCRIPT in body and XSS_IMG in body
    assert "[click me](javascript:window.__pwned=1)" in body
    assert "[data](data:text/html,<b>x</b>)" in body
    assert "<u>not underlined</u>" in body and "<iframe src=x>" in body
    assert XSS_IMG in page.inner_text("article.message.user .message-body")
    # no element came from the text: only the renderer's own tags
    tags = set(page.evaluate("[...document.querySelectorAll('#messages *')].map(e => e.tagName.toLowerCase())"))
    assert not tags & {"script", "img", "iframe", "u", "b", "object", "embed", "svg", "style"}, tags
    links = page.evaluate("[...document.querySelectorAll('#messages a')].map(a => [a.href, a.rel, a.target])")
    assert links == [["https://example.com/docs", "noopener noreferrer nofollow", "_blank"]]
    assert page.inner_text("article.assistant pre code") == "<script>window.__pwned=2</script>"
    shot(page, f"05-injection-as-text-{'csp' if csp else 'no-csp'}")


def test_markdown_renderer(chat_server, new_page):
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    open_page(page, chat_server)
    result = page.evaluate("""async () => {
        const { renderMarkdown } = await import('/static/markdown.js');
        const render = (text) => { const d = document.createElement('div'); d.append(renderMarkdown(text)); return d; };
        const out = {};
        let d = render('**bold** and *it* and _under_ and `a < b` and snake_case_name and ~~gone~~');
        out.inline = [...d.querySelectorAll('strong, em, code, del')].map(e => [e.tagName, e.textContent]);
        out.inlineText = d.textContent;
        d = render('Intro\\n\\n```python\\nprint("<b>hi</b>")\\n  indented\\n```\\n\\nafter');
        out.code = [d.querySelector('pre code').textContent, d.querySelector('pre code').className,
                    d.querySelector('.code-lang').textContent, !!d.querySelector('button.copy-code'),
                    d.querySelectorAll('p').length];
        d = render('- one\\n- two **b**\\n  - nested\\n\\n1. first\\n2. second\\n\\n3) third');
        out.lists = [d.querySelectorAll('ul > li').length, d.querySelectorAll('ul ul > li').length,
                     d.querySelectorAll('ol > li').length, d.querySelector('ul strong')?.textContent];
        d = render('[a](https://x.test/p?q=1) [b](http://y.test) [c](javascript:alert(1)) [d](JAVASCRIPT:x) ' +
                   '[e](vbscript:x) [f](//evil.test) [g](/rel) see https://z.test/path. <a href="javascript:x">h</a>');
        out.links = [...d.querySelectorAll('a')].map(a => [a.textContent, a.getAttribute('href')]);
        out.linkText = d.textContent;
        d = render('# Title\\n\\n> quoted *text*\\n\\n---\\n\\nline one\\nline two');
        out.blocks = [d.querySelector('.md-heading')?.textContent, d.querySelector('blockquote em')?.textContent,
                      !!d.querySelector('hr'), d.querySelectorAll('p br').length];
        d = render('```js\\nconst unfinished = "streaming');
        out.unclosed = d.querySelector('pre code')?.textContent;
        d = render('<script>alert(1)</script><img src=x onerror=alert(1)><svg onload=alert(1)>');
        out.rawHtml = [d.querySelectorAll('*').length, d.textContent];
        out.allTags = [...new Set([...document.querySelectorAll('body *')].map(e => e.tagName))];
        return out;
    }""")
    assert result["inline"] == [["STRONG", "bold"], ["EM", "it"], ["EM", "under"], ["CODE", "a < b"], ["DEL", "gone"]]
    assert "snake_case_name" in result["inlineText"]
    assert result["code"] == ['print("<b>hi</b>")\n  indented', "language-python", "python", True, 2]
    assert result["lists"] == [3, 1, 3, "b"]
    assert result["links"] == [["a", "https://x.test/p?q=1"], ["b", "http://y.test/"], ["https://z.test/path", "https://z.test/path"]]
    for literal in ("[c](javascript:alert(1))", "[d](JAVASCRIPT:x)", "[e](vbscript:x)", "[f](//evil.test)",
                    "[g](/rel)", '<a href="javascript:x">h</a>'):
        assert literal in result["linkText"]
    assert result["blocks"] == ["Title", "text", True, 1]
    assert result["unclosed"] == 'const unfinished = "streaming'
    # a <p> and nothing else: the markup is text
    assert result["rawHtml"] == [1, "<script>alert(1)</script><img src=x onerror=alert(1)><svg onload=alert(1)>"]

    # hostile shapes render (each re-render while streaming goes through this) without overflowing the stack;
    # a renderer that backtracks exponentially never returns, and the test's timeout says so (no clock here)
    rendered = page.evaluate("""async () => {
        const { renderMarkdown } = await import('/static/markdown.js');
        const cases = {stars: '**a '.repeat(5000), star: '*a '.repeat(5000), ticks: '`a '.repeat(5000),
                       mixed: '*a **b _c ~~d '.repeat(2000), brackets: '[a '.repeat(5000),
                       quotes: '> '.repeat(5000) + 'x', lists: '  '.repeat(3000) + '- x\\n' + '- y\\n  '.repeat(2000),
                       nested: '*'.repeat(3000) + 'x' + '*'.repeat(3000)};
        const out = {};
        for (const [name, text] of Object.entries(cases)) {
            const html = renderMarkdown(text);
            out[name] = typeof html === 'string' ? html.length : (html && html.textContent || '').length;
        }
        return out;
    }""")
    assert set(rendered) == {"stars", "star", "ticks", "mixed", "brackets", "quotes", "lists", "nested"}
    assert all(length > 0 for length in rendered.values()), rendered

    # the copy button puts the code (not the rendered text) on the clipboard
    thread = api(chat_server, "POST", "/v1/threads", {"title": "Code"})
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "code please"})
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages",
        {"role": "assistant", "content": "Sure:\n\n```bash\necho '<hi>' && ls -la\n```\n\nDone."})
    open_page(page, chat_server, f"#thread={thread['id']}")
    page.click("button.copy-code")
    page.wait_for_function("document.querySelector('button.copy-code').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == "echo '<hi>' && ls -la"
    shot(page, "06-code-block")


def test_thread_settings_rename_and_delete(chat_server, new_page):
    page = new_page()
    open_page(page, chat_server)
    # settings for the thread that the first message creates
    page.click("#toggle-settings")
    assert page.get_attribute("#toggle-settings", "aria-expanded") == "true"
    assert page.evaluate("document.activeElement.id") == "set-instructions"
    page.fill("#set-instructions", "You tell short stories.")
    page.fill("#set-temperature", "0.3")
    page.fill("#set-max-tokens", "6")
    page.click("#save-settings")
    page.wait_for_function("document.getElementById('settings-status').textContent.startsWith('Saved')")
    shot(page, "07-settings")

    page.fill("#prompt", "Tell me about a cat")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]")
    thread_id = thread_id_of(page)
    entry = api(chat_server, "GET", f"/v1/threads/{thread_id}")["assistants"][0]
    assert entry["instructions"] == "You tell short stories."
    assert entry["model"]["id"] == MODEL_ID
    assert entry["model"]["parameters"] == {"temperature": 0.3, "max_tokens": 6}
    reply = [m for m in messages_of(chat_server, thread_id) if m["role"] == "assistant"][-1]
    assert reply["status"] == "incomplete" and reply["incomplete_details"] == {"reason": "max_tokens"}
    assert reply["metadata"]["usage"]["completion_tokens"] <= 6
    assert page.text_content("article.assistant .message-status") == "Cut off at the max tokens limit"

    # change them on the existing thread: saved to the thread, shown again after a reload
    page.fill("#set-max-tokens", "9")
    page.fill("#set-temperature", "")
    page.click("#save-settings")
    page.wait_for_function("document.getElementById('settings-status').textContent === 'Saved'")
    entry = api(chat_server, "GET", f"/v1/threads/{thread_id}")["assistants"][0]
    assert entry["model"]["parameters"] == {"max_tokens": 9}
    assert entry["instructions"] == "You tell short stories."
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.click("#toggle-settings")
    assert page.input_value("#set-max-tokens") == "9"
    assert page.input_value("#set-temperature") == ""
    assert page.input_value("#set-instructions") == "You tell short stories."
    page.keyboard.press("Escape")  # closes the panel, focus back on its button
    assert page.is_hidden("#settings")
    assert page.evaluate("document.activeElement.id") == "toggle-settings"

    # rename from the sidebar (keyboard: Enter saves)
    item = f".thread-item[data-thread-id='{thread_id}']"
    page.click(f"{item} .thread-rename-btn")
    page.fill(f"{item} input.thread-rename", "Cats, renamed")
    # Enter and Escape while an input method composes (Japanese, Chinese...) end the composition, not the rename
    for key in ("Enter", "Escape"):
        page.dispatch_event(f"{item} input.thread-rename", "keydown", {"key": key, "isComposing": True})
    assert page.input_value(f"{item} input.thread-rename") == "Cats, renamed"
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"document.querySelector(\"{item} .thread-open\")?.textContent === 'Cats, renamed'")
    assert api(chat_server, "GET", f"/v1/threads/{thread_id}")["title"] == "Cats, renamed"
    assert page.text_content("#thread-title") == "Cats, renamed"
    assert page.evaluate("document.activeElement.classList.contains('thread-open')")

    # delete: a confirmation dialog, then it is gone here and on the server
    page.click(f"{item} .thread-delete-btn")
    page.wait_for_selector("#confirm-dialog[open]")
    assert "Cats, renamed" in page.text_content("#confirm-message")
    shot(page, "08-delete-confirm")
    page.click("#confirm-ok")
    page.wait_for_selector(item, state="detached")
    assert call(chat_server, "GET", f"/v1/threads/{thread_id}")[0] == 404
    assert page.evaluate("location.hash") == ""
    assert page.text_content("#thread-title") == "New thread"
    assert page.locator("article.message").count() == 0


def test_api_key_flow(tmp_path, stories_path, new_page):
    key = "test-key-123"
    config = ServerConfig(data_folder=tmp_path / "data", models=[str(stories_path)], n_ctx=512, n_threads=1,
                          api_key=key)
    with ServerThread(config) as srv:
        page = new_page()
        page.goto(srv.base_url + "/")
        page.wait_for_selector("#key-dialog[open]")
        assert "needs an API key" in page.text_content("#key-message")
        assert page.evaluate("document.activeElement.id") == "key-input"
        shot(page, "09-api-key-prompt")

        # cancelling leaves a page that says a key is needed and how to give it, not "No models"
        page.click("#key-cancel")
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_selector("#key-needed", state="visible")
        assert "needs an API key" in page.text_content("#key-needed")
        assert page.is_hidden("#empty-state")
        assert "No models" not in page.text_content("#model-select")
        assert "API key needed" in page.text_content("#model-select")
        assert page.is_hidden("#toast")
        page.click("#key-needed-open")
        page.wait_for_selector("#key-dialog[open]")

        page.fill("#key-input", "wrong-key")
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('key-message').textContent.includes('not accepted')")
        assert page.is_visible("#key-dialog")
        page.fill("#key-input", key)
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_selector("#key-needed", state="hidden")
        page.wait_for_function(f"document.getElementById('model-select').value === '{MODEL_ID}'")
        assert page.is_hidden("#key-dialog")
        assert page.evaluate("localStorage.getItem('jan.apiKey')") == key
        assert page.input_value("#model-select") == MODEL_ID

        page.fill("#prompt", "Once upon a time")
        page.keyboard.press("Enter")
        page.wait_for_selector("article.assistant[data-done=true]")
        assert len(assistant_text(page)) > 10
        thread_id = thread_id_of(page)
        assert len(messages_of(srv, thread_id, key=key)) == 2
        assert page.is_hidden("#toast")
        shot(page, "10-api-key-chat")

        # the key is remembered: a reload goes straight to the thread
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_hidden("#key-dialog")
        page.wait_for_selector("article.message.assistant")


def test_renaming_while_an_answer_ends_keeps_the_typed_title(held_server, new_page):
    """The thread list is read again as an answer ends: a title being typed there is not thrown away."""
    page = new_page()
    open_page(page, held_server)
    start_answer(page)
    thread_id = thread_id_of(page)
    item = f".thread-item[data-thread-id='{thread_id}']"
    page.wait_for_selector(f"{item} .thread-rename-btn")
    page.click(f"{item} .thread-rename-btn")
    page.keyboard.type("A story")
    # the answer ends (cut by another client, so the page keeps its focus and the test need not wait out a whole
    # story on a busy machine) and the page reads the thread list again: waited for to its end, then a frame
    run = api(held_server, "GET", f"/v1/threads/{thread_id}/runs?limit=1")["data"][0]
    assert run["status"] == "in_progress"  # the answer ends after the rename began: by the cancel below
    with page.expect_response(lambda r: "/v1/threads?limit=100" in r.url, timeout=90_000) as listed:
        api(held_server, "POST", f"/v1/threads/{thread_id}/runs/{run['id']}/cancel")
        page.wait_for_selector("article.assistant[data-done=true]", timeout=90_000)
    listed.value.finished()
    page.evaluate("new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)))")
    assert page.input_value(f"{item} input.thread-rename") == "A story"
    assert page.evaluate("document.activeElement.classList.contains('thread-rename')")
    page.keyboard.type(" of a dog")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector(\"{item} .thread-open\")?.textContent === 'A story of a dog'")
    assert api(held_server, "GET", f"/v1/threads/{thread_id}")["title"] == "A story of a dog"
    assert page.text_content("#thread-title") == "A story of a dog"


def test_enter_right_after_a_stop_or_a_switch_of_thread_sends(chat_server, new_page):
    """A stopped answer takes a moment to be saved (the server must notice the stop); Enter meanwhile sends once
    it is, in the thread now open, never does nothing. The stopped reply stays with its own thread."""
    first = api(chat_server, "POST", "/v1/threads", {"title": "Earlier"})
    page = new_page()
    open_page(page, chat_server)
    start_answer(page)
    streaming = thread_id_of(page)

    # switch thread mid-answer and send there at once
    page.click(f".thread-item[data-thread-id='{first['id']}'] .thread-open")
    page.wait_for_function("id => location.hash === '#thread=' + id", arg=first["id"])
    page.fill("#prompt", "Hello there")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]", timeout=90_000)
    assert page.input_value("#prompt") == ""
    assert [m["role"] for m in messages_of(chat_server, first["id"])] == ["user", "assistant"]
    assert page.locator("article.message").count() == 2  # the other thread's reply did not land here
    left = messages_of(chat_server, streaming)
    assert [m["role"] for m in left] == ["user", "assistant"] and left[1]["status"] == "incomplete"

    # Stop, then Enter at once: the next message goes once the stopped reply is saved
    start_answer(page, "article.assistant:nth-of-type(4)")
    page.click("#stop")
    page.fill("#prompt", "And then?")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant:nth-of-type(6)", timeout=60_000)
    assert page.input_value("#prompt") == ""
    page.click("#stop")
    page.wait_for_selector("article.assistant:nth-of-type(6)[data-done=true]", timeout=60_000)
    assert [m["role"] for m in messages_of(chat_server, first["id"])] == ["user", "assistant"] * 3


def test_a_damaged_thread_file_is_told_as_left_in_place(tmp_path, new_page):
    """The page told a damaged thread.json as "set aside; see the server's data folder", though a read leaves it in
    place (no copy to look for): it now says it cannot be read, and names the file to repair or remove."""
    from jan.store import DataFolder

    data = tmp_path / "data"
    store = DataFolder(data)
    kept = store.threads.create("Kept")
    broken = store.threads.create("Broken")
    (data / "threads" / broken["id"] / "thread.json").write_text("{not json")
    with ServerThread(ServerConfig(data_folder=data, n_threads=1)) as srv:
        page = new_page()
        open_page(page, srv)
        page.wait_for_selector("#toast", state="visible")
        said = page.text_content("#toast")
        assert "set aside" not in said and f"threads/{broken['id']}/thread.json" in said, said
        assert "left in place" in said and "repair or remove" in said, said
        assert page.locator(f".thread-item[data-thread-id='{kept['id']}']").count() == 1
    assert (data / "threads" / broken["id"] / "thread.json").read_text() == "{not json"


def test_server_stopped_and_back_while_the_page_is_open(tmp_path, stories_path, new_page):
    """jan stopped under an open page: the reply it was writing is kept and says why it ended; what the user
    then does gets a plain "cannot reach the server" (never the browser's "Failed to fetch") and keeps the
    typed text; once jan is back on its port the page says so by itself and the same thread goes on."""
    config = ServerConfig(data_folder=tmp_path / "data", models=[str(stories_path)], n_ctx=4096, n_threads=1)
    first = ServerThread(config)
    with first as srv:
        page = new_page()
        open_page(page, srv)
        start_answer(page)
        thread_id = thread_id_of(page)
    # stopped mid-answer: the stream ends with the reply as saved, marked as cut by the stop of jan
    page.wait_for_selector("article.assistant[data-done=true]", timeout=60_000)
    assert "server stopped" in page.text_content("article.assistant .message-status")
    assert len(assistant_text(page)) > 10
    # the reply's note says it; the stream's server_shutdown event (when it outran the closing connection) is no
    # toast of API instructions (it stood in for the "cannot reach" toast below: that race failed this test)
    assert "shutting down" not in (page.text_content("#toast") or "")
    shot(page, "15-server-stopped")

    page.fill("#prompt", "Are you there?")
    page.keyboard.press("Enter")
    page.wait_for_selector("#toast", state="visible")
    assert page.text_content("#toast") == "Cannot reach the Jan server. Is it still running?"
    page.wait_for_selector("#offline", state="visible")
    assert page.input_value("#prompt") == "Are you there?"  # nothing was sent: the text is kept
    assert page.locator("article.message").count() == 2
    page.click("#new-thread")
    page.click(f".thread-item[data-thread-id='{thread_id}'] .thread-open")
    page.wait_for_selector("#toast", state="visible")
    assert "Failed to fetch" not in page.text_content("#toast")
    shot(page, "16-server-away")

    with ServerThread(replace(config, port=first.config.port)) as srv:
        page.wait_for_selector("#offline", state="hidden", timeout=60_000)  # found back without a reload
        page.click(f".thread-item[data-thread-id='{thread_id}'] .thread-open")
        page.wait_for_selector("article.assistant .message-status:not([hidden])")
        assert "server stopped" in page.text_content("article.assistant .message-status")
        # a short answer: the test is about the same thread going on, not about a whole story on a busy machine
        page.click("#toggle-settings")
        page.fill("#set-max-tokens", "8")
        page.click("#save-settings")
        page.fill("#prompt", "Are you there?")
        page.keyboard.press("Enter")
        page.wait_for_selector("article.assistant:nth-of-type(4)[data-done=true]", timeout=60_000)
        assert [m["role"] for m in messages_of(srv, thread_id)] == ["user", "assistant", "user", "assistant"]
        assert page.is_hidden("#offline")


def test_an_idle_page_notices_the_server_gone_and_back(tmp_path, stories_path, new_page):
    """Nothing sent, nothing streaming: the page still notices jan stopped (the banner shows, the model badge says
    "offline" rather than the "ready" it last read, the start/stop button goes), and once jan is back on its port
    the badge reads the model's state again, without a reload."""
    config = ServerConfig(data_folder=tmp_path / "data", models=[str(stories_path)], n_ctx=256, n_threads=1)
    first = ServerThread(config)
    with first as srv:
        page = new_page()
        open_page(page, srv)
        page.wait_for_function("document.querySelector('#model-state').textContent === 'ready'")
        assert page.is_visible("#model-toggle")
    page.wait_for_selector("#offline", state="visible", timeout=60_000)
    page.wait_for_function("document.querySelector('#model-state').textContent === 'offline'")
    assert "unreachable" in page.get_attribute("#model-state", "class")
    assert page.is_hidden("#model-toggle")
    assert page.input_value("#model-select") == MODEL_ID  # the list it had is kept while the server is away
    shot(page, "15b-idle-server-away")
    # on a phone the banner and a toast use the window's width, not half of it (its words wrapped word by word)
    page.set_viewport_size({"width": 390, "height": 844})
    page.fill("#prompt", "Hello?")
    page.keyboard.press("Enter")
    page.wait_for_selector("#toast", state="visible")
    for box in ("#offline", "#toast"):
        assert page.locator(box).bounding_box()["width"] > 300, box
    shot(page, "15c-idle-server-away-narrow")
    page.set_viewport_size({"width": 1280, "height": 820})
    with ServerThread(replace(config, port=first.config.port)):
        page.wait_for_selector("#offline", state="hidden", timeout=60_000)
        page.wait_for_function("document.querySelector('#model-state').textContent !== 'offline'")
        assert page.is_visible("#model-toggle")
        assert page.get_attribute("#model-state", "class") != "badge unreachable"


def test_images_are_not_offered_for_a_model_that_cannot_see(chat_server, new_page, test_image_path):
    """stories260K has no projector (no "vision" in its /v1/models capabilities): the page offers no attach button
    and its hint no images, and an image that comes anyway (the file input, a paste, a drop) is refused at once with
    words that say why, not taken to be refused by the run; the text still sends."""
    capabilities = next(m for m in api(chat_server, "GET", "/v1/models")["data"] if m["id"] == MODEL_ID)["capabilities"]
    assert "vision" not in capabilities
    page = new_page()
    open_page(page, chat_server)
    assert page.is_hidden("#attach")
    assert "image" not in page.text_content("#composer-hint")
    page.set_input_files("#attach-input", str(test_image_path))
    page.wait_for_function("document.getElementById('toast').textContent.includes('cannot see images')")
    assert page.is_hidden("#attachments") and page.locator("#attachments .attachment").count() == 0
    page.evaluate("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array([137, 80, 78, 71])], "pasted.png", { type: "image/png" }));
        document.getElementById('toast').textContent = '';
        for (const [target, event] of [["#prompt", "paste"], ["#composer", "drop"]]) {
            const e = event === "paste" ? new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true })
                : new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true });
            document.querySelector(target).dispatchEvent(e);
        }
    }""")
    page.wait_for_function("document.getElementById('toast').textContent.includes('cannot see images')")
    assert page.locator("#attachments .attachment").count() == 0
    shot(page, "17b-image-not-offered")
    page.fill("#prompt", "Once upon a time")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]", timeout=60_000)
    assert page.locator("article.user .message-images").count() == 0


def test_a_model_loaded_by_a_message_shows_ready_after(tmp_path, stories_path, new_page):
    """A stopped model is loaded for the run a message starts: the badge does not keep saying "unloaded" after."""
    config = ServerConfig(data_folder=tmp_path / "data", models=[str(stories_path)], n_ctx=256, n_threads=1)
    with ServerThread(config) as srv:
        api(srv, "POST", f"/v1/models/{MODEL_ID}/stop")
        page = new_page()
        without_the_slow_models_refresh(page)  # (so no bound below its period is needed to tell it apart)
        # a read of the models made by send() once the answer is done is the run's end's: told apart from the
        # reads while the message is sent and from the heartbeat's (the page marks the model "loading" as it
        # sends, and the heartbeat reads a loading model again)
        page.add_init_script("""(() => {
          const real = window.fetch;
          window.__modelReadsAfterDone = 0;
          window.fetch = function (input, ...rest) {
            const url = typeof input === "string" ? input : input.url;
            if (/\\/v1\\/models$/.test(url) && document.querySelector("article.assistant[data-done=true]")
                && /\\bat send\\b/.test(new Error().stack))
              window.__modelReadsAfterDone += 1;
            return real.call(this, input, ...rest);
          };
        })();""")
        open_page(page, srv)
        assert slow_models_refresh_was_off(page)
        assert page.text_content("#model-state") == "unloaded"
        page.click("#toggle-settings")
        page.fill("#set-max-tokens", "4")
        page.click("#save-settings")
        page.fill("#prompt", "Hello")
        page.keyboard.press("Enter")
        page.wait_for_selector("article.assistant[data-done=true]", timeout=90_000)
        # the models are read again as the run ends (not only by the page's slow background refresh)
        page.wait_for_function("window.__modelReadsAfterDone >= 1", timeout=60_000)
        page.wait_for_function("document.querySelector('#model-state').textContent === 'ready'", timeout=60_000)
        assert page.text_content("#model-toggle") == "Stop model"


def test_a_model_still_loading_is_read_again_soon(chat_server, new_page):
    """The page opened while the model loads (jan just started with it): the badge says "loading" and turns to
    the model's state within seconds, not at the page's slow 15 s refresh of the models."""
    page = new_page()
    seen = []

    def loading_once(route):
        # the first read of the models, as the server answers while it loads the model
        response = route.fetch()
        body = response.json()
        if not seen:
            for model in body["data"]:
                model["state"] = "loading"
        seen.append(True)
        route.fulfill(response=response, json=body)

    page.route("**/v1/models", loading_once)
    without_the_slow_models_refresh(page)  # (only the heartbeat's read can turn it ready: waited for as long as needed)
    open_page(page, chat_server)
    assert slow_models_refresh_was_off(page)
    assert page.text_content("#model-state") == "loading"
    assert page.is_disabled("#model-toggle")
    page.wait_for_function("document.querySelector('#model-state').textContent === 'ready'", timeout=60_000)
    assert page.is_enabled("#model-toggle")


def test_sending_into_a_thread_deleted_elsewhere(tmp_path, stories_path, new_page):
    """The open thread is deleted in another tab: Enter says so (not "thread '…' not found"), keeps the text and
    leaves the dead thread; the next Enter sends it in a new thread."""
    config = ServerConfig(data_folder=tmp_path / "data", models=[str(stories_path)], n_ctx=256, n_threads=1)
    with ServerThread(config) as srv:
        doomed = api(srv, "POST", "/v1/threads", {"title": "Deleted elsewhere"})
        page = new_page()
        open_page(page, srv, f"#thread={doomed['id']}")
        assert page.text_content("#thread-title") == "Deleted elsewhere"
        api(srv, "DELETE", f"/v1/threads/{doomed['id']}")
        page.fill("#prompt", "Still there?")
        page.keyboard.press("Enter")
        page.wait_for_selector("#toast", state="visible")
        assert "no longer exists" in page.text_content("#toast")
        assert page.input_value("#prompt") == "Still there?"
        assert page.text_content("#thread-title") == "New thread"
        page.wait_for_selector(f".thread-item[data-thread-id='{doomed['id']}']", state="detached")
        page.keyboard.press("Enter")
        page.wait_for_selector("article.assistant[data-done=true]", timeout=60_000)
        fresh = thread_id_of(page)
        assert fresh != doomed["id"]
        assert [m["role"] for m in messages_of(srv, fresh)] == ["user", "assistant"]

        # the same for the other things done to the open thread: renaming it, saving its settings
        item = f".thread-item[data-thread-id='{fresh}']"
        api(srv, "DELETE", f"/v1/threads/{fresh}")
        page.click(f"{item} .thread-rename-btn")
        page.fill(f"{item} input.thread-rename", "Renamed too late")
        page.keyboard.press("Enter")
        page.wait_for_selector(item, state="detached")
        page.wait_for_function("document.getElementById('toast').textContent.includes('no longer exists')")
        assert page.text_content("#thread-title") == "New thread"
        again = api(srv, "POST", "/v1/threads", {"title": "Settings gone"})
        # (a goto that changes only the fragment does not reload the page: the last toast stays and the thread opens
        # a moment later, so wait until it is open before deleting it)
        open_page(page, srv, f"#thread={again['id']}")
        page.wait_for_function("document.getElementById('thread-title').textContent === 'Settings gone'")
        api(srv, "DELETE", f"/v1/threads/{again['id']}")
        page.click("#toggle-settings")
        page.fill("#set-max-tokens", "5")
        page.click("#save-settings")
        page.wait_for_selector(f".thread-item[data-thread-id='{again['id']}']", state="detached")
        page.wait_for_function("document.getElementById('thread-title').textContent === 'New thread'")
        assert "no longer exists" in page.text_content("#toast")


def test_first_visit_with_no_model_says_how_to_add_one(tmp_path, new_page):
    with ServerThread(ServerConfig(data_folder=tmp_path / "data", n_threads=1)) as srv:
        page = new_page()
        open_page(page, srv)
        assert "No models" in page.text_content("#model-select")
        assert "Pick a model above" not in page.text_content("#empty-state")
        assert "no model yet" in page.text_content("#empty-hint")
        shot(page, "17-no-model")
        page.click("#empty-open-models")
        page.wait_for_selector("#models-dialog[open]")
        page.keyboard.press("Escape")
        # the dialog's close event (a task of its own) hands the focus back to its button: waited for, so that it
        # cannot take the focus from the prompt filled below (an Enter on that button opened the dialog again)
        page.wait_for_function("() => !document.getElementById('models-dialog').open"
                               " && document.activeElement.id === 'open-models'")
        page.fill("#prompt", "Hello")
        page.keyboard.press("Enter")  # nothing to answer with: said so, the text is kept
        page.wait_for_selector("#toast", state="visible")
        assert "No model to answer with" in page.text_content("#toast")
        assert page.input_value("#prompt") == "Hello"


def test_narrow_window(chat_server, new_page):
    thread = api(chat_server, "POST", "/v1/threads", {"title": "On a phone"})
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "Show me code"})
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "assistant", "content": (
        "A *long* line of code scrolls inside its block:\n\n```python\n"
        "print('a fairly long line that would not fit on a narrow phone screen at all, not even close')\n```\n\n"
        "- item one\n- item two with a link https://example.com/a/very/long/path/that/keeps/going/on/and/on")})

    page = new_page(width=390, height=844)
    open_page(page, chat_server)
    assert page.is_hidden("#sidebar")  # collapsed on a narrow window
    assert page.get_attribute("#toggle-sidebar", "aria-expanded") == "false"
    shot(page, "11-narrow-closed")

    page.click("#toggle-sidebar")
    assert page.is_visible("#sidebar") and page.is_visible("#scrim")
    assert page.evaluate("document.activeElement.closest('#sidebar') !== null")
    shot(page, "12-narrow-sidebar")

    page.click(f".thread-item[data-thread-id='{thread['id']}'] .thread-open")
    page.wait_for_selector("article.message.assistant")
    assert page.is_hidden("#sidebar")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "13-narrow-thread")

    page.emulate_media(color_scheme="dark")
    shot(page, "14-narrow-dark")
    page.click("#toggle-sidebar")
    page.keyboard.press("Escape")  # Esc closes the sidebar overlay
    assert page.is_hidden("#sidebar")


def test_page_runs_under_its_csp(chat_server, new_page):
    """With the policy enforced: the page loads, lists, streams, with no CSP violation (checked by new_page)."""
    page = new_page(csp=True)
    open_page(page, chat_server)
    page.click("#toggle-settings")
    page.fill("#set-max-tokens", "5")
    page.click("#save-settings")
    page.fill("#prompt", "Hello")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]")
    assert len(assistant_text(page)) > 0
    assert page.locator(".thread-item").count() >= 1


def test_model_picker_start_stop(chat_server, new_page):
    page = new_page()
    open_page(page, chat_server)
    assert page.text_content("#model-toggle") == "Stop model"
    page.click("#model-toggle")
    page.wait_for_function("document.getElementById('model-state').textContent === 'unloaded'")
    assert api(chat_server, "GET", f"/v1/models/{MODEL_ID}")["state"] == "unloaded"
    shot(page, "15-model-unloaded")
    page.click("#model-toggle")
    page.wait_for_function("document.getElementById('model-state').textContent === 'ready'")
    assert api(chat_server, "GET", f"/v1/models/{MODEL_ID}")["state"] == "ready"

    page.click("#open-models")
    page.wait_for_selector("#models-dialog[open]")
    row = f"#model-list li[data-model-id='{MODEL_ID}']"
    assert page.text_content(f"{row} .badge") == "ready"
    shot(page, "16-models-dialog")
    page.keyboard.press("Escape")
    assert page.is_hidden("#models-dialog")
    assert page.evaluate("document.activeElement.id") == "open-models"


# -- importing and downloading models ---------------------------------------------------
@pytest.fixture(scope="module")
def file_server(stories_path):
    """Serves the stories260K file over http://127.0.0.1 in 64 KiB pieces: /held/ stops at a third and at two
    thirds of the file until ``gates[0]`` and ``gates[1]`` are set (a download the test sees at two points, however
    slowly the page or this machine runs); /crawl/ slowly (~40 s). Yields ``(url, gates)``."""
    import http.server
    import threading

    from api_helpers import http_serving

    data = stories_path.read_bytes()
    gates = [threading.Event(), threading.Event()]
    stops = {len(data) // 3 // 65536 * 65536: gates[0], 2 * len(data) // 3 // 65536 * 65536: gates[1]}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            kind = self.path.strip("/").split("/")[0]
            if kind not in ("held", "crawl"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for start in range(0, len(data), 65536):
                    if kind == "held" and start in stops:
                        stops[start].wait(120)  # (bounded: a failed test leaves no thread behind)
                    self.wfile.write(data[start:start + 65536])
                    self.wfile.flush()
                    if kind == "crawl":
                        time.sleep(2.0)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    with http_serving(Handler) as url:
        yield url, gates


def test_import_a_model_from_a_path(chat_server, new_page, stories_path):
    page = new_page()
    open_page(page, chat_server)
    page.click("#open-models")
    page.wait_for_selector("#models-dialog[open]")
    page.fill("#import-path", str(stories_path))
    page.fill("#import-id", "stories-imported")
    page.click("#import-go")
    page.wait_for_function("document.getElementById('import-status').textContent.startsWith('Imported')")
    assert page.text_content("#import-status") == "Imported stories-imported."
    page.wait_for_selector("#model-list li[data-model-id='stories-imported']")
    assert api(chat_server, "GET", "/v1/models/stories-imported")["id"] == "stories-imported"
    assert page.input_value("#model-select") == "stories-imported"  # the imported model is picked

    page.fill("#import-path", "/no/such/file.gguf")
    page.click("#import-go")
    page.wait_for_function("document.getElementById('import-status').textContent.startsWith('Import failed')")
    shot(page, "17-import")


def test_download_a_model_with_progress_and_cancel(chat_server, new_page, file_server):
    url, gates = file_server
    page = new_page()
    open_page(page, chat_server)
    page.click("#open-models")
    page.wait_for_selector("#models-dialog[open]")
    page.fill("#pull-url", f"{url}/held/stories-copy.gguf")
    page.fill("#pull-id", "stories-pulled")
    page.click("#pull-go")
    page.wait_for_selector("#pull-box", state="visible")
    # the file stops at a third and at two thirds until the page has shown a new value: the download cannot end
    # before the page was seen to move (a paced file could, on a busy machine, between two looks)
    seen: list[float] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        value, maximum, text = page.evaluate(
            "[document.getElementById('pull-progress').value, document.getElementById('pull-progress').max,"
            " document.getElementById('pull-status').textContent]")
        if text.startswith("downloading") and 0 < value < maximum and value not in seen:
            seen.append(value)
            if len(seen) == 2:
                shot(page, "18-download-progress")
            if len(seen) <= len(gates):
                gates[len(seen) - 1].set()  # seen here: the file goes on
        if text.startswith("Downloaded"):
            break
        time.sleep(0.05)
    assert len(seen) >= 2, f"progress never moved: {seen}"
    assert page.text_content("#pull-status") == "Downloaded stories-pulled; it is in the list above."
    assert page.evaluate("document.getElementById('pull-progress').value") == page.evaluate(
        "document.getElementById('pull-progress').max")
    page.wait_for_selector("#model-list li[data-model-id='stories-pulled']")
    assert api(chat_server, "GET", "/v1/models/stories-pulled")["state"] in ("unloaded", "ready")

    # a slow one, cancelled from the page: the server drops it
    page.fill("#pull-url", f"{url}/crawl/stories-crawl.gguf")
    page.fill("#pull-id", "stories-cancelled")
    page.click("#pull-go")
    page.wait_for_function("document.getElementById('pull-status').textContent.startsWith('downloading')")
    page.click("#pull-cancel")
    page.wait_for_function("document.getElementById('pull-status').textContent === 'Download cancelled.'")
    assert page.is_hidden("#pull-cancel") and page.is_enabled("#pull-go")
    assert call(chat_server, "GET", "/v1/models/stories-cancelled")[0] == 404
    downloads = api(chat_server, "GET", "/v1/downloads")["data"]
    assert [d["state"] for d in downloads if d["model_id"] == "stories-cancelled"] == ["cancelled"]
    shot(page, "19-download-cancelled")


# -- tools: approve a tool call in the page ---------------------------------------------
@pytest.fixture(scope="module")
def tools_server(tmp_path_factory, vocab_dir):
    """A tiny model with Qwen3's tool-calling template and a real MCP server (tests/mcp_servers/notes_server.py)."""
    from jan.testing.gguf_models import write_qwen3_tool_model
    from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

    tmp = tmp_path_factory.mktemp("web-tools")
    model = write_qwen3_tool_model(tmp / "qwen3-tools.gguf")
    root = notes_folder(tmp)
    (root / "<i>zz.txt").write_text("markup in a name", encoding="utf-8")  # tool output is never markup
    write_mcp_config(tmp / "data", {"notes": stdio_entry(root)})
    config = ServerConfig(data_folder=tmp / "data", models=[str(model)], n_ctx=2048, n_parallel=1, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


def _notes_thread(server, title: str) -> dict:
    """A thread whose assistant must call notes__list_notes first (its tool choice), which needs approval."""
    return api(server, "POST", "/v1/threads", {"title": title, "assistants": [{
        "assistant_id": "jan", "assistant_name": "Jan",
        "model": {"id": "qwen3-tools", "parameters": {"max_tokens": 40, "temperature": 0}},
        "tools": [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"]}],
        "tool_policy": {"tool_choice": {"type": "function", "function": {"name": "notes__list_notes"}}}}]})


@pytest.mark.timeout(600)
def test_approve_a_tool_call_in_the_page(tools_server, new_page):
    """A tool call waits for approval; the user approves it in the page; its result shows inline as text."""
    server = tools_server
    thread = _notes_thread(server, "Notes")
    page = new_page()
    open_page(page, server, f"#thread={thread['id']}")
    page.fill("#prompt", "Which notes do I have?")
    page.click("#send")
    page.wait_for_selector(".approval #approve-tools")
    assert "notes__list_notes" in page.inner_text(".approval")
    # the arguments as JSON laid out (the tiny model pads "{ }" with runs of blanks), in the box and after it
    waiting = api(server, "GET", f"/v1/threads/{thread['id']}/runs?limit=1")["data"][0]
    raw = waiting["required_action"]["submit_tool_outputs"]["tool_calls"][0]["function"]["arguments"]
    laid_out = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    assert page.text_content(".approval .tool-args") == laid_out
    assert all("tool_call" not in a.inner_text() for a in page.query_selector_all("article.assistant"))  # no markup
    shot(page, "tools-approval")
    assert [m["role"] for m in messages_of(server, thread["id"])] == ["user", "assistant"]  # nothing ran yet
    page.click("#approve-tools")
    page.wait_for_selector("article.assistant[data-done=true]")
    wait_until(lambda: page.query_selector(".tool-call .tool-result"))
    result = page.query_selector(".tool-call .tool-result")
    assert result.text_content() == "<i>zz.txt\nshopping.txt\ntodo.txt"
    assert page.query_selector(".tool-call i") is None  # output is text, not HTML
    page.click(".tool-call summary")
    assert page.text_content(".tool-call .tool-args") == laid_out
    shot(page, "tools-result")
    roles = [m["role"] for m in messages_of(server, thread["id"])]
    assert roles == ["user", "assistant", "tool", "assistant"]
    tool = messages_of(server, thread["id"])[2]
    assert tool["metadata"]["approved_by"] == "user"

    # the MCP server is listed in the thread settings, and can be switched off
    page.click("#toggle-settings")
    page.wait_for_selector(".mcp-server[data-server=notes]")
    assert "running" in page.inner_text(".mcp-server[data-server=notes]")
    page.click(".mcp-server[data-server=notes] button")
    wait_until(lambda: "Enable" in page.inner_text(".mcp-server[data-server=notes] button"))
    assert api(server, "GET", "/v1/mcp/servers")["data"][0]["enabled"] is False
    page.click(".mcp-server[data-server=notes] button")
    wait_until(lambda: "Disable" in page.inner_text(".mcp-server[data-server=notes] button"))


@pytest.mark.timeout(600)
def test_a_run_left_waiting_for_approval_does_not_lock_the_thread(tools_server, new_page):
    """A run waiting for approval holds its thread (no new message while it waits), but one whose approval
    box is gone (the page was closed, or its client walked away) must not lock the conversation: sending a
    new message from the page cancels it and goes on."""
    server = tools_server
    thread = _notes_thread(server, "Left waiting")
    tid = thread["id"]
    api(server, "POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Which notes do I have?"})
    waiting = api(server, "POST", f"/v1/threads/{tid}/runs", {})  # answered at once: polled to requires_action
    waiting = wait_for_run_sync(lambda path: api(server, "GET", path), waiting)
    assert waiting["status"] == "requires_action"
    status, _ = call(server, "POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "hello?"})
    assert status == 400  # held: the API refuses a message in the middle of the run
    page = new_page()
    open_page(page, server, f"#thread={tid}")
    page.fill("#prompt", "Never mind, tell me a story")
    page.click("#send")
    page.wait_for_selector(".approval #approve-tools")  # the new run asks too (its tool choice is forced)
    assert api(server, "GET", f"/v1/threads/{tid}/runs/{waiting['id']}")["status"] == "cancelled"
    assert [text_of(m) for m in messages_of(server, tid) if m["role"] == "user"][-1] == "Never mind, tell me a story"
    page.click("#stop")  # stopping at the approval box cancels that run too: the thread is left free
    wait_until(lambda: api(server, "GET", f"/v1/threads/{tid}/runs?limit=1")["data"][0]["status"] == "cancelled")


def test_a_messages_image_link_is_shown_not_left_out(tmp_path, new_page, test_image_path):
    """A message holding image links the store kept as given (the library, an import, a hand edit) showed no image
    at all: only its image_file parts were shown. A link is named (an http(s) one opened on a click, never loaded
    by the page), a data: URL's image shown itself, beside the image files as before; an attached document by its
    name."""
    import base64

    from jan.store import DataFolder

    data = tmp_path / "data"
    store = DataFolder(data)
    link = "https://images.example.com/cat.png"
    inline = "data:image/jpeg;base64," + base64.b64encode(test_image_path.read_bytes()).decode()
    thread = store.threads.create("Linked")
    store.messages.create(thread["id"], "user", [
        {"type": "text", "text": "what are these"}, {"type": "image_url", "image_url": {"url": link}},
        {"type": "image_url", "image_url": {"url": "/srv/pictures/dog.png"}}],
        attachments=[{"file_id": "file-abc", "tools": [{"type": "file_search"}],
                      "document": {"text": "Some notes.", "filename": "notes.txt"}}])
    stored = store.messages.create(thread["id"], "user", [{"type": "image_url", "image_url": {"url": inline}}])
    with ServerThread(ServerConfig(data_folder=data, n_threads=1)) as srv:
        page = new_page()
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        open_page(page, srv, f"#thread={thread['id']}")
        page.wait_for_selector("article.user .message-images .linked-image a")
        first = page.locator("article.user").nth(0)
        assert first.locator(".linked-image a").get_attribute("href") == link
        assert first.locator(".linked-image a").get_attribute("rel") == "noopener noreferrer"
        assert first.locator(".linked-image code").text_content() == "/srv/pictures/dog.png"
        # a document attached to it is named too (it was shown nowhere)
        assert first.locator(".message-files .message-file").text_content() == "File: notes.txt"
        # (the store keeps a data: URL's image as a file: shown as every image file is)
        second = page.locator("article.user").nth(1)
        second.locator(".message-images img.thumb").wait_for()
        assert stored["content"][0]["type"] in ("image_file", "image_url"), stored
        assert not any("images.example.com" in url for url in asked), asked  # never loaded by the page
