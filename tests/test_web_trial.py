"""The chat page as a user tries it: long hostile replies, several models, drafts, right-to-left text.

Driven like test_web_page.py (Playwright for Python with Debian's ``chromium``; skipped without them, except
under ``JAN_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import pytest

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread
from test_web_page import MODEL_ID, api, open_page, shot, thread_id_of


@pytest.fixture(scope="module")
def trial_server(tmp_path_factory, stories_path, minilm_path):
    """stories260K beside an embedding model (which the chat picker must not offer): the embedding model's id
    sorts first, so a page that took the first listed model for chat picked the one that cannot answer."""
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("web-trial"),
                          models=[str(stories_path), str(minilm_path)], n_ctx=256, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


def test_a_reply_of_open_brackets_renders_without_freezing_the_page(trial_server, new_page):
    """Each "[" of a "[a[a[a…" reply made the link pattern scan to the text's end: a long one froze the page
    for minutes on each repaint while it streamed. It renders, as text, well within the bound (linear: well
    under a second; the old quadratic scan took over ten minutes here)."""
    page = new_page()
    open_page(page, trial_server)
    page.evaluate("""() => { window.__rendered = null; setTimeout(async () => {
        const { renderMarkdown } = await import('/static/markdown.js');
        const text = '[a'.repeat(1000000) + ' [ok](https://x.test) ' + '[b]'.repeat(200000);
        const d = document.createElement('div'); d.append(renderMarkdown(text));
        window.__rendered = { text: d.textContent, same: d.textContent.startsWith('[a'.repeat(1000000)),
                              links: [...d.querySelectorAll('a')].map(a => a.getAttribute('href')) };
    }, 0); }""")
    page.wait_for_function("window.__rendered !== null", timeout=120_000)
    rendered = page.evaluate("window.__rendered")
    assert rendered["same"] and rendered["links"] == ["https://x.test/"]
    assert rendered["text"].endswith("[b]" * 200000)


def test_the_chat_picker_offers_only_models_that_chat(trial_server, new_page):
    models = {m["id"]: m for m in api(trial_server, "GET", "/v1/models")["data"]}
    assert set(models) == {MODEL_ID, "all-MiniLM-L6-v2-f32"}
    page = new_page()
    # a page that last used the embedding model (its id kept from before) takes a chat model instead
    page.add_init_script("localStorage.setItem('jan.model', 'all-MiniLM-L6-v2-f32')")
    open_page(page, trial_server)
    options = page.evaluate("[...document.querySelectorAll('#model-select option')].map(o => o.value)")
    assert options == [MODEL_ID]
    assert page.input_value("#model-select") == MODEL_ID
    # the first message goes to the chat model and is answered (it was refused: "an embedding model")
    page.fill("#prompt", "Once upon a time")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]", timeout=60_000)
    assert page.text_content("article.assistant .message-status") in ("", "Cut off at the max tokens limit")
    # the Models dialog still lists it, to start and stop, but never to use for chat
    page.click("#open-models")
    use = page.locator("#model-list li[data-model-id='all-MiniLM-L6-v2-f32'] button", has_text="Embeddings only")
    assert use.is_disabled()
    shot(page, "trial-models-embedding")


def test_what_is_typed_survives_a_reload_and_stays_with_its_thread(trial_server, new_page):
    """The prompt's text was one for the whole page: a reload lost it, and text typed in one thread showed up in
    the next one opened. Each thread now keeps its own draft until it is sent."""
    earlier = api(trial_server, "POST", "/v1/threads", {"title": "Earlier"})
    page = new_page()
    open_page(page, trial_server)
    page.fill("#prompt", "typed in a new thread\nsecond line")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#prompt") == "typed in a new thread\nsecond line"

    # another thread has its own (empty) draft; coming back shows this one's
    page.click(f".thread-item[data-thread-id='{earlier['id']}'] .thread-open")
    page.wait_for_function("id => location.hash === '#thread=' + id", arg=earlier["id"])
    assert page.input_value("#prompt") == ""
    page.fill("#prompt", "for Earlier")
    page.click("#new-thread")
    page.wait_for_function("location.hash === ''")
    assert page.input_value("#prompt") == "typed in a new thread\nsecond line"

    # a reload on a thread keeps its draft too
    open_page(page, trial_server, f"#thread={earlier['id']}")
    page.wait_for_function("document.getElementById('thread-title').textContent === 'Earlier'")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#prompt") == "for Earlier"

    # sent: the draft is gone (a reload shows an empty prompt), and the answer is there
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]", timeout=60_000)
    assert thread_id_of(page) == earlier["id"]
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.assistant")
    assert page.input_value("#prompt") == ""

    # the open thread deleted: what was typed for it goes on to the new thread shown instead
    page.fill("#prompt", "still wanted")
    page.click(f".thread-item[data-thread-id='{earlier['id']}'] .thread-delete-btn")
    page.click("#confirm-dialog button[value=ok]")
    page.wait_for_selector(f".thread-item[data-thread-id='{earlier['id']}']", state="detached")
    assert page.input_value("#prompt") == "still wanted"


def test_right_to_left_text_reads_right_to_left(trial_server, new_page):
    """Arabic or Hebrew lines align to the right, each block by its own first letter; a stray U+202E override in
    a title stays inside it (the tab's " · Jan" is not reversed)."""
    thread = api(trial_server, "POST", "/v1/threads", {"title": "שלום \u202eshout"})
    arabic = "مرحبا بالعالم هذا نص عربي"
    for role in ("user", "assistant"):
        api(trial_server, "POST", f"/v1/threads/{thread['id']}/messages",
            {"role": role, "content": f"Hello in English\n\n{arabic}\n\n- שלום עולם"})
    page = new_page()
    open_page(page, trial_server, f"#thread={thread['id']}")
    page.wait_for_selector("article.assistant")
    sides = page.evaluate("""() => [...document.querySelectorAll('article .message-body')].map(body => {
        const box = body.getBoundingClientRect();
        const side = (needle) => {
            const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
            for (let n = walker.nextNode(); n; n = walker.nextNode()) {
                const at = n.data.indexOf(needle);
                if (at < 0) continue;
                const range = document.createRange(); range.setStart(n, at); range.setEnd(n, at + needle.length);
                const r = range.getBoundingClientRect();
                return (r.left - box.left) < (box.right - r.right) ? 'left' : 'right';
            }
            return null;
        };
        return [side('Hello in English'), side('مرحبا'), side('שלום')];
    })""")
    assert sides == [["left", "right", "right"]] * 2, sides
    # the tab's title isolates the thread's (FSI … PDI), so its override never reaches " · Jan"
    assert page.evaluate("document.title") == "\u2068שלום \u202eshout\u2069 · Jan"
    assert page.evaluate("getComputedStyle(document.getElementById('thread-title')).direction") == "rtl"
    shot(page, "trial-rtl")


def test_the_sidebar_lists_every_thread(trial_server, new_page):
    """The sidebar read one page of /v1/threads (100): the 101st thread and older never showed, and could not be
    opened from the page. It reads every page now, as a thread's messages are."""
    oldest = api(trial_server, "POST", "/v1/threads", {"title": "The very first"})
    api(trial_server, "POST", f"/v1/threads/{oldest['id']}/messages", {"role": "user", "content": "kept"})
    for n in range(130):
        api(trial_server, "POST", "/v1/threads", {"title": f"Later {n}"})
    total = len(api(trial_server, "GET", "/v1/threads?limit=100")["data"])
    assert total == 100  # (one page: what the sidebar showed)
    page = new_page()
    open_page(page, trial_server)
    item = f".thread-item[data-thread-id='{oldest['id']}']"
    page.wait_for_selector(item)
    assert page.locator(".thread-item").count() >= 131
    page.click(f"{item} .thread-open")
    page.wait_for_function("document.getElementById('thread-title').textContent === 'The very first'")
    assert page.text_content("article.user .message-body") == "kept"


def test_a_title_that_shows_nothing_is_never_an_invisible_thread(trial_server, new_page):
    """A title of zero-width or bidi-control characters (set over the API, or typed in a rename) made a sidebar
    entry and a heading with nothing to read: the page shows such a thread as "New thread", and a rename to
    nothing visible keeps the title it had."""
    blank = api(trial_server, "POST", "/v1/threads", {"title": "\u200b\u200c\u200d\ufeff\u2066\u2069"})
    named = api(trial_server, "POST", "/v1/threads", {"title": "Named"})
    page = new_page()
    open_page(page, trial_server, f"#thread={blank['id']}")
    page.wait_for_function("document.getElementById('thread-title').textContent === 'New thread'")
    assert page.text_content(f".thread-item[data-thread-id='{blank['id']}'] .thread-open") == "New thread"

    item = f".thread-item[data-thread-id='{named['id']}']"
    page.click(f"{item} .thread-rename-btn")
    page.fill(f"{item} input.thread-rename", "\u200b\u200b \u202e")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{item} .thread-open")
    assert page.text_content(f"{item} .thread-open") == "Named"
    assert api(trial_server, "GET", f"/v1/threads/{named['id']}")["title"] == "Named"
