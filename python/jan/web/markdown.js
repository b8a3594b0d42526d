// A small, safe Markdown renderer for chat messages.
//
// It never produces HTML strings: every piece of the input ends up in a DOM
// node through createElement/textContent, so model output can't inject markup
// or script. Links are kept only for http(s) URLs; anything else
// (javascript:, data:, ...) stays plain text.
//
// Supported: fenced code blocks (``` or ~~~, with a language and a copy
// button; an unclosed fence runs to the end, which suits streaming),
// headings, bullet and numbered lists (nested by indentation), block quotes,
// horizontal rules, paragraphs (single newlines kept as line breaks), inline
// code, **bold**, *italic*, ~~strikethrough~~, [links](https://...) and bare
// http(s) URLs.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const HR = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/;

// Blocks of text take their direction from their own first strong character (dir=auto): an Arabic or Hebrew
// paragraph reads right to left beside English ones, and a stray override character (U+202E) stays inside its block.
const TEXT_BLOCKS = new Set(["p", "li", "h3", "h4", "h5", "h6", "blockquote"]);

/** Element with optional class and children (strings become text nodes). */
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (TEXT_BLOCKS.has(tag)) node.dir = "auto";
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** An http(s) URL as a normalized string, or null for any other scheme. */
export function safeUrl(raw) {
  const text = String(raw || "").trim();
  if (!/^https?:\/\//i.test(text)) return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, children) {
  const a = el("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  a.append(...children);
  return a;
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection fallback
    }
  }
  const area = el("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

function codeBlock(code, lang) {
  const wrap = el("div", "code-block");
  const head = el("div", "code-head");
  head.append(el("span", "code-lang", lang || "code"));
  const button = el("button", "copy-code", "Copy");
  button.type = "button";
  button.setAttribute("aria-label", lang ? `Copy ${lang} code` : "Copy code");
  button.addEventListener("click", async () => {
    // the code as the block shows it now: a streaming reply patches a block in place as it grows (app.js's
    // patchChildren), keeping this button, so the text it was made with may be only the start of it
    const shown = button.closest(".code-block")?.querySelector("pre code")?.textContent ?? code;
    const ok = await copyText(shown);
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  head.append(button);
  const pre = el("pre");
  const codeEl = el("code", lang ? `language-${lang}` : "", code);
  pre.append(codeEl);
  pre.tabIndex = 0; // scrollable regions must be reachable by keyboard
  wrap.append(head, pre);
  return wrap;
}

// ---------------------------------------------------------------- inline

function findClosingRun(text, from, run, memo) {
  // a backtick run of exactly run.length, starting at or after `from`
  const key = `\`${run.length}`;
  if (memo && memo[key] !== undefined && from >= memo[key]) return -1;
  let i = text.indexOf(run, from);
  while (i !== -1) {
    let j = i + run.length;
    const before = text[i - 1];
    if (text[j] !== "`" && before !== "`") return i;
    while (text[j] === "`") j++;
    i = text.indexOf(run, j);
  }
  if (memo) memo[key] = Math.min(from, memo[key] ?? Infinity);
  return -1;
}

function isSpace(ch) {
  return ch === undefined || /\s/.test(ch);
}

/** Whether ``ch`` is neither whitespace nor punctuation (CommonMark's: Unicode P and S): a letter, a digit, a
 * combining mark ("é" as e + U+0301: an "_" after it is inside the word, as after "é" written as one character)... */
function isWordChar(ch) {
  return ch !== undefined && !/[\s\p{P}\p{S}]/u.test(ch);
}

/** The character (a whole code point: an emoji is two UTF-16 units) that ends just before ``text[i]``. */
function charBefore(text, i) {
  const unit = text.charCodeAt(i - 1);
  if (unit >= 0xdc00 && unit <= 0xdfff && i >= 2) {
    const point = text.codePointAt(i - 2);
    if (point > 0xffff) return String.fromCodePoint(point);
  }
  return text[i - 1];
}

/** The character (a whole code point) that starts at ``text[i]``, or undefined past the end. */
function charAt(text, i) {
  const point = text.codePointAt(i);
  return point === undefined ? undefined : String.fromCodePoint(point);
}

/**
 * Index of a closing delimiter `delim` for an emphasis opened just before `from`, or -1.
 * `memo` remembers where searches failed, so text full of unmatched delimiters stays linear.
 */
function findEmphasisClose(text, from, delim, memo) {
  if (memo[delim] !== undefined && from >= memo[delim]) return -1;
  let i = from;
  while (i < text.length) {
    const ch = text[i];
    if (ch === "\\") { i += 2; continue; }
    if (ch === "`") {
      let run = "`";
      while (text[i + run.length] === "`") run += "`";
      const close = findClosingRun(text, i + run.length, run, memo);
      i = close === -1 ? i + run.length : close + run.length;
      continue;
    }
    if (text.startsWith(delim, i) && !isSpace(text[i - 1]) && i > from) {
      const after = text[i + delim.length];
      // "**" must not be taken as the close of "*" and vice versa
      if (delim.length === 1 && after === delim[0]) {
        // skip a double run inside single emphasis (e.g. *a **b** c*)
        const inner = findEmphasisClose(text, i + 2, delim + delim, memo);
        if (inner !== -1) { i = inner + 2; continue; }
      }
      if (delim[0] === "_" && isWordChar(charAt(text, i + delim.length))) { i++; continue; }
      return i;
    }
    i++;
  }
  memo[delim] = Math.min(from, memo[delim] ?? Infinity);
  return -1;
}

// (a bracket pair inside the text holds no "[": with one, each "[" of a "[a[a[a…" run scanned to the text's end,
// and a long reply of them froze the page for seconds on every repaint while it streamed)
const LINK = /\[((?:[^\[\]\\]|\\.|\[[^\[\]]*\])*)\]\(\s*<?([^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*)>?(?:\s+"[^"]*")?\s*\)/y;
const BARE_URL = /https?:\/\/[^\s<>"'`]+/iy;
const MAX_INLINE_DEPTH = 6; // deeper emphasis is shown as text

/** Inline Markdown to a list of DOM nodes. */
export function renderInline(text, depth = 0) {
  const out = [];
  const memo = {};
  let buf = "";
  const flush = () => {
    if (buf) out.push(document.createTextNode(buf));
    buf = "";
  };
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    // backslash escapes
    if (ch === "\\" && i + 1 < text.length && PUNCT.test(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    // code spans
    if (ch === "`") {
      let run = "`";
      while (text[i + run.length] === "`") run += "`";
      const close = findClosingRun(text, i + run.length, run, memo);
      if (close !== -1) {
        let code = text.slice(i + run.length, close).replace(/\n/g, " ");
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ") && code.trim()) code = code.slice(1, -1);
        flush();
        out.push(el("code", "", code));
        i = close + run.length;
        continue;
      }
      buf += run;
      i += run.length;
      continue;
    }
    // bold, italic, strikethrough
    if (ch === "*" || ch === "_" || (ch === "~" && text[i + 1] === "~")) {
      const double = text[i + 1] === ch;
      const delim = double ? ch + ch : ch;
      const opensWord = !isSpace(text[i + delim.length]);
      const intraword = ch === "_" && isWordChar(charBefore(text, i));
      if (opensWord && !intraword && depth < MAX_INLINE_DEPTH) {
        const close = findEmphasisClose(text, i + delim.length, delim, memo);
        if (close !== -1) {
          flush();
          const tag = ch === "~" ? "del" : double ? "strong" : "em";
          const node = el(tag);
          node.append(...renderInline(text.slice(i + delim.length, close), depth + 1));
          out.push(node);
          i = close + delim.length;
          continue;
        }
      }
      buf += delim;
      i += delim.length;
      continue;
    }
    // [text](url)
    if (ch === "[") {
      LINK.lastIndex = i;
      const m = LINK.exec(text);
      if (m) {
        const href = safeUrl(m[2]);
        if (href && depth < MAX_INLINE_DEPTH) {
          flush();
          out.push(link(href, renderInline(m[1], depth + 1)));
        } else {
          buf += m[0]; // not http(s): shown exactly as written
        }
        i += m[0].length;
        continue;
      }
    }
    // bare URLs
    if ((ch === "h" || ch === "H") && !isWordChar(charBefore(text, i))) {
      BARE_URL.lastIndex = i;
      const m = BARE_URL.exec(text);
      if (m) {
        let url = m[0];
        while (/[.,;:!?)\]*_~]$/.test(url)) {
          if (url.endsWith(")") && (url.match(/\(/g) || []).length >= (url.match(/\)/g) || []).length) break;
          url = url.slice(0, -1);
        }
        const href = safeUrl(url);
        if (href && url.length > 8) {
          flush();
          out.push(link(href, [document.createTextNode(url)]));
          i += url.length;
          continue;
        }
      }
    }
    buf += ch;
    i++;
  }
  flush();
  return out;
}

/** Lines of a paragraph: text with <br> between lines. */
function paragraph(lines) {
  const p = el("p");
  lines.forEach((line, n) => {
    if (n > 0) p.append(el("br"));
    p.append(...renderInline(line.trim()));
  });
  return p;
}

// ---------------------------------------------------------------- blocks
//
// A streaming reply renders from its last settled line on (renderMarkdownTail). Where that line falls inside a
// block (a list's item, a block quote, a paragraph, a code block, nested any way), a "mark" says how the blocks
// rendered from there on go on those shown: ``[line, nodes, chain]``: the blocks before ``line`` are the first
// ``nodes`` nodes; where ``chain`` (outermost first) has steps, the node after them is a block that goes on, whose
// first ``count`` children (a list's items, a quote's or an item's blocks, a code block's text nodes; for
// ``kind`` "p", the lines before that paragraph's count-th <br>) are settled, and the blocks rendered from ``line``
// begin with that block's continuation (the next step's block being its first child). A step carries what the
// lines from ``line`` need to render as that continuation (``open`` in renderBlocks): a list's kind and indent, a
// code block's fence.

/**
 * The lines of a code block opened by ``fence`` (``{marker, indent, lang}``, from its fence line) from
 * ``lines[start]`` to its closing fence (or the end: an unclosed fence runs on, as a streaming one does): its block
 * goes on ``out``; returns the next line's index. ``more``: the lines go on a block already shown, so its text
 * starts with the line break after that one's last line. ``marks`` gets a "code" step for each line of the block
 * after its first: from that line on, the lines are the text after the block's first ``offset`` characters, in a
 * text node of its own (renderMarkdownTail splits the text there), so a long code block settles line by line
 * rather than being made whole each frame.
 */
function fencedCode(lines, start, fence, out, marks = null, more = false) {
  // (made once per fence, not once per line of it: a long code block is read again on every streamed frame)
  const closing = new RegExp(`^ {0,3}${fence.marker[0] === "`" ? "`" : "~"}{${fence.marker.length},}\\s*$`);
  const dedent = new RegExp(`^ {0,${fence.indent}}`);
  const body = [];
  let chars = more ? 0 : -1; // the text's length before line i (the line break before it not yet in it)
  let i = start;
  while (i < lines.length) {
    if (closing.test(lines[i])) { i++; break; }
    if (marks && (body.length || more)) marks.push([i, out.length, [{ kind: "code", count: 1, offset: chars, fence }]]);
    body.push(fence.indent ? lines[i].replace(dedent, "") : lines[i]);
    chars += body[body.length - 1].length + 1;
    i++;
  }
  const text = body.join("\n");
  out.push(codeBlock(more && body.length ? `\n${text}` : text, fence.lang));
  return i;
}

function indentOf(line) {
  const m = /^(\s*)/.exec(line);
  return m[1].replace(/\t/g, "    ").length;
}

const MAX_DEPTH = 12; // deeper quotes/lists are shown as text, never recursed into

/** ``inner``'s marks (those of blocks rendered from lines ``start`` on, inside ``step``'s block, the node ``at``)
 * as marks of the lines around them. (A mark at the inner lines' first line is the block's own start.) */
function nestMarks(marks, inner, start, at, step) {
  for (const [line, nodes, chain = []] of inner) {
    if (line > 0) marks.push([start + line, at, [{ ...step, count: nodes }, ...chain]]);
  }
}

/** A list from ``lines[start]`` on: ``[list, next line]``. ``marks`` (the top level's, the list being its node
 * ``at``) gets a "list" step for each later item at the list's own indent (from that line on, the lines render as a
 * list of the same kind whose items follow the first ``count``), and the marks inside its items under a "list" and
 * an "li" step. ``open``: the steps of a mark inside an item ("list", "li", then the item's own): the lines from
 * ``start`` go on that item. */
function parseList(lines, start, depth, marks = null, at = 0, open = null) {
  let ordered, baseIndent, list;
  let item = null;
  let itemLines = [];
  let itemStart = start;
  let itemTight = true; // (an item's first text has no <p>: one that goes on is tight only if it has nothing yet)
  let itemOpen = null;
  if (open) {
    ({ ordered, indent: baseIndent } = open[0]);
    list = el(ordered ? "ol" : "ul");
    item = el("li");
    itemTight = open[1].count === 0;
    itemOpen = open.slice(2);
  } else {
    const first = LIST_ITEM.exec(lines[start]);
    baseIndent = indentOf(lines[start]);
    ordered = /\d/.test(first[2]);
    list = el(ordered ? "ol" : "ul");
    if (ordered) {
      const n = parseInt(first[2], 10);
      if (n !== 1) list.start = n;
    }
  }
  const step = () => ({ kind: "list", count: list.childNodes.length, ordered, indent: baseIndent });
  const finishItem = () => {
    if (!item) return;
    // the item's text plus any nested blocks (indented lines)
    const inner = marks && [];
    item.append(...renderBlocks(itemLines, itemTight, depth + 1, inner, itemOpen));
    if (marks) {
      const items = step();
      nestMarks(marks, inner.map(([line, nodes, chain = []]) => [line, items.count, [{ kind: "li", count: nodes }, ...chain]]),
        itemStart, at, items);
    }
    list.append(item);
    item = null;
    itemLines = [];
    itemTight = true;
    itemOpen = null;
  };
  let i = start;
  while (i < lines.length) {
    const line = lines[i];
    const m = LIST_ITEM.exec(line);
    const indent = indentOf(line);
    if (m && indent <= baseIndent + 1 && /\d/.test(m[2]) === ordered) {
      finishItem();
      // (a line the top level reads as another block, "- - -" a rule, starts no list there: no mark)
      if (marks && i > start && indent === baseIndent && !HR.test(line)) marks.push([i, at, [step()]]);
      item = el("li");
      itemLines = [m[3]];
      itemStart = i;
      i++;
      continue;
    }
    if (m && indent <= baseIndent + 1) break; // a different kind of list starts
    if (!line.trim()) {
      // a blank line ends the list unless the next line continues it
      const next = lines[i + 1];
      if (next !== undefined && (indentOf(next) > baseIndent || (LIST_ITEM.exec(next) && indentOf(next) <= baseIndent + 1
        && /\d/.test(LIST_ITEM.exec(next)[2]) === ordered))) {
        itemLines.push("");
        i++;
        continue;
      }
      break;
    }
    if (indent > baseIndent || !isBlockStart(line)) {
      // nested content or a lazy continuation line
      itemLines.push(indent > baseIndent ? line.slice(Math.min(indent, baseIndent + 2)) : line);
      i++;
      continue;
    }
    break;
  }
  finishItem();
  return [list, i];
}

/** A block quote from ``lines[start]`` to the next blank line, on ``out``; returns the next line's index. ``marks``
 * gets the marks inside it under a "quote" step; ``open``: the steps of a mark inside it (the lines go on it). */
function blockQuote(lines, start, depth, out, marks = null, open = null) {
  const quoted = [];
  let i = start;
  while (i < lines.length && lines[i].trim()) {
    const q = QUOTE.exec(lines[i]);
    quoted.push(q ? q[1] : lines[i]);
    i++;
  }
  const inner = marks && [];
  const bq = el("blockquote");
  bq.append(...renderBlocks(quoted, false, depth + 1, inner, open));
  if (marks) nestMarks(marks, inner, start, out.length, { kind: "quote" });
  out.push(bq);
  return i;
}

function isBlockStart(line) {
  return FENCE.test(line) || HEADING.test(line) || HR.test(line) || LIST_ITEM.test(line) || QUOTE.test(line);
}

/**
 * Block-level Markdown (an array of lines) to DOM nodes. ``marks``, when given, gets a mark (see above) for each
 * line where a block starts with no paragraph open (no chain), and for the lines inside blocks that can go on from
 * there: what follows such a line renders from ``lines[line..]`` alone (with its chain as ``open``), and what
 * precedes it was decided by the lines before it and at most ``line + 1`` (a list looks one line past a blank
 * one). :func:`renderMarkdownTail` keeps what precedes such a line. ``open``: the lines go on the block a mark's
 * chain says (their first block is its continuation).
 */
function renderBlocks(lines, tight = false, depth = 0, marks = null, open = null) {
  const out = [];
  let para = [];
  const flushPara = () => {
    if (!para.length) return;
    if (tight && out.length === 0) {
      // first text of a list item: no <p> wrapper, keeps lists compact
      para.forEach((line, n) => {
        if (n > 0) out.push(el("br"));
        out.push(...renderInline(line.trim()));
      });
    } else {
      out.push(paragraph(para));
    }
    para = [];
  };
  let i = 0;
  const [step, ...inner] = open ?? [];
  // (a quote's lines go on it alone: a lazy line, not a quote's by itself, is the quote's there)
  if (step?.kind === "code") i = fencedCode(lines, 0, step.fence, out, marks, true);
  else if (step?.kind === "quote") i = blockQuote(lines, 0, depth, out, marks, inner);
  else if (step?.kind === "list" && inner.length) {
    const [list, next] = parseList(lines, 0, depth, marks, 0, open);
    out.push(list);
    i = next;
  }
  while (i < lines.length) {
    if (marks && !para.length) marks.push([i, out.length]);
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      flushPara();
      const opened = { marker: fence[1], indent: indentOf(line), lang: fence[2].replace(/[^\w+#.-]/g, "").slice(0, 30) };
      i = fencedCode(lines, i + 1, opened, out, marks);
      continue;
    }
    if (!line.trim()) {
      flushPara();
      i++;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      flushPara();
      const h = el(`h${Math.min(heading[1].length + 2, 6)}`, "md-heading");
      h.append(...renderInline(heading[2]));
      out.push(h);
      i++;
      continue;
    }
    if (HR.test(line)) {
      flushPara();
      out.push(el("hr"));
      i++;
      continue;
    }
    if (depth >= MAX_DEPTH) {
      para.push(line);
      i++;
      continue;
    }
    if (LIST_ITEM.test(line)) {
      flushPara();
      const [list, next] = parseList(lines, i, depth, marks, out.length);
      out.push(list);
      i = next;
      continue;
    }
    if (QUOTE.test(line)) {
      flushPara();
      i = blockQuote(lines, i, depth, out, marks);
      continue;
    }
    // (a long paragraph settles line by line: from here on the lines make a paragraph that goes on this one after
    // a <br>, the paragraph's line-th <br>: renderInline makes none; an item's first text has no paragraph)
    if (marks && para.length && !(tight && out.length === 0)) marks.push([i, out.length, [{ kind: "p", count: para.length }]]);
    para.push(line);
    i++;
  }
  flushPara();
  return out;
}

function linesOf(text) {
  return String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
}

/** Render Markdown text into a DocumentFragment. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  fragment.append(...renderBlocks(linesOf(text)));
  return fragment;
}

/**
 * Markdown text that grows (a streaming reply, rendered again on every frame) rendered from its last settled line
 * on: the work of a frame follows the size of the reply's open tail, not of the whole reply. Rendered whole each
 * frame, a 10,000-line reply made every frame build and compare all the blocks before it (quadratic over the
 * stream; the page stalled as it grew). A long list settles item by item, a long paragraph line by line, and a
 * block that holds the rest (one list item, one block quote, one code block) settles inside it, line by line.
 *
 * ``memo`` is the caller's own object for one rendered target, empty at first; it keeps how much of the text is
 * settled (``chars``: a prefix ending in a newline; ``nodes``: the target's leading children made of it; ``chain``:
 * the steps (see the marks above) into the block after them that is partly made of it, with the counts of the
 * target's own nodes) and the prefix itself, so a text that is not a growth of the last one (an edit, a reply read
 * back) starts over.
 *
 * Returns ``{keep, chain, fragment}``: the target's first ``keep`` children stay as they are; each step of
 * ``chain`` goes one block deeper (the node after those kept, then its first ``count`` children kept), and
 * ``fragment``'s first node (its first child at each step deeper) goes on that block; the rest of each level
 * follows. :func:`applyMarkdownTail` puts it in place.
 */
export function renderMarkdownTail(text, memo) {
  const whole = String(text ?? "");
  if (!memo.prefix || !whole.startsWith(memo.prefix)) Object.assign(memo, { prefix: "", chars: 0, nodes: 0, chain: [] });
  const { nodes: keep, chain } = memo;
  const tail = whole.slice(memo.chars);
  const lines = linesOf(tail);
  const marks = [];
  const fragment = document.createDocumentFragment();
  fragment.append(...renderBlocks(lines, false, 0, marks, chain));
  // The last mark whose own line and next one are both whole lines (the text goes on past them): the blocks
  // before it can no longer change, whatever comes. (The last line may be cut off mid-way: "#" becomes a
  // heading, "``" a fence, and a blank line's follower decides whether a list goes on.)
  let settled = null;
  for (const mark of marks) if (mark[0] > 0 && mark[0] + 2 < lines.length && mark[0] >= (settled?.[0] ?? 0)) settled = mark;
  if (settled) {
    // the characters of the tail's lines before the mark, each with its line break as the raw text has it
    // (counted on the normalized lines, a "\r\n" would put the offset off by one)
    const breaks = /\r\n?|\n/g;
    for (let n = 0; n < settled[0]; n++) breaks.exec(tail);
    const [, nodes, steps = []] = settled;
    // each step's count among the target's nodes: where the tail's block goes on one shown (its first node, at
    // each level while the mark is in that first node), after what was settled of it before
    const settledChain = [];
    let node = fragment.childNodes[nodes];
    let continues = nodes === 0;
    steps.forEach((step, n) => {
      let kept = step.count;
      if (step.kind === "p") {
        // the children of the paragraph before its count-th <br>
        kept = [...node.childNodes].map((child, k) => (child.nodeName === "BR" ? k : -1)).filter((k) => k >= 0)[step.count - 1];
      } else if (step.kind === "code") {
        node.querySelector("pre code").firstChild.splitText(step.offset);
      }
      const before = continues ? chain[n] : undefined;
      // (a paragraph that goes on has a <br> before the tail's first line)
      settledChain.push({ ...step, count: kept + (before ? before.count + (before.kind === "p" ? 1 : 0) : 0) });
      continues = Boolean(before) && kept === 0;
      node = node.childNodes[kept];
    });
    memo.chars += breaks.lastIndex;
    memo.prefix = whole.slice(0, memo.chars);
    memo.nodes = keep + nodes;
    memo.chain = settledChain;
  }
  return { keep, chain, fragment };
}

/** Whether ``parent``'s children are those a tail render's ``keep`` and ``chain`` go on (``source`` its nodes). */
function goesOn(parent, keep, chain, source) {
  if (keep > parent.childNodes.length) return false;
  if (!chain.length) return true;
  const node = parent.childNodes[keep];
  const more = source.firstChild;
  if (!node || node.nodeName !== more?.nodeName) return false;
  if (chain[0].kind === "code") return Boolean(node.querySelector("pre code"));
  return goesOn(node, chain[0].count, chain.slice(1), more);
}

/** Put a tail render's nodes (``source``) in ``parent`` after its first ``keep`` children and into the blocks
 * ``chain`` says go on. */
function joinTail(parent, keep, chain, source, patch) {
  if (chain.length) {
    const [step, ...inner] = chain;
    let into = parent.childNodes[keep];
    let from = source.firstChild;
    // (a code block's text goes on in its <code>: a text node per settled part, the last one growing)
    if (step.kind === "code") [into, from] = [into.querySelector("pre code"), from.querySelector("pre code")];
    if (step.kind === "p") from.prepend(document.createElement("br")); // (the line break the tail's first line follows)
    joinTail(into, step.count, inner, from, patch);
    source.firstChild.remove();
    keep += 1;
  }
  patch(parent, source, parent.childNodes[keep] ?? null);
}

/**
 * Render growing Markdown ``text`` into ``target`` (:func:`renderMarkdownTail`, ``memo`` one object per target),
 * changing what follows the settled part with ``patch(parent, source, from)``: make ``parent``'s children from
 * ``from`` on (null: after the last) those of ``source``.
 */
export function applyMarkdownTail(target, text, memo, patch) {
  let { keep, chain, fragment } = renderMarkdownTail(text, memo);
  if (!goesOn(target, keep, chain, fragment)) {
    // the target's kept children are not what the memo says (changed elsewhere): render the whole text
    for (const key of Object.keys(memo)) delete memo[key];
    ({ keep, chain, fragment } = renderMarkdownTail(text, memo));
  }
  joinTail(target, keep, chain, fragment, patch);
}
