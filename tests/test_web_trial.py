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

