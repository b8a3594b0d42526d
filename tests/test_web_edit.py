"""The chat page's edit-and-resend and regenerate, and a reply that streams under the user's selection, in a real
headless Chromium against a real server with stories260K (browser fixtures in conftest.py; helpers from
test_web_page). What is replaced must be gone from the thread as the API lists it and from the next run's prompt.
"""

from __future__ import annotations

import pytest

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread
from cut_off_helpers import LONG_N_CTX
from run_helpers import wait_for_run_sync
from test_web_page import MODEL_ID, api, call, messages_of, open_page, shot, start_answer, text_of, thread_id_of

DONE = "article.assistant[data-done=true]"


@pytest.fixture(scope="module")
def story_server(tmp_path_factory, stories_path):
    """stories260K whose stories end at their EOS (or at a 4096 context)."""
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("web-edit"), models=[str(stories_path)],
                          n_ctx=4096, n_parallel=2, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


@pytest.fixture(scope="module")
def endless_server(tmp_path_factory, stories_path):
    """stories260K answering with ``ignore_eos`` to a context of 20,000 tokens and more: a reply that runs until the
    test stops it, or 20,000 tokens long."""
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("web-endless"), models=[str(stories_path)],
                          n_ctx=max(LONG_N_CTX, 20_200), n_parallel=1, n_threads=1)
    with ServerThread(config) as srv:
        api(srv, "POST", "/v1/assistants/jan", {"parameters": {"ignore_eos": True}})
        yield srv


def send_and_wait(page, text: str, replies: int) -> None:
    """Type ``text``, press Enter and wait until the page shows ``replies`` finished replies."""
    page.fill("#prompt", text)
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelectorAll('{DONE}').length === {replies} && !document.body.classList"
                           ".contains('streaming')", timeout=120_000)


def wait_for_answer_to(page, user_text: str) -> None:
    """Wait until the page shows one user message, ``user_text``, answered by one finished reply."""
    page.wait_for_function(
        """(text) => { const users = document.querySelectorAll('article.user');
          return users.length === 1 && users[0].querySelector('.message-body').textContent === text
            && document.querySelectorAll('article.assistant').length === 1
            && document.querySelector('article.assistant[data-done=true]') !== null
            && !document.body.classList.contains('streaming'); }""", arg=user_text, timeout=120_000)


def prompt_tokens_of_last_run(server, thread_id: str) -> int:
    run = api(server, "GET", f"/v1/threads/{thread_id}/runs?limit=1")["data"][0]
    assert run["status"] in ("completed", "incomplete"), run  # (incomplete: cut at its max_tokens)
    return run["usage"]["prompt_tokens"]


def test_edit_and_resend_replaces_what_came_after(story_server, new_page):
    """Edit the first of two messages (keyboard only): Escape leaves it as it was; Enter sends it, and the thread
    then holds that message (same id, new text) and one new answer: the later messages are deleted, and the new run's
    prompt is the one a thread with only the edited message makes."""
    page = new_page()
    open_page(page, story_server)
    send_and_wait(page, "Once upon a time", 1)
    send_and_wait(page, "The dog ran to the park", 2)
    thread_id = thread_id_of(page)
    before = messages_of(story_server, thread_id)
    assert [m["role"] for m in before] == ["user", "assistant", "user", "assistant"]
    # one Regenerate (the last reply's), an Edit for each message of the user's
    assert page.locator(".regenerate:visible").count() == 1
    assert page.locator(".edit-message:visible").count() == 2

    edit = page.locator("article.user").first.locator(".edit-message")
    edit.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("textarea.message-edit")
    assert page.evaluate("document.activeElement.classList.contains('message-edit')")
    assert page.input_value("textarea.message-edit") == "Once upon a time"
    page.keyboard.type(" there was a cat")
    shot(page, "edit-01-editing")
    page.keyboard.press("Escape")  # cancels the edit: nothing sent, nothing changed, focus back on its Edit
    page.wait_for_selector("textarea.message-edit", state="detached")
    assert page.evaluate("document.activeElement.classList.contains('edit-message')")
    assert page.text_content("article.user .message-body") == "Once upon a time"
    assert [m["id"] for m in messages_of(story_server, thread_id)] == [m["id"] for m in before]

    page.keyboard.press("Enter")
    page.wait_for_selector("textarea.message-edit")
    page.keyboard.press("Control+a")
    page.keyboard.type("A cat sat")
    page.keyboard.press("Enter")
    wait_for_answer_to(page, "A cat sat")
    shot(page, "edit-02-resent")

    after = messages_of(story_server, thread_id)
    assert [m["role"] for m in after] == ["user", "assistant"]
    assert after[0]["id"] == before[0]["id"] and text_of(after[0]) == "A cat sat"
    assert after[1]["id"] not in {m["id"] for m in before}
    assert page.get_attribute("article.assistant", "data-message-id") == after[1]["id"]
    for gone in before[1:]:
        status, _ = call(story_server, "GET", f"/v1/threads/{thread_id}/messages/{gone['id']}?all=true")
        assert status == 404, gone
    # what was replaced is in no prompt: the run read the edited message alone, as a thread holding only it does
    thread = api(story_server, "GET", f"/v1/threads/{thread_id}")
    fresh = api(story_server, "POST", "/v1/threads", {"assistants": thread["assistants"],
                                                      "messages": [{"role": "user", "content": "A cat sat"}]})
    run = api(story_server, "POST", f"/v1/threads/{fresh['id']}/runs", {"model": MODEL_ID, "max_tokens": 2})
    wait_for_run_sync(lambda path: api(story_server, "GET", path), run)
    assert prompt_tokens_of_last_run(story_server, thread_id) == prompt_tokens_of_last_run(story_server, fresh["id"])

    # as stored: a reload shows the same two messages
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.text_content("article.user .message-body") == "A cat sat"
    assert [a.get_attribute("data-message-id") for a in page.locator("article.message").all()] == \
        [m["id"] for m in after]


def test_regenerate_answers_the_last_message_again(story_server, new_page):
    """Regenerate (keyboard): the last reply is deleted and the last message answered again in its place."""
    page = new_page()
    open_page(page, story_server)
    send_and_wait(page, "Once upon a time", 1)
    thread_id = thread_id_of(page)
    first = messages_of(story_server, thread_id)
    page.locator(".regenerate").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("(old) => { const reply = document.querySelector('article.assistant[data-done=true]');"
                           " return reply && reply.dataset.messageId && reply.dataset.messageId !== old"
                           " && !document.body.classList.contains('streaming'); }", arg=first[1]["id"],
                           timeout=120_000)
    after = messages_of(story_server, thread_id)
    assert [m["role"] for m in after] == ["user", "assistant"]
    assert after[0]["id"] == first[0]["id"] and after[1]["id"] != first[1]["id"]
    assert page.locator("article.message").count() == 2
    status, _ = call(story_server, "GET", f"/v1/threads/{thread_id}/messages/{first[1]['id']}?all=true")
    assert status == 404


def test_editing_a_thread_deleted_elsewhere_keeps_the_edit(story_server, new_page):
    """The thread being edited is deleted elsewhere (another tab, the API): sending the edit says so, leaves the
    dead thread, and keeps the edited text in the prompt to send in a new thread."""
    page = new_page()
    open_page(page, story_server)
    send_and_wait(page, "Once upon a time", 1)
    thread_id = thread_id_of(page)
    page.click("article.user .edit-message")
    page.fill("textarea.message-edit", "A cat sat on the mat")
    api(story_server, "DELETE", f"/v1/threads/{thread_id}")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('toast').textContent.includes('no longer exists')")
    page.wait_for_function("document.getElementById('thread-title').textContent === 'New thread'")
    assert page.input_value("#prompt") == "A cat sat on the mat"
    assert page.locator("article.message").count() == 0


def test_the_editor_fits_its_text_on_a_narrow_screen(story_server, new_page):
    """On a phone-sized screen the message editor grows with the lines typed into it (Shift+Enter), as the prompt
    does, rather than showing two lines and a scroll bar; its buttons stay on screen."""
    page = new_page(width=390, height=760)
    open_page(page, story_server)
    send_and_wait(page, "Once upon a time", 1)
    page.click("article.user .edit-message")
    for line in ["there was a cat", "who sat on a mat", "and looked at the long, long road ahead of it"]:
        page.keyboard.press("Shift+Enter")
        page.keyboard.type(line)
    assert page.evaluate("(() => { const box = document.querySelector('textarea.message-edit');"
                         " return box.scrollHeight <= box.clientHeight + 2; })()")
    for button in ["Send", "Cancel"]:
        box = page.locator(".message-editor button", has_text=button).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (button, box)
    shot(page, "edit-04-narrow-editor")


def test_an_edit_left_unsent_is_kept_across_threads_and_reloads(story_server, new_page):
    """An edit being typed is kept as the prompt's draft is: opening another thread sends nothing and changes nothing,
    and coming back (or reloading) shows the editor again with the text typed; Escape then forgets it."""
    page = new_page()
    open_page(page, story_server)
    send_and_wait(page, "Once upon a time", 1)
    first = thread_id_of(page)
    stored = messages_of(story_server, first)
    page.click("#new-thread")
    send_and_wait(page, "The dog ran", 1)
    second = thread_id_of(page)
    page.click(f".thread-item[data-thread-id='{first}'] .thread-open")
    page.wait_for_function("(text) => document.querySelector('article.user .message-body')?.textContent === text",
                           arg="Once upon a time")
    page.click("article.user .edit-message")
    page.fill("textarea.message-edit", "Not sent yet")
    page.click(f".thread-item[data-thread-id='{second}'] .thread-open")
    page.wait_for_function("(text) => document.querySelector('article.user .message-body')?.textContent === text",
                           arg="The dog ran")
    assert page.locator("textarea.message-edit").count() == 0  # (the other thread's edit is not shown here)
    assert [m["id"] for m in messages_of(story_server, first)] == [m["id"] for m in stored]
    assert text_of(messages_of(story_server, first)[0]) == "Once upon a time"

    page.click(f".thread-item[data-thread-id='{first}'] .thread-open")
    page.wait_for_selector("article.user textarea.message-edit")
    assert page.input_value("textarea.message-edit") == "Not sent yet"
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.user textarea.message-edit")
    assert page.input_value("textarea.message-edit") == "Not sent yet"
    page.focus("textarea.message-edit")
    page.keyboard.press("Escape")
    page.wait_for_selector("textarea.message-edit", state="detached")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.user .edit-message")
    assert page.locator("textarea.message-edit").count() == 0
    assert page.text_content("article.user .message-body") == "Once upon a time"


def test_a_selection_in_a_streaming_reply_survives_its_frames(endless_server, new_page):
    """Text selected in a reply while it streams stays selected as the reply grows (the page patches the reply in
    place rather than rendering it anew each frame); Edit and Regenerate are not offered meanwhile."""
    page = new_page()
    open_page(page, endless_server)
    start_answer(page)
    assert page.locator(".edit-message:visible, .regenerate:visible").count() == 0
    chosen = page.evaluate("""() => {
      const body = document.querySelector('article.assistant .message-body');
      const text = document.createTreeWalker(body, NodeFilter.SHOW_TEXT).nextNode();
      const range = document.createRange();
      range.setStart(text, 0);
      range.setEnd(text, Math.min(8, text.data.length));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      return getSelection().toString();
    }""")
    assert chosen
    grown = int(page.get_attribute("article.assistant", "data-chars")) + 300
    page.wait_for_function(f"+document.querySelector('article.assistant').dataset.chars > {grown}", timeout=120_000)
    assert page.evaluate("getSelection().toString()") == chosen
    assert page.evaluate("document.querySelector('article.assistant .message-body')"
                         ".contains(getSelection().anchorNode)")
    page.keyboard.press("Escape")  # stops the answer (a click on Stop would end the selection itself)
    page.wait_for_selector(DONE, timeout=120_000)
    assert page.evaluate("getSelection().toString()") == chosen  # the saved text shown in place too


LONG_REPLY_TOKENS = 20_000
LONG_REPLY_STAGES = 5


def long_reply_token(i: int) -> str:
    """The ``i``-th token of the long reply (LONG_REPLY_JS makes the same): words, with a line break every 40 and
    a paragraph every 200, some of them Markdown, so the page renders lines, paragraphs and emphasis as it grows."""
    if i % 200 == 199:
        return "\n\n"
    if i % 40 == 39:
        return "\n"
    return f" **w{i}**" if i % 97 == 0 else f" w{i}"


#: The page's fetch of a run answered by a stream of text deltas (the events the server sends), in stages each let
#: out by the test (``window.__stage``), a hundred deltas a task: the page's own streaming path against a reply of
#: any length or shape, without a model (stories260K slows as its context fills: on a busy 2-core machine it takes
#: minutes for 20,000 tokens). Formatted with ``stages`` and ``token``: JavaScript for the number of stages and the
#: function (stage, i) => the i-th delta of that stage, or null after its last.
FAKE_RUN_JS = """(() => {
  const STAGES = %(stages)s;
  const token = %(token)s;
  window.__stage = 0;
  const real = window.fetch;
  window.fetch = function (url, options = {}) {
    const match = String(url).match(/\\/v1\\/threads\\/([^/]+)\\/runs$/);
    if (!match || options.method !== "POST") return real.call(this, url, options);
    const thread = decodeURIComponent(match[1]);
    const encoder = new TextEncoder();
    const event = (name, data) => `event: ${name}\\ndata: ${JSON.stringify(data)}\\n\\n`;
    const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
    let text = "";
    const body = new ReadableStream({
      async start(controller) {
        controller.enqueue(encoder.encode(event("thread.run.created", { id: "run_fake", thread_id: thread })
          + event("thread.message.created", { id: "msg_fake", thread_id: thread })));
        for (let stage = 1; stage <= STAGES; stage++) {
          while (window.__stage < stage) await new Promise((resolve) => setTimeout(resolve, 20));
          for (let i = 0, value = token(stage, 0); value !== null;) {
            let chunk = "";
            for (let n = 0; n < 100 && value !== null; n++, value = token(stage, ++i)) {
              text += value;
              chunk += event("thread.message.delta", { id: "msg_fake", delta: { content: [
                { index: 0, type: "text", text: { value } }] } });
            }
            controller.enqueue(encoder.encode(chunk));
            await tick();
          }
        }
        const message = { id: "msg_fake", object: "thread.message", thread_id: thread, role: "assistant",
          status: "completed", content: [{ type: "text", text: { value: text, annotations: [] } }] };
        controller.enqueue(encoder.encode(event("thread.message.completed", message)
          + event("thread.run.completed", { id: "run_fake" }) + event("done", "[DONE]")));
        controller.close();
      },
    });
    return Promise.resolve(new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } }));
  };
})();"""

#: LONG_REPLY_TOKENS deltas in LONG_REPLY_STAGES stages (long_reply_token's, in JavaScript).
LONG_REPLY_JS = FAKE_RUN_JS % {"stages": LONG_REPLY_STAGES, "token": """(stage, i) => {
    const per = %d / %d, at = (stage - 1) * per + i;
    if (i >= per) return null;
    return at %% 200 === 199 ? "\\n\\n" : at %% 40 === 39 ? "\\n" : at %% 97 === 0 ? ` **w${at}**` : ` w${at}`;
  }""" % (LONG_REPLY_TOKENS, LONG_REPLY_STAGES)}


def test_a_20000_token_reply_streams_without_stalling_the_tab(story_server, new_page):
    """A reply of 20,000 tokens streams into the page, patched in place frame by frame: at each fifth of it the page
    shows all that came so far and answers the keyboard (a key typed shows in the prompt), a selection made in its
    first fifth stays while the second streams in, and the whole text shows at the end."""
    page = new_page()
    page.add_init_script(LONG_REPLY_JS)
    open_page(page, story_server)
    page.fill("#prompt", "Tell me a long story")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant")
    sent, chosen = 0, None
    for stage in range(1, LONG_REPLY_STAGES + 1):
        page.evaluate(f"window.__stage = {stage}")
        upto = stage * LONG_REPLY_TOKENS // LONG_REPLY_STAGES
        # (rendered Markdown: the raw text's length is the view's data-chars)
        chars = len("".join(long_reply_token(i) for i in range(upto)))
        page.wait_for_function(f"+(document.querySelector('article.assistant')?.dataset.chars ?? 0) >= {chars}",
                               timeout=120_000)
        if stage == 2:  # the selection made in the first fifth stayed while the second streamed in
            assert page.evaluate("getSelection().toString()") == chosen
        page.click("#prompt")
        page.keyboard.press("End")
        page.keyboard.type("x")
        sent += 1
        page.wait_for_function(f"document.getElementById('prompt').value === 'x'.repeat({sent})")
        if stage == 1:
            chosen = page.evaluate("""() => {
              const body = document.querySelector('article.assistant .message-body');
              const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
              let text = walker.nextNode();
              while (text.data.length < 12) text = walker.nextNode();
              const range = document.createRange();
              range.setStart(text, 1);
              range.setEnd(text, 10);
              getSelection().removeAllRanges();
              getSelection().addRange(range);
              return getSelection().toString();
            }""")
            assert len(chosen) == 9, chosen
    page.wait_for_selector(DONE, timeout=120_000)
    whole = "".join(long_reply_token(i) for i in range(LONG_REPLY_TOKENS))
    assert int(page.get_attribute("article.assistant", "data-chars")) == len(whole)
    body = page.evaluate("document.querySelector('article.assistant .message-body').textContent")
    assert "w19998" in body and "**" not in body  # rendered: the emphasis is markup, not stars
    shot(page, "edit-03-long-reply")


def test_a_code_blocks_copy_copies_all_of_it_after_it_grew(story_server, new_page):
    """A code block streams in: its Copy button, made when the block first showed and kept as the block is patched
    in place, copies the code as shown when clicked (all of it), not the first lines it was made with."""
    page = new_page()
    page.add_init_script(FAKE_RUN_JS % {"stages": 2, "token": """(stage, i) => {
        const deltas = stage === 1 ? ["Here:\\n\\n", "```python\\n", "print(1)\\n"] : ["print(2)\\n", "```\\n", "Done."];
        return i < deltas.length ? deltas[i] : null;
      }"""})
    # what the button copies (the page's clipboard write, taken here: no permission needed)
    page.add_init_script("""window.__copied = [];
      Object.defineProperty(navigator, "clipboard", { value: { writeText: async (text) => { window.__copied.push(text); } } });""")
    open_page(page, story_server)
    page.fill("#prompt", "Show me code")
    page.keyboard.press("Enter")
    page.evaluate("window.__stage = 1")
    page.wait_for_function("document.querySelector('article.assistant pre code')?.textContent.startsWith('print(1)')")
    button = page.evaluate_handle("document.querySelector('article.assistant .copy-code')")
    page.evaluate("window.__stage = 2")
    page.wait_for_selector(DONE)
    assert page.text_content("article.assistant pre code") == "print(1)\nprint(2)"
    assert page.evaluate("(button) => button.isConnected", button)  # the same button, patched around
    page.click("article.assistant .copy-code")
    page.wait_for_function("window.__copied.length === 1")
    assert page.evaluate("window.__copied[0]") == "print(1)\nprint(2)"


def test_the_title_follows_an_edit_of_the_first_message_unless_renamed(story_server, new_page):
    """A thread is titled after its first message; an edit of that message (edit and resend) titles it after the
    edit, in the page's header, its list and the API alike (it kept the old words, of a message no longer there).
    A title the user gave it by hand is theirs: an edit leaves it, as does an edit of a later message."""
    page = new_page()
    open_page(page, story_server)
    # short replies: the test is about titles, not whole stories on a busy machine
    page.click("#toggle-settings")
    page.fill("#set-max-tokens", "8")
    page.click("#save-settings")
    page.wait_for_function("document.getElementById('settings-status').textContent.startsWith('Saved')")
    send_and_wait(page, "Once upon a time", 1)
    thread_id = thread_id_of(page)
    page.wait_for_function("document.getElementById('thread-title').textContent === 'Once upon a time'",
                           timeout=120_000)

    def resend(index: int, text: str) -> None:
        """Edit the user's message ``index`` to ``text`` and send it: wait until it is answered (the last shown)."""
        page.locator("article.user").nth(index).locator(".edit-message").click()
        page.wait_for_selector("textarea.message-edit")
        page.fill("textarea.message-edit", text)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "([text, index]) => { const shown = document.querySelectorAll('article.message');"
            " const users = document.querySelectorAll('article.user');"
            " return shown.length === 2 * (index + 1) && users[index].querySelector('.message-body').textContent === text"
            " && shown[shown.length - 1].matches('article.assistant[data-done=true]')"
            " && !document.body.classList.contains('streaming'); }", arg=[text, index], timeout=120_000)

    def shown_titles() -> tuple[str, str, str]:
        return (api(story_server, "GET", f"/v1/threads/{thread_id}")["title"], page.text_content("#thread-title"),
                page.text_content(f'[data-thread-id="{thread_id}"] .thread-open'))

    resend(0, "A cat sat")
    page.wait_for_function("document.getElementById('thread-title').textContent === 'A cat sat'", timeout=120_000)
    assert shown_titles() == ("A cat sat",) * 3
    send_and_wait(page, "The dog ran to the park", 2)
    resend(1, "The dog slept")  # (a later message: the title is the first's still)
    assert shown_titles() == ("A cat sat",) * 3

    api(story_server, "PATCH", f"/v1/threads/{thread_id}", {"title": "My cat story"})  # renamed by hand
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    resend(0, "A big cat sat")
    assert shown_titles() == ("My cat story",) * 3


def test_the_api_retitles_a_thread_when_its_first_message_is_edited(story_server):
    """The rule is the thread service's, whatever client edits (``PATCH`` of a message, as the page does): a title
    jan gave (of the first user message) follows an edit of that message; one the user set stays; an edit of any
    other message, or of metadata alone, changes no title."""
    thread = api(story_server, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}]})
    tid = thread["id"]
    run = api(story_server, "POST", f"/v1/threads/{tid}/runs", {"model": MODEL_ID, "max_tokens": 2})
    wait_for_run_sync(lambda path: api(story_server, "GET", path), run)
    first, reply = messages_of(story_server, tid)[:2]

    def title() -> str:
        return api(story_server, "GET", f"/v1/threads/{tid}")["title"]

    def edit(message_id: str, body: dict) -> None:
        api(story_server, "POST", f"/v1/threads/{tid}/messages/{message_id}", body)

    assert title() == "Once upon a time"
    edit(reply["id"], {"content": "Something else entirely"})  # (not the message it is titled after)
    edit(first["id"], {"metadata": {"note": "x"}})  # (no new words)
    assert title() == "Once upon a time"
    edit(first["id"], {"content": "  A   cat sat on the mat and looked at the very long garden wall  "})
    assert title() == "A cat sat on the mat and looked at the…"  # (as a first exchange titles: title_from)
    api(story_server, "POST", f"/v1/threads/{tid}", {"title": "Mine"})
    edit(first["id"], {"content": "A dog"})
    assert title() == "Mine"


def test_the_api_retitles_a_thread_when_its_first_message_is_deleted(story_server):
    """The title follows its first user message's going as its edit: after the next user message (a thread titled
    by hand keeps its title; one left with no user message keeps the last)."""
    thread = api(story_server, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"},
                                                                   {"role": "assistant", "content": "a cat"},
                                                                   {"role": "user", "content": "The dog ran"}]})
    tid = thread["id"]
    run = api(story_server, "POST", f"/v1/threads/{tid}/runs", {"model": MODEL_ID, "max_tokens": 2})
    wait_for_run_sync(lambda path: api(story_server, "GET", path), run)
    first, reply, second = messages_of(story_server, tid)[:3]

    def title() -> str:
        return api(story_server, "GET", f"/v1/threads/{tid}")["title"]

    assert title() == "Once upon a time"
    api(story_server, "DELETE", f"/v1/threads/{tid}/messages/{reply['id']}")
    assert title() == "Once upon a time"
    api(story_server, "DELETE", f"/v1/threads/{tid}/messages/{first['id']}")
    assert title() == "The dog ran"
    api(story_server, "DELETE", f"/v1/threads/{tid}/messages/{second['id']}")
    assert title() == "The dog ran"
