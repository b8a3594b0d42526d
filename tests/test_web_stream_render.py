"""The chat page renders a long streaming reply with work per chunk that follows the chunk, not the reply.

A reply is rendered again on every frame while it streams. Rendered whole each time, the 10,000th line cost as
much as all the lines before it (quadratic over the stream: the page stalled as a long reply grew). The page now
renders from the last settled block on (markdown.js ``renderMarkdownTail``). Work is counted, never timed: the
calls to ``document.createElement`` and ``createTextNode`` between one chunk and the frame that shows it, and the
characters of text those text nodes were made with or written into text (a long code block is few nodes: made
whole each frame, its text was the work that grew with the reply).

The run's stream is the page's own ``fetch`` answered in the page (an init script): each chunk is sent only once
the page shows the one before, so every chunk gets its own frame however busy the machine.
"""

from __future__ import annotations

import pytest

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread
from test_web_page import api, open_page, shot


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory, stories_path):
    """A server with stories260K: the page needs a model to send; the runs' streams are the stub's."""
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("web-stream"), models=[str(stories_path)],
                          n_ctx=512, n_parallel=1, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


#: The run's stream, made in the page: ``window.__chunks`` (set by the test) are sent one per painted frame as
#: thread.message.delta events; ``window.__work`` gets the DOM nodes made for each.
STREAM_STUB = """(() => {
  window.__made = 0;
  window.__written = 0;
  window.__work = [];
  window.__writes = [];
  const count = (text) => { window.__written += typeof text === 'string' ? text.length : 0; };
  for (const name of ['createElement', 'createTextNode']) {
    const real = Document.prototype[name];
    Document.prototype[name] = function (...args) {
      window.__made++;
      if (name === 'createTextNode') count(args[0]);
      return real.apply(this, args);
    };
  }
  for (const name of ['appendData', 'insertData', 'replaceData']) {
    const real = CharacterData.prototype[name];
    CharacterData.prototype[name] = function (...args) { count(args[args.length - 1]); return real.apply(this, args); };
  }
  for (const [proto, name] of [[CharacterData.prototype, 'data'], [Node.prototype, 'textContent'],
                               [Node.prototype, 'nodeValue']]) {
    const real = Object.getOwnPropertyDescriptor(proto, name);
    Object.defineProperty(proto, name, { ...real, set(text) { count(text); real.set.call(this, text); } });
  }
  const realFetch = window.fetch;
  window.fetch = function (input, init) {
    const url = String(input?.url ?? input);
    if (!window.__chunks || init?.method !== 'POST' || !/\\/runs$/.test(url)) return realFetch.call(this, input, init);
    const chunks = window.__chunks;
    const encoder = new TextEncoder();
    const event = (name, data) => encoder.encode(`event: ${name}\\ndata: ${JSON.stringify(data)}\\n\\n`);
    const shown = () => Number(document.querySelector('article.assistant:last-of-type')?.dataset.chars ?? -1);
    let k = -1, sent = 0, before = 0, written = 0;
    const painted = () => new Promise((resolve) => {
      const check = () => (shown() >= sent ? resolve() : requestAnimationFrame(check));
      check();
    });
    const body = new ReadableStream({
      async pull(controller) {
        if (k === -1) {
          controller.enqueue(event('thread.run.created', { id: 'run_stub', object: 'thread.run' }));
          controller.enqueue(event('thread.message.created', { id: 'msg_stub', object: 'thread.message' }));
          k = 0;
          return;
        }
        if (k > 0) {
          await painted();
          window.__work.push(window.__made - before);
          window.__writes.push(window.__written - written);
        }
        if (k === chunks.length) {
          controller.enqueue(event('thread.message.completed', { id: 'msg_stub', object: 'thread.message',
            role: 'assistant', status: 'completed', content: [{ type: 'text', text: { value: chunks.join(''),
            annotations: [] } }] }));
          controller.enqueue(encoder.encode('event: done\\ndata: [DONE]\\n\\n'));
          controller.close();
          return;
        }
        before = window.__made;
        written = window.__written;
        sent += chunks[k].length;
        controller.enqueue(event('thread.message.delta', { id: 'msg_stub', object: 'thread.message.delta',
          delta: { content: [{ index: 0, type: 'text', text: { value: chunks[k] } }] } }));
        k++;
      },
    });
    return Promise.resolve(new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }));
  };
})();"""

LINES_PER_CHUNK = 40
CHUNKS = 250  # 10,000 lines in all


def _chunk(k: int, shape: str) -> str:
    """``LINES_PER_CHUNK`` lines of one block shape, ending with a blank line."""
    n = LINES_PER_CHUNK - 1
    if shape == "paragraphs":
        body = [f"Paragraph {k} line {i} with *some* `code`" for i in range(n)]
    elif shape == "lists":
        body = [f"- item {k}.{i} **bold**" if i % 4 else f"{i}. step {k}" for i in range(n)]
    elif shape == "one list":  # one list of 10,000 items: it settles item by item
        body = [f"- item {k}.{i} **bold**" for i in range(n + 1)]
        return "\n".join(body) + "\n"
    elif shape == "one paragraph":  # 10,000 lines with no blank line: it settles line by line
        return "".join(f"line {k}.{i} with *some* `code`\n" for i in range(n + 1))
    elif shape == "quotes":
        body = [f"> quoted {k}.{i}" for i in range(n)]
    elif shape == "one quote":  # one block quote of 10,000 lines
        return "".join(f"> quoted {k}.{i} *em*\n" + (">\n" if i % 8 == 7 else "") for i in range(n + 1))
    elif shape == "one nested list":  # one item whose nested list (itself nested) holds 10,000 items
        head = "- the one item\n" if k == 0 else ""
        return head + "".join(f"  - sub {k}.{i} **bold**\n" if i % 4 else f"  - sub {k}.{i}\n    - deeper {k}.{i}\n"
                              for i in range(n + 1))
    elif shape == "one code block":  # one fence of 10,000 lines, closed by the last chunk
        head = "```python\n" if k == 0 else ""
        tail = "```\n" if k == CHUNKS - 1 else ""
        return head + "".join(f"print({k}, {i})\n" for i in range(n + 1)) + tail
    else:  # fenced code blocks
        body = ["```python"] + [f"print({k}, {i})" for i in range(n - 2)] + ["```"]
    return "\n".join(body) + "\n\n"


@pytest.mark.parametrize("shape", ["paragraphs", "lists", "one list", "one paragraph", "quotes", "code", "one quote",
                                   "one nested list", "one code block"])
def test_a_10000_line_reply_streams_with_work_per_chunk_bounded(chat_server, new_page, shape):
    chunks = [_chunk(k, shape) for k in range(CHUNKS)]
    page = new_page()
    page.add_init_script(STREAM_STUB)
    open_page(page, chat_server)
    page.evaluate("(chunks) => { window.__chunks = chunks; }", chunks)
    page.fill("#prompt", "A very long answer, please")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]", timeout=180_000)
    work, writes = page.evaluate("[window.__work, window.__writes]")
    assert len(work) == CHUNKS
    # a chunk's frame makes the nodes of the last block or two, whatever came before: the 250th chunk no more
    # than the first few (rendered whole, the k-th chunk made k chunks' nodes)
    assert max(work) <= 2 * max(work[:3]), (work[:5], work[-5:])
    # and writes as much text: a code block's text made whole each frame wrote k chunks' characters
    assert max(writes) <= 2 * max(writes[:3]), (writes[:5], writes[-5:])
    # and what it shows is the whole reply, rendered as a render of the whole text would be
    same = page.evaluate("""async (text) => {
        const { renderMarkdown } = await import('/static/markdown.js');
        const whole = document.createElement('div');
        whole.append(renderMarkdown(text));
        return whole.innerHTML === document.querySelector('article.assistant .message-body').innerHTML;
    }""", "".join(chunks))
    assert same
    shot(page, f"stream-long-{shape}")


DOCUMENTS = {
    "paragraphs": "One line\nand the next\n\nA second *paragraph*\n\n\nThird after two blanks\n",
    "list across blanks": "- one\n- two\n\n- three after a blank\n\n  indented more of three\n\nnot a list\n- again\n",
    "ordered then bullets": "1. first\n2. second\n\n- other kind\n\n3) third\n",
    "fences": "Before\n\n```js\nlet a = 1;\n\n\nlet b = 2;\n```\n\nafter\n\n~~~\n```\nnot closed by backticks\n~~~\n",
    "headings and rules": "# Title\ntext under\n\n---\n\n## Sub ##\n***\n\nend\n",
    "quotes": "> quoted\n> more\n\n> another\n\n>> nested\n\nplain\n",
    "crlf": "Line one\r\nline two\r\n\r\n- item\r\n\r\n- item two\r\n\r\n```\r\ncode\r\n```\r\n\r\ndone\r\n",
    "lazy list": "- item\ncontinued lazily\n\nnext para\n# heading right after\n",
    "one long list": "".join(f"- item {i} *em*\n" for i in range(12)) + "after\n",
    "ordered list from 3": "3. three\n4. four\n   more of four\n5. five\n\n6. six after a blank\n\nend\n",
    "list items and rules": "- a\n- - -\n- b\n * off by one\n- c\n  - nested\n  - nested two\n- d\n* other kind\n",
    "one long paragraph": "".join(f"line {i} *em* `c`\n" for i in range(10)) + "- then a list\n- two\n\nlast\nlines\n",
    "paragraph into blocks": "a\nb\nc\n# head\nd\ne\n```\ncode\n```\nf\ng\n> q\nh\n",
    "lists after lists": "- a\n- b\n1. one\n2. two\n\n- c\n- d\n",
    "one long fence": "text\n```py\n" + "".join(f"line {i}\n\n" for i in range(6)) + "```\nafter\n~~~\na\nb\nc\n~~~~\n",
    "fences back to back": "```\na\nb\nc\n```\n```js\nd\ne\nf\n```\n\n  ```\n  g\n h\ni\n  ```\n- x\n",
    "unclosed fence": "- a\n\n````\n```\nb\nc\n\n\nd\n",
    "one long quote": "> a *b*\n> c\n>\n> # head\n> - x\n> - y\n>   - z\n> ```\n> code\n> more\n> ```\nlazy\n> > deeper\n> > on\n\nout\n",
    "quote of paragraphs": "".join(f"> line {i}\n" + (">\n" if i % 3 == 2 else "") for i in range(9)) + "after\n",
    "one nested item": "- top\n" + "".join(f"  - sub {i} **b**\n    - deeper {i}\n" for i in range(5))
                       + "  text in top\n\n  para in top\n  ```\n  code\n  in item\n  ```\n  > quote\n  > in item\n- next\n",
    "ordered nested": "1. one\n   1. a\n   2. b\n      - c\n      - d\n\n      e\n2. two\n   > q\n   > r\n",
    "item first text": "-\n  later text\n  more\n- b\n  lazy\nlazier\n  - c\n",
}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_rendering_the_tail_equals_rendering_the_whole(chat_server, new_page, name):
    """Grown one character at a time, the tail render kept beside its settled blocks is the whole render (the
    last line, cut off mid-way, may turn into another block: it never settles what came before it)."""
    page = new_page()
    open_page(page, chat_server)
    wrong = page.evaluate("""async (text) => {
        const { renderMarkdown, renderMarkdownTail, applyMarkdownTail } = await import('/static/markdown.js');
        const target = document.createElement('div');
        const memo = {};
        const wrong = [];
        // (the page patches in place; replacing what follows ``from`` is the same in the end)
        const patch = (parent, source, from) => {
            while (from) { const after = from.nextSibling; from.remove(); from = after; }
            parent.append(...source.childNodes);
        };
        for (let n = 0; n <= text.length; n++) {
            applyMarkdownTail(target, text.slice(0, n), memo, patch);
            const whole = document.createElement('div');
            whole.append(renderMarkdown(text.slice(0, n)));
            if (whole.innerHTML !== target.innerHTML) wrong.push([n, whole.innerHTML, target.innerHTML]);
        }
        // a text that is no growth of the last (an edit, a reply read back) starts over
        const { keep } = renderMarkdownTail('Something else', memo);
        return { wrong: wrong.slice(0, 3), settled: memo.chars, keepAfterEdit: keep };
    }""", DOCUMENTS[name])
    assert wrong["wrong"] == []
    assert wrong["keepAfterEdit"] == 0
    assert wrong["settled"] == 0  # ('Something else' has no settled block)


def test_a_long_reply_read_back_is_rendered_whole(chat_server, new_page):
    """A saved reply (no stream) shows as the whole render: the tail render starts from nothing for a new view."""
    thread = api(chat_server, "POST", "/v1/threads", {"title": "Saved long reply"})
    text = "".join(_chunk(k, "lists") for k in range(5))
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "go"})
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "assistant", "content": text})
    page = new_page()
    open_page(page, chat_server, f"#thread={thread['id']}")
    page.wait_for_selector("article.assistant")
    assert page.evaluate("""async (text) => {
        const { renderMarkdown } = await import('/static/markdown.js');
        const whole = document.createElement('div');
        whole.append(renderMarkdown(text));
        return whole.innerHTML === document.querySelector('article.assistant .message-body').innerHTML;
    }""", text)
