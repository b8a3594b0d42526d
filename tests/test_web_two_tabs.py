"""Two tabs of the chat page on one thread: the second sends while the first's answer streams.

The server holds a thread while a run writes to it (a new message is refused). The second tab must say so
plainly, keep its text in the prompt (nothing lost), and write no reply anywhere; the first tab's answer goes on
in its own place. Once that answer ends, the second tab shows it on reload. Waits are on the pages' own state,
bounded, never timed.
"""

from __future__ import annotations

import test_web_page
from test_web_page import assistant_text, messages_of, open_page, shot, thread_id_of, wait_until

held_server = test_web_page.held_server  # (the fixture: answers that run until stopped)


def test_a_second_tab_sending_while_the_first_streams_keeps_its_text(held_server, new_page):
    first = new_page()
    open_page(first, held_server)
    # the second tab: the same browser profile (its localStorage, where drafts are kept), as a real tab is
    second = first.context.new_page()
    errors = []
    second.on("pageerror", lambda exc: errors.append(str(exc)))
    second.set_default_timeout(30_000)

    first.fill("#prompt", "Once upon a time")
    first.keyboard.press("Enter")
    first.wait_for_function(
        "(document.querySelector('article.assistant .message-body')?.textContent.length ?? 0) > 10", timeout=60_000)
    thread_id = thread_id_of(first)

    open_page(second, held_server, f"#thread={thread_id}")
    second.wait_for_selector("article.message.user")
    assistants_before = second.locator("article.assistant").count()
    second.fill("#prompt", "And then the cat came")
    second.keyboard.press("Enter")
    second.wait_for_selector("#toast:not([hidden])")
    note = second.text_content("#toast")
    # says what holds the thread in the page's words (not the API's "…while a run run_… is active…")
    assert note.startswith("This thread is still answering elsewhere (another tab or app)."), note
    assert "run_" not in note and "kept" in note, note
    second.wait_for_selector("#send:not([hidden])")
    assert second.input_value("#prompt") == "And then the cat came"  # kept, to send once the thread is free
    assert second.locator("article.assistant").count() == assistants_before  # no reply written here
    assert second.locator("article.user").count() == 1  # nor the refused message shown as sent
    shot(second, "two-tabs-refused")

    # the first tab's answer went on in its own place; stopped, it is saved
    grown = len(assistant_text(first))
    first.wait_for_function("n => (document.querySelector('article.assistant .message-body')?.textContent.length"
                            " ?? 0) > n", arg=grown, timeout=60_000)
    first.keyboard.press("Escape")
    first.wait_for_selector("article.assistant[data-done=true]", timeout=60_000)
    assert first.locator("article.user").count() == 1
    wait_until(lambda: [m for m in messages_of(held_server, thread_id)
                        if m["role"] == "assistant" and m["status"] != "in_progress"], timeout=60)

    # the second tab shows the answer once reloaded, its typed text still there (kept as the thread's draft)
    second.reload()
    second.wait_for_selector("body[data-ready=true]")
    second.wait_for_selector("article.message.assistant")
    saved = [m for m in messages_of(held_server, thread_id) if m["role"] == "assistant"]
    assert " ".join(assistant_text(second).split()) == " ".join("".join(
        p["text"]["value"] for p in saved[-1]["content"] if p.get("type") == "text").split())
    assert second.input_value("#prompt") == "And then the cat came"
    assert errors == []
