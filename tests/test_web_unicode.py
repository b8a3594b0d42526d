"""The chat page with text beyond ASCII: right-to-left lines, graphemes a stream cuts, marks inside words.

- Each line of a message (a user's, a reply's paragraph, item, quote, heading) runs in its own script's direction:
  an Arabic or Hebrew line aligns right beside English ones (read from the laid-out page, not from the code).
- A reply streamed with a chunk boundary inside every grapheme (an emoji ZWJ sequence, a flag, a skin tone, a
  combining mark, a surrogate pair) ends showing each grapheme whole, inside one text node, as a render of the
  whole text does.
- An underscore after a combining mark is inside its word (CommonMark's rule for ``_``): markdown-it-py, a
  CommonMark renderer, is the reference.
"""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from test_web_page import api, open_page, shot
import test_web_stream_render
from test_web_stream_render import STREAM_STUB

chat_server = test_web_stream_render.chat_server  # (the fixture: a server with a model to send to)

#: each line's side: "left" (its start is the block's left edge), "right", or "middle"
LINE_SIDES = """(selector) => {
  const sides = [];
  for (const body of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const block = node.parentElement.closest('p, li, blockquote, h3, h4, h5, h6, .message-body');
      const box = block.getBoundingClientRect();
      const style = getComputedStyle(block);
      const left = box.left + parseFloat(style.paddingLeft) + parseFloat(style.borderLeftWidth);
      const right = box.right - parseFloat(style.paddingRight) - parseFloat(style.borderRightWidth);
      let at = 0;
      for (const line of node.data.split('\\n')) {
        if (line.trim()) {
          const range = document.createRange();
          range.setStart(node, at);
          range.setEnd(node, at + line.length);
          const r = range.getBoundingClientRect();
          sides.push([line.trim(), Math.abs(r.left - left) < 3 ? 'left' : Math.abs(r.right - right) < 3 ? 'right' : 'middle']);
        }
        at += line.length + 1;
      }
    }
  }
  return sides;
}"""

USER_TEXT = "Hello there\nمرحبا بكم\nשלום לכולם\nand English again"
REPLY_TEXT = ("First line in English\nسطر عربي ثان\n\nשורה בעברית\nthen English\n\n- English item\n- عنصر عربي\n\n"
              "> ציטוט בעברית\n> and English\n\n## كلمة عنوان\n")


def _side(line: str) -> str:
    # (a line's first strong character: Hebrew and Arabic are right to left)
    for ch in line:
        if "\u0590" <= ch <= "\u08ff":
            return "right"
        if ch.isalpha():
            return "left"
    return "left"


def test_right_to_left_lines_align_right_beside_english_ones(chat_server, new_page):
    thread = api(chat_server, "POST", "/v1/threads", {"title": "RTL"})
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": USER_TEXT})
    api(chat_server, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "assistant", "content": REPLY_TEXT})
    page = new_page()
    open_page(page, chat_server, f"#thread={thread['id']}")
    page.wait_for_selector("article.assistant .message-body li")
    sides = page.evaluate(LINE_SIDES, "article.message .message-body")
    expected = [[line, _side(line)] for line in [*USER_TEXT.split("\n"), "First line in English", "سطر عربي ثان",
                                                  "שורה בעברית", "then English", "English item", "عنصر عربي",
                                                  "ציטוט בעברית", "and English", "كلمة عنوان"]]
    assert sides == expected
    shot(page, "rtl-lines")


#: graphemes of more than one UTF-16 unit: a ZWJ family, a flag, a skin tone, combining marks, a ZWJ profession,
#: Hebrew with a vowel point, an astral CJK character
GRAPHEMES = "Family 👨‍👩‍👧 flag 🇫🇷 tone 👍🏽 e\u0301te\u0301 נָ 𠀋"
GRAPHEME_REPLY = f"{GRAPHEMES}\n\n- **item 👩🏾‍🔬** and `code 🧑‍💻`\n\n> quote 🏳️‍🌈 a\u0308\n\n```\ncode 👨‍👩‍👧\n```\n"


def test_a_stream_cut_inside_graphemes_shows_each_grapheme_whole(chat_server, new_page):
    page = new_page()
    page.add_init_script(STREAM_STUB)
    open_page(page, chat_server)
    # one chunk per UTF-16 unit (made in the page: a lone surrogate is no Python string to send it): every
    # boundary inside every grapheme, a surrogate pair's included, is a chunk's end
    page.evaluate("(text) => { window.__chunks = [...Array(text.length).keys()].map((i) => text[i]); }", GRAPHEME_REPLY)
    page.fill("#prompt", "Emoji, please")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]", timeout=120_000)
    result = page.evaluate("""async (text) => {
        const { renderMarkdown } = await import('/static/markdown.js');
        const body = document.querySelector('article.assistant .message-body');
        const whole = document.createElement('div');
        whole.append(renderMarkdown(text));
        // every text node starts where a grapheme starts (in the text of its own block)
        const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
        const cut = [];
        for (const block of body.querySelectorAll('p, li, blockquote, code')) {
            const starts = new Set([...segmenter.segment(block.textContent)].map((s) => s.index));
            const walker = document.createTreeWalker(block, NodeFilter.SHOW_TEXT);
            let at = 0;
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                if (node.data && !starts.has(at)) cut.push([block.tagName, at, node.data]);
                at += node.data.length;
            }
        }
        return { same: whole.innerHTML === body.innerHTML, cut,
                 graphemes: [...segmenter.segment(body.querySelector('p').textContent)].map((s) => s.segment) };
    }""", GRAPHEME_REPLY)
    assert result["same"]
    assert result["cut"] == []
    for grapheme in ["👨‍👩‍👧", "🇫🇷", "👍🏽", "e\u0301", "נָ", "𠀋"]:
        assert grapheme in result["graphemes"], grapheme
    shot(page, "stream-graphemes")


#: ``_`` beside combining marks, letters of other scripts, emoji (punctuation to CommonMark: a symbol), digits
UNDERSCORES = ["cafe\u0301_bar_", "_cafe\u0301_ x", "a\u0301_b_ c", "x_\u0301y_", "_a_\u0301 b", "नि_a_ b",
               "שלום_x_", "مرحبا_س_", "😀_a_", "_a_😀", "snake_case_name", "_under_ word", "x __bold__\u0301 y",
               "2_3_4", "e\u0301 _word_ e\u0301", "**a\u0301**b"]


@pytest.mark.parametrize("text", UNDERSCORES)
def test_emphasis_beside_combining_marks_is_as_commonmark_renders_it(chat_server, new_page, text):
    reference = MarkdownIt("commonmark").renderInline(text)
    page = new_page()
    open_page(page, chat_server)
    ours = page.evaluate("""async (text) => {
        const { renderInline } = await import('/static/markdown.js');
        const div = document.createElement('div');
        div.append(...renderInline(text));
        return div.innerHTML;
    }""", text)
    assert ours == reference
