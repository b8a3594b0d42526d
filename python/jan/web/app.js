// jan chat page. Plain ES module, no build step; talks to the server's OpenAI/Jan API.
//
// Safety rule: model and user text only ever reach the DOM through
// textContent / createTextNode (see markdown.js); nothing here assigns
// innerHTML.

import { applyMarkdownTail } from "./markdown.js";

const KEY_STORAGE = "jan.apiKey";
const MODEL_STORAGE = "jan.model";
const DRAFT_STORAGE = "jan.draft:"; // + a thread's id, or "new": the prompt's unsent text, kept per thread
const EDIT_STORAGE = "jan.edit:"; // + a thread's id: the edit of one of its messages being typed, {messageId, text}
const NARROW = window.matchMedia("(max-width: 760px)");
const DEFAULT_ASSISTANT = { assistant_id: "jan", assistant_name: "Jan" };

const $ = (id) => document.getElementById(id);
const ui = {
  app: $("app"),
  sidebar: $("sidebar"),
  scrim: $("scrim"),
  toggleSidebar: $("toggle-sidebar"),
  newThread: $("new-thread"),
  threadList: $("thread-list"),
  threadsEmpty: $("threads-empty"),
  title: $("thread-title"),
  modelSelect: $("model-select"),
  modelState: $("model-state"),
  modelToggle: $("model-toggle"),
  toggleSettings: $("toggle-settings"),
  settings: $("settings"),
  closeSettings: $("close-settings"),
  settingsForm: $("settings-form"),
  setInstructions: $("set-instructions"),
  setTemperature: $("set-temperature"),
  setTemperatureRange: $("set-temperature-range"),
  setMaxTokens: $("set-max-tokens"),
  settingsStatus: $("settings-status"),
  mcpList: $("mcp-list"),
  mcpEmpty: $("mcp-empty"),
  messages: $("messages"),
  emptyState: $("empty-state"),
  composer: $("composer"),
  prompt: $("prompt"),
  attachments: $("attachments"),
  attach: $("attach"),
  attachInput: $("attach-input"),
  composerHint: $("composer-hint"),
  send: $("send"),
  stop: $("stop"),
  toast: $("toast"),
  keyDialog: $("key-dialog"),
  keyForm: $("key-form"),
  keyMessage: $("key-message"),
  keyInput: $("key-input"),
  keyCancel: $("key-cancel"),
  keyForget: $("key-forget"),
  openKey: $("open-key"),
  keyNeeded: $("key-needed"),
  offline: $("offline"),
  emptyHint: $("empty-hint"),
  emptyOpenModels: $("empty-open-models"),
  keyNeededOpen: $("key-needed-open"),
  openModels: $("open-models"),
  modelsDialog: $("models-dialog"),
  modelsClose: $("models-close"),
  modelList: $("model-list"),
  importForm: $("import-form"),
  importPath: $("import-path"),
  importId: $("import-id"),
  importStatus: $("import-status"),
  pullForm: $("pull-form"),
  pullUrl: $("pull-url"),
  pullId: $("pull-id"),
  pullGo: $("pull-go"),
  pullCancel: $("pull-cancel"),
  pullBox: $("pull-box"),
  pullProgress: $("pull-progress"),
  pullStatus: $("pull-status"),
  confirmDialog: $("confirm-dialog"),
  confirmTitle: $("confirm-title"),
  confirmMessage: $("confirm-message"),
};

const state = {
  apiKey: localStorage.getItem(KEY_STORAGE) || "",
  threads: [],
  thread: null, // the open thread (null: a new one, created by the first message)
  messages: [],
  models: [],
  modelId: localStorage.getItem(MODEL_STORAGE) || "",
  run: null, // {controller, view} while an answer streams
  draftSettings: { instructions: "", temperature: null, max_tokens: null }, // for a thread not created yet
  pull: null, // {id, controller}
  keyNeeded: false, // the server wants an API key and the user closed the dialog without one
  renaming: false, // a thread's title is being typed in the list (which then is not redrawn under it)
  attachments: [], // images to send with the next message: {name, url (a data: URL)}
};

/** Images the server (and the model's projector) accept, and the most one may weigh. */
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
const MAX_IMAGES = 8;
// A message goes as one JSON body, its images as base64 data: URLs (a third larger than the files), and the server
// takes bodies of at most 16 MiB (ServerConfig.max_body_bytes): images past this much together could only come
// back as "Request body too large" after sending. (1 MiB is left for the text.)
const MAX_IMAGES_SENT = 15 * 1024 * 1024;
/** Object URLs of thread images already fetched, by "<thread>/<file_id>" (files never change). */
const imageUrls = new Map();

// ------------------------------------------------------------------ helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

let toastTimer = null;
function toast(message, kind = "error") {
  ui.toast.textContent = message;
  ui.toast.className = `toast ${kind === "error" ? "" : "info"}`;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { ui.toast.hidden = true; }, kind === "error" ? 8000 : 3000);
}

const ICONS = {
  edit: "M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4",
  trash: "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
};

/** A small stroke icon as SVG nodes (no markup strings). */
function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  return svg;
}

function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** The text of a message in Jan's shape (content parts) or OpenAI's (a string). */
function messageText(message) {
  const content = message.content;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((part) => part && part.type === "text")
    .map((part) => (typeof part.text === "string" ? part.text : part.text?.value ?? ""))
    .join("\n");
}

/**
 * The images a message holds, in order: its image_file parts' {file_id, mime_type}, and the images it links to
 * (image_url parts the store kept as given — the library, an import, a hand edit —: {url}), which a run fetches
 * and the Conversations API lists by their URL; they were left out of the view, as if the message had none.
 */
function messageImages(message) {
  if (!Array.isArray(message.content)) return [];
  return message.content.map((p) => {
    if (p?.type === "image_file" && typeof p.image_file?.file_id === "string") return p.image_file;
    if (p?.type === "image_url" && typeof p.image_url?.url === "string") return { url: p.image_url.url };
    return null;
  }).filter(Boolean);
}

/**
 * The documents attached to a message (its attachments' text the model reads, kept as thread files), by the
 * upload's name; they were shown nowhere, as if the message had none.
 */
function messageFiles(message) {
  if (!Array.isArray(message.attachments)) return [];
  return message.attachments.map((a) => a?.document?.filename || a?.document?.file_id || a?.file_id)
    .filter((name) => typeof name === "string" && name);
}

/**
 * A linked image: a data: URL's image shown itself; any other link named, never loaded by the page (the server
 * fetches it for a run under --allow-media-from; the browser asking a third party, or a file path, would not be
 * the same read), an http(s) one opened on a click.
 */
function linkedImage(url) {
  if (/^data:image\//i.test(url)) {
    const img = el("img", "thumb");
    img.alt = "Attached image";
    img.src = url;
    return img;
  }
  const box = el("div", "thumb linked-image");
  box.append("Linked image: ");
  if (/^https?:\/\//i.test(url)) {
    const link = el("a", "", url);
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    box.append(link);
  } else {
    box.append(el("code", "", url));
  }
  return box;
}

/** A thumbnail of an image stored in the thread folder, fetched with the API key (an <img src> could not send it). */
function threadImage(threadId, ref) {
  if (typeof ref.url === "string") return linkedImage(ref.url);
  const img = el("img", "thumb");
  img.alt = "Attached image";
  img.dataset.fileId = ref.file_id;
  const key = `${threadId}/${ref.file_id}`;
  if (imageUrls.has(key)) {
    img.src = imageUrls.get(key);
    return img;
  }
  (async () => {
    try {
      const response = await api(`/v1/threads/${encodeURIComponent(threadId)}/files/${encodeURIComponent(ref.file_id)}`, { raw: true });
      const url = URL.createObjectURL(await response.blob());
      imageUrls.set(key, url);
      img.src = url;
    } catch (err) {
      img.alt = `Image not available (${err.message})`;
    }
  })();
  return img;
}

/** A message's thinking: its "reasoning" parts' text and how long it took (ms, when saved). */
function messageReasoning(message) {
  const parts = Array.isArray(message.content) ? message.content.filter((p) => p && p.type === "reasoning") : [];
  const text = parts.map((p) => (typeof p.text === "string" ? p.text : p.text?.value ?? "")).join("");
  const ms = parts.reduce((sum, p) => sum + (Number.isFinite(p.duration_ms) ? p.duration_ms : 0), 0);
  return { text, ms: parts.some((p) => Number.isFinite(p.duration_ms)) ? ms : null };
}

// Characters that show nothing: spaces, and format characters (zero-width space and joiners, bidi controls, BOM)
const INVISIBLE = /[\s\p{Z}\p{Cf}]/gu;

/** Whether `text` has a character that shows: a title of zero-width spaces looked like no thread at all. */
function showsSomething(text) {
  return String(text ?? "").replace(INVISIBLE, "") !== "";
}

function threadTitle(thread) {
  return (thread && showsSomething(thread.title) && thread.title.trim()) || "New thread";
}

function threadAssistant(thread) {
  const list = thread && Array.isArray(thread.assistants) ? thread.assistants : [];
  return list[0] || null;
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The browser's own words for a refused connection ("Failed to fetch", "network error") tell a user nothing:
// a request that never reached the server fails with this, and the banner (#offline) stays up until it is back.
const UNREACHABLE = "Cannot reach the Jan server. Is it still running?";
const OFFLINE = "server_unreachable";
let offlineProbe = null;
const HEARTBEAT_MS = 5000; // how often an idle page checks that the server is still there

function unreachable() {
  setOffline(true);
  return new ApiError(0, UNREACHABLE, OFFLINE);
}

/**
 * Show or clear the "cannot reach the server" banner. While it shows, /health (open, no key) is asked every few
 * seconds; once it answers, the banner goes and the models and threads are read again (they may have changed).
 */
function setOffline(offline) {
  if (offline === !ui.offline.hidden) return;
  ui.offline.hidden = !offline;
  clearInterval(offlineProbe);
  offlineProbe = null;
  renderModelState(); // the badge beside the picker says "offline", not the "ready" it last read
  if (!offline) {
    refreshAll();
    return;
  }
  offlineProbe = setInterval(async () => {
    try {
      if ((await fetch("/health", { cache: "no-store" })).status < 500) setOffline(false);
    } catch {
      // still down: the next tick asks again
    }
  }, 2000);
}

let keyPrompt = null; // one dialog for every request that got a 401

function askForKey(message) {
  if (!keyPrompt) {
    keyPrompt = new Promise((resolve, reject) => {
      ui.keyMessage.textContent = message;
      ui.keyInput.value = "";
      ui.keyForget.hidden = !state.apiKey;
      const done = (ok) => {
        ui.keyForm.removeEventListener("submit", onSubmit);
        ui.keyCancel.removeEventListener("click", onCancel);
        ui.keyDialog.removeEventListener("cancel", onCancel);
        if (ui.keyDialog.open) ui.keyDialog.close();
        keyPrompt = null;
        setKeyNeeded(!ok);
        if (ok) resolve();
        else reject(new ApiError(401, "An API key is needed to use this server.", "invalid_api_key"));
      };
      const onSubmit = (event) => {
        event.preventDefault();
        const key = ui.keyInput.value.trim();
        if (!key) { ui.keyInput.focus(); return; }
        setApiKey(key);
        done(true);
      };
      const onCancel = (event) => { event.preventDefault(); done(false); };
      ui.keyForm.addEventListener("submit", onSubmit);
      ui.keyCancel.addEventListener("click", onCancel);
      ui.keyDialog.addEventListener("cancel", onCancel);
      if (!ui.keyDialog.open) ui.keyDialog.showModal();
      ui.keyInput.focus();
    });
  }
  return keyPrompt;
}

/** Without a key (the dialog was cancelled) the page says so, and how to give one, instead of
 * looking like an empty server. */
function setKeyNeeded(needed) {
  state.keyNeeded = needed;
  document.body.classList.toggle("key-needed", needed);
  ui.keyNeeded.hidden = !needed;
  updateEmptyState();
}

function setApiKey(key) {
  state.apiKey = key;
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/**
 * fetch() against the API with the key; a 401 asks the user for the key and retries.
 * Returns parsed JSON, or the Response itself with {raw: true} (for streams).
 */
async function api(path, { method = "GET", body, signal, raw = false } = {}) {
  for (;;) {
    const headers = { Accept: raw ? "text/event-stream" : "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const sentKey = state.apiKey;
    if (sentKey) headers.Authorization = `Bearer ${sentKey}`;
    let response;
    try {
      response = await fetch(path, {
        method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw unreachable();
    }
    setOffline(false);
    if (response.status === 401) {
      // Sent with a key the user has replaced meanwhile: retry with the new one, don't ask again.
      if (state.apiKey !== sentKey) continue;
      await askForKey(state.apiKey ? "That key was not accepted. Enter the server's API key."
        : "This server needs an API key.");
      continue;
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      let code;
      try {
        const data = await response.json();
        if (data && data.error) {
          // jan's dialects answer {error: {message, code}}; Ollama's answers {error: "message"}
          const found = typeof data.error === "string" ? data.error : data.error.message;
          if (typeof found === "string" && found) message = found;
          code = data.error.code;
        }
      } catch {
        // not JSON: keep the status line
      }
      throw new ApiError(response.status, message, code);
    }
    if (raw) return response;
    const type = response.headers.get("Content-Type") || "";
    return type.includes("json") ? response.json() : null;
  }
}

/** Server-sent events from a fetch Response: yields {event, data} (data parsed as JSON when it is). */
async function* readSSE(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (error.name === "AbortError") throw error;
        // the connection broke mid-stream (the server stopped, the network went): said so, not "network error"
        unreachable();
        throw new ApiError(0, "The connection to the Jan server was lost.", OFFLINE);
      }
      const { value, done } = chunk;
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) !== -1) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + (buffer[cut] === "\r" ? 4 : 2));
        let event = "message";
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith(":")) continue; // comment / keep-alive
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let value = colon === -1 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
        if (!data.length) continue;
        const text = data.join("\n");
        if (text === "[DONE]") { yield { event: "done", data: null }; continue; }
        let parsed = text;
        try { parsed = JSON.parse(text); } catch { /* plain text data */ }
        yield { event, data: parsed };
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// ------------------------------------------------------------------ sidebar

function isNarrow() {
  return NARROW.matches;
}

function setSidebar(open, { focus = false } = {}) {
  ui.app.classList.toggle("sidebar-closed", !open);
  ui.toggleSidebar.setAttribute("aria-expanded", String(open));
  ui.toggleSidebar.setAttribute("aria-label", open ? "Hide threads" : "Show threads");
  if (open && focus) {
    (ui.threadList.querySelector(".thread-item.active .thread-open") || ui.newThread).focus();
  }
}

function sidebarOpen() {
  return !ui.app.classList.contains("sidebar-closed");
}

function closeSidebarIfNarrow() {
  if (isNarrow() && sidebarOpen()) setSidebar(false);
}

/**
 * Every item of an OpenAI-style list (`{data, has_more, last_id}`), read a page of 100 at a time with `after`:
 * one page alone left the rest out (a 101st thread never showed in the sidebar). Returns `{data, problems}`
 * (the pages' `problems`, for the threads' list, joined); rejects as `api` does.
 */
async function listAll(path, params = {}) {
  const data = [];
  const problems = [];
  let after = null;
  for (;;) {
    const query = new URLSearchParams({ limit: "100", ...params });
    if (after) query.set("after", after);
    const page = await api(`${path}?${query}`);
    data.push(...(page.data || []));
    problems.push(...(page.problems || []));
    // (a last_id seen before would loop for ever: a server that pages wrongly ends the list there)
    if (!page.has_more || !page.last_id || page.last_id === after) break;
    after = page.last_id;
  }
  return { data, problems };
}

async function loadThreads() {
  try {
    const page = await listAll("/v1/threads", { order: "desc" });
    state.threads = page.data;
    if (page.problems.length) {
      // a damaged file is left where it is now (only a write sets one aside, with its copy named): "were set
      // aside" sent the user looking for copies that are not there; the first file is named, to repair or remove
      const kept = page.problems.filter((p) => !p.moved_to);
      toast(kept.length
        ? `${page.problems.length} damaged thread file(s) cannot be read (left in place: repair or remove ${kept[0].path} in the server's data folder).`
        : `${page.problems.length} damaged thread file(s) were set aside; see the server's data folder.`);
    }
  } catch (error) {
    if (error.status !== 401 && error.code !== OFFLINE) toast(`Could not list threads: ${error.message}`); // the banner says it
  }
  renderThreads();
}

function renderThreads() {
  // a title being typed would be lost with its input (a list refreshed as an answer ends): finish() renders it
  if (state.renaming) return;
  ui.threadList.replaceChildren();
  ui.threadsEmpty.hidden = state.threads.length > 0;
  for (const thread of state.threads) {
    const li = el("li", "thread-item");
    li.dataset.threadId = thread.id;
    const active = state.thread && state.thread.id === thread.id;
    li.classList.toggle("active", Boolean(active));
    const open = el("button", "thread-open", threadTitle(thread));
    open.dir = "auto"; // a title in a right-to-left script reads so, and its override characters stay inside it
    open.type = "button";
    open.title = threadTitle(thread);
    if (active) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => {
      openThread(thread.id);
      closeSidebarIfNarrow();
    });
    const actions = el("div", "thread-actions");
    const rename = el("button", "btn icon thread-rename-btn");
    rename.append(icon("edit"));
    rename.type = "button";
    rename.setAttribute("aria-label", `Rename thread “${threadTitle(thread)}”`);
    rename.title = "Rename";
    rename.addEventListener("click", () => startRename(li, thread));
    const del = el("button", "btn icon thread-delete-btn");
    del.append(icon("trash"));
    del.type = "button";
    del.setAttribute("aria-label", `Delete thread “${threadTitle(thread)}”`);
    del.title = "Delete";
    del.addEventListener("click", () => deleteThread(thread));
    actions.append(rename, del);
    li.append(open, actions);
    ui.threadList.append(li);
  }
}

function startRename(li, thread) {
  const input = el("input", "thread-rename");
  input.type = "text";
  input.maxLength = 512; // the server's bound on a title (jan.server.schemas.DESCRIPTION_MAX_CHARS)
  input.value = threadTitle(thread);
  input.setAttribute("aria-label", "Thread title");
  li.replaceChildren(input);
  state.renaming = true;
  input.focus();
  input.select();
  let finished = false;
  const finish = async (save) => {
    if (finished) return;
    finished = true;
    const title = input.value.trim();
    if (save && showsSomething(title) && title !== thread.title) {
      try {
        const updated = await api(`/v1/threads/${encodeURIComponent(thread.id)}`, { method: "PATCH", body: { title } });
        Object.assign(thread, updated);
        // the list may have been read again meanwhile (new objects): the title goes in the one shown
        const listed = state.threads.find((t) => t.id === thread.id);
        if (listed) Object.assign(listed, updated);
        if (state.thread && state.thread.id === thread.id) {
          state.thread = updated;
          renderTitle();
        }
      } catch (error) {
        if (error.status === 404) {
          toast(THREAD_GONE);
          state.renaming = false;
          forgetThread(thread.id);
          return;
        }
        toast(`Could not rename: ${error.message}`);
      }
    }
    state.renaming = false;
    renderThreads();
    const again = ui.threadList.querySelector(`[data-thread-id="${CSS.escape(thread.id)}"] .thread-open`);
    if (again) again.focus();
  };
  input.addEventListener("keydown", (event) => {
    if (event.isComposing) return; // Enter/Escape commit or drop an IME's composition, not the title
    if (event.key === "Enter") { event.preventDefault(); finish(true); }
    else if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); finish(false); }
  });
  input.addEventListener("blur", () => finish(true));
}

function confirmDialog(title, message, okLabel = "Delete") {
  return new Promise((resolve) => {
    ui.confirmTitle.textContent = title;
    ui.confirmMessage.textContent = message;
    $("confirm-ok").textContent = okLabel;
    const onClose = () => {
      ui.confirmDialog.removeEventListener("close", onClose);
      resolve(ui.confirmDialog.returnValue === "ok");
    };
    ui.confirmDialog.returnValue = "cancel";
    ui.confirmDialog.addEventListener("close", onClose);
    ui.confirmDialog.showModal();
    $("confirm-cancel").focus();
  });
}

const THREAD_GONE = "This thread no longer exists (deleted elsewhere).";
// (the server's words for it, "…while a run run_… is active (it is in_progress: …)", are for API clients)
const THREAD_BUSY = "This thread is still answering elsewhere (another tab or app).";

/** A thread found deleted (here, in another tab, over the API): off the list, and off the page if open. */
function draftKey(threadId = state.thread?.id) {
  return DRAFT_STORAGE + (threadId || "new");
}

/** Keep the prompt's text as the open thread's draft: a reload, a switch of thread or a closed tab loses none of
 * it (each thread keeps its own; sending clears it). */
function saveDraft() {
  try {
    if (ui.prompt.value) localStorage.setItem(draftKey(), ui.prompt.value);
    else localStorage.removeItem(draftKey());
  } catch {
    // storage full or off: the text stays in the prompt, as before drafts were kept
  }
}

/** Show the open thread's draft in the prompt (empty when it has none). */
function showDraft() {
  let text = "";
  try {
    text = localStorage.getItem(draftKey()) || "";
  } catch {
    text = "";
  }
  ui.prompt.value = text;
  autosize();
}

/** Keep (``edit``: {messageId, text}) or forget (null) the edit being typed in a thread, as the prompt's draft is
 * kept: a switch of thread or a reload shows it again where it was, unsent. */
function keepEdit(threadId, edit) {
  if (!threadId) return;
  try {
    if (edit) localStorage.setItem(EDIT_STORAGE + threadId, JSON.stringify(edit));
    else localStorage.removeItem(EDIT_STORAGE + threadId);
  } catch {
    // storage full or off: the edit lasts as long as its editor
  }
}

function keptEdit(threadId) {
  try {
    const edit = JSON.parse(localStorage.getItem(EDIT_STORAGE + threadId) || "null");
    return edit && typeof edit.messageId === "string" && typeof edit.text === "string" ? edit : null;
  } catch {
    return null;
  }
}

function forgetThread(threadId) {
  state.threads = state.threads.filter((t) => t.id !== threadId);
  const open = Boolean(state.thread && state.thread.id === threadId);
  // the text typed for a thread that is gone goes on to the new thread the page opens instead
  if (open && ui.prompt.value) {
    try { localStorage.setItem(draftKey(null), ui.prompt.value); } catch { /* it stays in the prompt below */ }
  }
  try { localStorage.removeItem(draftKey(threadId)); } catch { /* nothing kept */ }
  keepEdit(threadId, null);
  if (open) newThread();
  renderThreads();
}

async function deleteThread(thread) {
  const ok = await confirmDialog("Delete thread?", `“${threadTitle(thread)}” and its messages will be deleted.`);
  if (!ok) return;
  try {
    if (state.run && state.thread && state.thread.id === thread.id) stopRun();
    await api(`/v1/threads/${encodeURIComponent(thread.id)}`, { method: "DELETE" });
  } catch (error) {
    if (error.status !== 404) {
      toast(`Could not delete: ${error.message}`);
      return;
    }
  }
  forgetThread(thread.id);
  (ui.threadList.querySelector(".thread-open") || ui.newThread).focus();
}

// ------------------------------------------------------------------ threads and messages

function setRoute(threadId) {
  const hash = threadId ? `#thread=${encodeURIComponent(threadId)}` : "";
  if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname);
}

function routeThreadId() {
  const m = /^#thread=(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

function renderTitle() {
  const title = state.thread ? threadTitle(state.thread) : "New thread";
  ui.title.textContent = title;
  // (isolated: a right-to-left title, or one with a stray U+202E override, must not reorder " · Jan")
  document.title = state.thread ? `\u2068${title}\u2069 · Jan` : "Jan";
}

function newThread() {
  if (state.run) stopRun();
  state.thread = null;
  state.messages = [];
  setRoute(null);
  showDraft();
  renderTitle();
  renderMessages();
  renderThreads();
  fillSettings();
  ui.prompt.focus();
}

async function openThread(threadId, { focus = true } = {}) {
  if (state.run) stopRun();
  try {
    const thread = await api(`/v1/threads/${encodeURIComponent(threadId)}`);
    const messages = await fetchMessages(threadId);
    state.thread = thread;
    state.messages = messages;
  } catch (error) {
    toast(error.status === 404 ? "That thread no longer exists." : `Could not open the thread: ${error.message}`);
    if (error.status === 404) { forgetThread(threadId); newThread(); }
    return;
  }
  setRoute(threadId);
  showDraft();
  const model = threadAssistant(state.thread)?.model?.id;
  if (model && chatModels().some((m) => m.id === model)) selectModel(model, { save: false });
  renderTitle();
  renderThreads();
  renderMessages();
  fillSettings();
  if (focus) ui.prompt.focus();
}

async function fetchMessages(threadId) {
  // all: the tool results and calling turns too (OpenAI's list leaves them to the run steps), shown with their calls
  return (await listAll(`/v1/threads/${encodeURIComponent(threadId)}/messages`, { order: "asc", all: "true" })).data;
}

function renderMessages() {
  ui.messages.replaceChildren();
  const results = new Map();
  for (const message of state.messages) {
    if (message.role === "tool" && message.metadata?.tool_call_id) results.set(message.metadata.tool_call_id, message);
  }
  for (const message of state.messages) {
    if (message.role !== "user" && message.role !== "assistant") continue;
    const item = message.metadata?.item;
    if (item && typeof item === "object") {
      // an item a response kept as it is (a message the model reads no text of): an MCP call the server ran shows
      // as the tool call it was, with its result; a tool listing, an approval or a web search is not shown
      if (item.type === "mcp_call") ui.messages.append(mcpCallView(message, item));
      continue;
    }
    const view = messageView(message);
    const calls = message.metadata?.tool_calls;
    if (Array.isArray(calls) && calls.length) view.root.append(toolCallsView(calls, results));
    ui.messages.append(view.root);
  }
  updateEmptyState();
  scrollToBottom(true);
  // an edit left unsent in this thread (a switch of thread, a reload) is open again where it was
  const edit = state.thread && !state.run ? keptEdit(state.thread.id) : null;
  const editing = edit && ui.messages.querySelector(`article.user[data-message-id="${CSS.escape(edit.messageId)}"]`);
  if (editing) openEditor(editing, edit.text, { focus: false });
  else if (edit) keepEdit(state.thread.id, null); // (its message is gone)
}

/**
 * A call's arguments as the user reads them: JSON laid out two spaces deep. A model's own spacing (a small model
 * pads "{ }" with long runs of blanks) tells nothing; text that is not JSON is shown exactly as the model wrote it.
 */
function toolArguments(raw) {
  if (!raw) return "{}";
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return raw;
  }
}

/** An MCP call a response ran (its kept ``mcp_call`` item) as a reply holding that one tool call and its result. */
function mcpCallView(message, item) {
  const view = messageView({ ...message, content: [] });
  const error = item.error?.content?.map((part) => part?.text || "").join("\n") || item.error?.message
    || (typeof item.error === "string" ? item.error : "");
  const output = typeof item.output === "string" ? item.output : (error ? `Error: ${error}` : undefined);
  // the images the tool returned, kept beside the item as data: URLs (the item's output has each one's note)
  const images = (Array.isArray(message.metadata?.result_content) ? message.metadata.result_content : [])
    .map((part) => part?.type === "image_url" ? part.image_url?.url : null)
    .filter((url) => typeof url === "string" && url.startsWith("data:image/"));
  const call = { id: item.id, function: { name: `${item.server_label}: ${item.name}`, arguments: item.arguments,
    output, images } };
  view.root.append(toolCallsView([call], new Map()));
  return view.root;
}

/** Tool calls shown inline and collapsible: name, arguments, result. Tool output is text, never HTML. */
function toolCallsView(calls, results) {
  const box = el("div", "tool-calls");
  for (const call of calls) {
    const fn = call.function || {};
    const result = results.get(call.id);
    const details = el("details", "tool-call");
    details.dataset.toolCallId = call.id || "";
    const meta = result?.metadata || {};
    let state = "waiting";
    if (result) state = meta.is_error ? "error" : "done";
    details.dataset.state = state;
    const summary = el("summary", "", `Tool: ${fn.name || "?"}`);
    const badge = el("span", "tool-state", result ? (meta.is_error ? "failed" : `done${meta.duration_ms !== undefined ? ` · ${meta.duration_ms} ms` : ""}`) : (fn.output !== undefined ? "done" : "waiting"));
    summary.append(" ", badge);
    details.append(summary, el("div", "tool-label", "Arguments"), el("pre", "tool-args", toolArguments(fn.arguments)));
    const output = result ? messageText(result) : fn.output;
    if (output !== undefined) {
      details.append(el("div", "tool-label", meta.approved_by ? `Result (approved by ${meta.approved_by})` : "Result"),
        el("pre", "tool-result", output));
    }
    // a result's images (an MCP screenshot tool's, kept as files of the thread as a message's are) as thumbnails
    const images = result ? messageImages(result) : [];
    const inline = Array.isArray(fn.images) ? fn.images : [];  // (a kept MCP call's: data: URLs, see mcpCallView)
    if (images.length || inline.length) {
      const shown = el("div", "message-images tool-images");
      for (const ref of images) shown.append(threadImage(result.thread_id, ref));
      for (const url of inline) {
        const img = el("img", "thumb");
        img.alt = "Image the tool returned";
        img.src = url;
        shown.append(img);
      }
      details.append(shown);
    }
    box.append(details);
  }
  return box;
}

/** Ask the user about pending tool calls; resolves to the tool_outputs to submit. */
function askApproval(run, signal) {
  const calls = run?.required_action?.submit_tool_outputs?.tool_calls || [];
  return new Promise((resolve) => {
    const box = el("div", "approval");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Tool calls waiting for approval");
    box.append(el("p", "approval-title", calls.length === 1 ? "The assistant wants to use a tool:" : `The assistant wants to use ${calls.length} tools:`));
    for (const call of calls) {
      const item = el("div", "approval-call");
      item.append(el("strong", "", call.function?.name || "?"), el("pre", "tool-args", toolArguments(call.function?.arguments)));
      box.append(item);
    }
    const row = el("div", "row");
    const approve = el("button", "btn primary", "Approve");
    const deny = el("button", "btn", "Deny");
    approve.type = deny.type = "button";
    approve.id = "approve-tools";
    deny.id = "deny-tools";
    const answer = (ok) => {
      box.remove();
      resolve(calls.map((c) => ({ tool_call_id: c.id, approve: ok })));
    };
    signal.addEventListener("abort", () => { box.remove(); resolve(null); }, { once: true });
    approve.addEventListener("click", () => answer(true));
    deny.addEventListener("click", () => answer(false));
    row.append(approve, deny);
    box.append(row);
    ui.messages.append(box);
    scrollToBottom(true);
    approve.focus();
  });
}

function updateEmptyState() {
  ui.emptyState.hidden = ui.messages.childElementCount > 0 || state.keyNeeded;
}

/** An <article> for one message; returns handles to update it while it streams. */
function messageView(message) {
  const user = message.role === "user";
  const root = el("article", `message ${user ? "user" : "assistant"}`);
  if (message.id) root.dataset.messageId = message.id;
  root.dataset.role = message.role;
  const head = el("div", "message-head");
  const name = user ? "You" : (threadAssistant(state.thread)?.assistant_name || "Jan");
  head.append(el("span", "avatar", name.slice(0, 1).toUpperCase()), el("span", "message-author", name));
  head.firstChild.setAttribute("aria-hidden", "true");
  // the model's thinking: collapsed, a "Thinking…" line while it streams, its duration after
  const thinking = el("details", "thinking");
  const thinkingSummary = el("summary", "thinking-summary");
  // while it thinks: "Answer now" ends the thinking (the run's control), and the model answers in this reply
  const answerNow = el("button", "answer-now", "Answer now");
  answerNow.type = "button";
  answerNow.hidden = true;
  answerNow.title = "Stop thinking and answer now";
  answerNow.addEventListener("click", () => endThinking(answerNow));
  const thinkingBody = el("div", "thinking-body");
  thinkingBody.dir = "auto";
  thinking.append(thinkingSummary, thinkingBody);
  thinking.hidden = true;
  const body = el("div", "message-body");
  if (user) body.dir = "auto";
  const status = el("div", "message-status");
  status.hidden = true;
  root.append(head, thinking, answerNow, body, status);
  // under the message: Edit (a message of the user's, stored) and Regenerate (a reply; shown for the last one
  // only, and neither while an answer streams: style.css)
  const actions = el("div", "message-actions");
  if (user && message.id) {
    const edit = el("button", "btn ghost small edit-message", "Edit");
    edit.type = "button";
    edit.setAttribute("aria-label", "Edit this message and send it again");
    edit.addEventListener("click", () => openEditor(root));
    actions.append(edit);
  } else if (!user) {
    const again = el("button", "btn ghost small regenerate", "Regenerate");
    again.type = "button";
    again.setAttribute("aria-label", "Answer the last message again");
    again.addEventListener("click", () => regenerate());
    actions.append(again);
  }
  if (actions.childElementCount) root.append(actions);
  const view = { root, body, status, text: "", thinking, thinkingSummary, thinkingBody, answerNow };
  const images = messageImages(message);
  if (images.length) {
    const box = el("div", "message-images");
    for (const ref of images) box.append(threadImage(message.thread_id, ref));
    root.insertBefore(box, body);
  }
  const files = messageFiles(message);
  if (files.length) {
    const box = el("div", "message-files");
    for (const name of files) box.append(el("span", "message-file", `File: ${name}`));
    root.insertBefore(box, body);
  }
  const saved = messageReasoning(message);
  if (saved.text) setViewReasoning(view, saved.text, false, saved.ms);
  setViewText(view, messageText(message), user);
  setViewStatus(view, message);
  return view;
}

function setViewText(view, text, plain = view.root.dataset.role === "user") {
  view.text = text;
  view.root.dataset.chars = String(text.length); // the raw text's length (the body shows it rendered)
  if (plain) setText(view.body, text);
  else {
    // only the blocks after the settled ones are rendered and patched: a reply streams in here every frame
    applyMarkdownTail(view.body, text, view.markdown ??= {}, patchChildren);
  }
}

/**
 * Make ``target``'s children those of ``source`` (a fresh render, emptied by this) by changing only what differs:
 * a node equal to its new self stays as it is, an element of the same tag and attributes is patched inside, and a
 * text that grew gets only its new tail. A streaming reply is rendered again every frame: replaced whole, the
 * user's selection in it (what they were about to copy) was gone at the next frame. The unchanged blocks before
 * the growing tail cost one native comparison each.
 */
function patchChildren(target, source, from = target.firstChild) {
  // (``from``: the first child to patch, those before it left as they are; null: ``source`` goes after them all)
  let old = from;
  for (let next = source.firstChild; next;) {
    const following = next.nextSibling;
    if (!old) target.append(next);
    else {
      const after = old.nextSibling;
      if (!patchNode(old, next)) target.replaceChild(next, old);
      old = after;
    }
    next = following;
  }
  while (old) {
    const after = old.nextSibling;
    old.remove();
    old = after;
  }
}

/** Patch ``old`` into ``next`` in place (true), or false where it must be replaced (another kind of node). */
function patchNode(old, next) {
  if (old.isEqualNode(next)) return true;
  if (old.nodeType === Node.TEXT_NODE && next.nodeType === Node.TEXT_NODE) {
    growText(old, next.data);
    return true;
  }
  if (old.nodeType !== Node.ELEMENT_NODE || next.nodeType !== Node.ELEMENT_NODE || old.tagName !== next.tagName
      || old.attributes.length !== next.attributes.length) return false;
  for (const attribute of next.attributes) {
    if (old.getAttribute(attribute.name) !== attribute.value) return false;
  }
  patchChildren(old, next);
  return true;
}

/** A text node's data made ``text``: a text that only grew gets its tail appended (a selection in it stays). */
function growText(node, text) {
  const now = node.data;
  if (text === now) return;
  if (text.startsWith(now)) node.appendData(text.slice(now.length));
  else node.data = text;
}

/** An element's text made ``text`` as :func:`growText` makes a text node's (a thinking that streams, a plain body). */
function setText(element, text) {
  const only = element.childNodes.length === 1 && element.firstChild.nodeType === Node.TEXT_NODE ? element.firstChild : null;
  if (only && text) growText(only, text);
  else element.textContent = text;
}

function setViewReasoning(view, text, streaming, ms = null) {
  view.thinking.hidden = !text;
  setText(view.thinkingBody, text);
  view.thinking.classList.toggle("streaming", streaming);
  // (shown once the run is known: the control is the run's)
  if (view.answerNow) view.answerNow.hidden = !(streaming && state.run?.runId && !view.answerNow.disabled);
  if (streaming) view.thinkingSummary.textContent = "Thinking…";
  else if (ms !== null && ms !== undefined) view.thinkingSummary.textContent = `Thought for ${(ms / 1000).toFixed(1)} s`;
  else view.thinkingSummary.textContent = "Thoughts";
}

/** The note under a reply: why it is not whole, from OpenAI's status and incomplete_details (as the API tells it). */
function setViewStatus(view, message) {
  const reason = message.status === "incomplete" ? message.incomplete_details?.reason || "run_cancelled" : null;
  let note = "";
  let error = false;
  if (reason === "run_failed") {
    note = `Error: ${(message.metadata && message.metadata.error) || "the answer failed"}`;
    error = true;
  } else if (reason === "max_tokens") note = "Cut off at the max tokens limit";
  // Jan's metadata.stop_reason says who stopped it: a plain "Stopped" would blame the user for jan's stop
  else if (reason && message.metadata?.stop_reason === "interrupted") note = "Interrupted: the server stopped before it was done";
  else if (reason) note = "Stopped";
  else if (message.status === "in_progress" && !state.run) note = "Still being written (or interrupted)…";
  view.status.textContent = note;
  view.status.classList.toggle("error", error);
  view.status.hidden = !note;
}

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToBottom(force = false) {
  if (force || nearBottom()) ui.messages.scrollTop = ui.messages.scrollHeight;
}

// ------------------------------------------------------------------ sending

function setStreaming(on) {
  ui.send.hidden = on;
  ui.stop.hidden = !on;
  ui.messages.setAttribute("aria-busy", String(on));
  document.body.classList.toggle("streaming", on);
}

function stopRun() {
  if (state.run) state.run.controller.abort();
}

function assistantEntry(modelId, settings, base = null) {
  const entry = { ...DEFAULT_ASSISTANT, ...(base || {}) };
  const model = { settings: {}, parameters: {}, engine: "llama.cpp", ...(entry.model || {}) };
  if (modelId) model.id = modelId;
  const parameters = { ...(model.parameters || {}) };
  for (const key of ["temperature", "max_tokens"]) {
    if (settings[key] === null || settings[key] === undefined) delete parameters[key];
    else parameters[key] = settings[key];
  }
  model.parameters = parameters;
  if (model.id) entry.model = model;
  else delete entry.model;
  entry.instructions = settings.instructions || "";
  return entry;
}

// ------------------------------------------------------------------ attachments

/** Add picked, pasted or dropped files as images to send (checked here so the user hears at once). */
async function addImages(files) {
  if (files.length && !canSee()) {
    // (the attach button is hidden then; a paste or a drop still brings images): said now, not by the run's refusal
    toast(`${state.modelId || "No model"} cannot see images: pick a model with vision (a projector) to send them.`);
    return;
  }
  for (const file of files) {
    if (!IMAGE_TYPES.includes(file.type)) {
      toast(`${file.name || "That file"} is not a PNG, JPEG, WebP or GIF image.`);
      continue;
    }
    if (file.size > MAX_IMAGE_BYTES) {
      toast(`${file.name || "That image"} is ${formatBytes(file.size)}; at most ${formatBytes(MAX_IMAGE_BYTES)} per image.`);
      continue;
    }
    if (state.attachments.length >= MAX_IMAGES) {
      toast(`At most ${MAX_IMAGES} images per message.`);
      break;
    }
    const url = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
    const sent = state.attachments.reduce((n, a) => n + a.url.length, 0);
    if (sent + url.length > MAX_IMAGES_SENT) {
      toast(`${file.name || "That image"} does not fit: a message's images can be at most ${formatBytes(MAX_IMAGES_SENT)} together as sent (a third more than their files).`);
      continue;
    }
    state.attachments.push({ name: file.name || "pasted image", url });
  }
  renderAttachments();
}

function renderAttachments() {
  ui.attachments.replaceChildren();
  state.attachments.forEach((item, i) => {
    const box = el("div", "attachment");
    const img = el("img", "thumb");
    img.src = item.url;
    img.alt = item.name;
    const remove = el("button", "", "×");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${item.name}`);
    remove.addEventListener("click", () => {
      state.attachments.splice(i, 1);
      renderAttachments();
      ui.prompt.focus();
    });
    box.append(img, remove);
    ui.attachments.append(box);
  });
  ui.attachments.hidden = state.attachments.length === 0;
}

/**
 * Send the prompt's text and images as a message of the open thread (a new thread: created first) and stream the
 * answer. ``rewind``: instead of a new message, ``rewind(threadId)`` changes the open thread's messages (an edited
 * message, a reply to answer again: :func:`resendFrom`) and resolves to them, the last one being the message
 * answered; the prompt and its images stay as they are. ``keep``: the rewind's text (an edit), given to the prompt
 * where the thread is found deleted, to send in a new thread as a message typed there is.
 */
async function send({ rewind = null, keep = "" } = {}) {
  // A run stopped (its Stop, or a switch of thread) is still saving its reply for a moment: a send then goes
  // after it, rather than Enter doing nothing. (Two sends waiting: the first takes the run, the second returns.)
  if (state.run && state.run.controller.signal.aborted) await state.run.settled;
  const text = rewind ? "" : ui.prompt.value.trim();
  if (state.run || (rewind ? !state.thread : !text && !state.attachments.length)) return false;
  if (!state.modelId) {
    toast("No model to answer with: import or download one under Models.");
    return false;
  }
  if (!rewind && state.attachments.length && !canSee()) {
    // images attached for another model: kept (to remove, or to send once a model that sees is picked)
    toast(`${state.modelId} cannot see images: remove them, or pick a model with vision to send them.`);
    return false;
  }
  const controller = new AbortController();
  let settle;
  state.run = { controller, view: null, settled: new Promise((resolve) => { settle = resolve; }) };
  setStreaming(true);
  let images = [];
  if (!rewind) {
    ui.prompt.value = "";
    saveDraft();
    autosize();
    images = state.attachments;
    state.attachments = [];
    renderAttachments();
  }
  // Jan's shape for text; images as data URLs, which the server stores as files in the thread folder
  const content = images.length
    ? [...(text ? [{ type: "text", text }] : []), ...images.map((i) => ({ type: "image_url", image_url: { url: i.url } }))]
    : text;
  let view = null;
  let finalMessage = null;
  let failure = null;
  let stopped = false;
  let saved = null;
  let threadGone = null; // the id of the open thread, when it was found deleted
  try {
    if (!state.thread) {
      const thread = await api("/v1/threads", {
        method: "POST",
        body: { assistants: [assistantEntry(state.modelId, state.draftSettings)] },
      });
      state.draftSettings = { instructions: "", temperature: null, max_tokens: null }; // the next new thread starts fresh
      state.thread = thread;
      state.messages = [];
      state.threads.unshift(thread);
      setRoute(thread.id);
      saveDraft(); // (text typed while it was created is this thread's now)
      renderTitle();
      renderThreads();
    }
    const threadId = state.thread.id;
    await releaseWaitingRun(threadId);
    if (rewind) {
      const messages = await rewind(threadId);
      if (controller.signal.aborted) throw new DOMException("stopped", "AbortError"); // (left for another thread)
      state.messages = messages;
      renderMessages();
    } else {
      const userMessage = await api(`/v1/threads/${encodeURIComponent(threadId)}/messages`, {
        method: "POST", body: { role: "user", content },
      });
      state.messages.push(userMessage);
      ui.messages.append(messageView(userMessage).root);
      updateEmptyState();
      scrollToBottom(true);
    }

    view = messageView({ role: "assistant", content: [], status: "in_progress" });
    view.threadId = threadId;
    view.body.classList.add("cursor");
    state.run.view = view;
    ui.messages.append(view.root);
    scrollToBottom(true);

    // a model not loaded is loaded for the run: the badge says so meanwhile (read again as the run ends)
    const model = state.models.find((m) => m.id === state.modelId);
    if (model && model.state !== "ready" && model.state !== "failed" && model.state !== "unavailable") {
      model.state = "loading";
      renderModelState();
    }
    let response = await api(`/v1/threads/${encodeURIComponent(threadId)}/runs`, {
      method: "POST", body: { stream: true, model: state.modelId }, signal: controller.signal, raw: true,
    });
    let frame = 0;
    const paint = () => {
      frame = 0;
      const stick = nearBottom();
      if (view.pendingReasoning) {
        const done = Boolean(view.pending);
        if (done && view.thinkingMs === null) view.thinkingMs = performance.now() - view.thinkingSince;
        setViewReasoning(view, view.pendingReasoning, !done, view.thinkingMs);
      }
      setViewText(view, view.pending, false);
      if (stick) scrollToBottom(true);
    };
    view.pending = "";
    view.pendingReasoning = "";
    view.thinkingMs = null;
    view.thinkingSince = null;
    while (response) {
      let waiting = null;
      for await (const { event, data } of readSSE(response)) {
        if (event === "thread.message.delta") {
          for (const part of data?.delta?.content || []) {
            if (part.type === "text") view.pending += part.text?.value ?? "";
            else if (part.type === "reasoning") {
              if (view.thinkingSince === null) view.thinkingSince = performance.now();
              view.pendingReasoning += part.text?.value ?? "";
            }
          }
          if (!frame) frame = requestAnimationFrame(paint);
        } else if (event === "thread.message.created") {
          // a turn that only called tools is no message (its calls show in the view as their step ends)
          const earlier = view.root.dataset.messageId ? data?.id !== view.root.dataset.messageId
            : Boolean(view.root.querySelector(".tool-calls"));
          if (data?.id && earlier) {
            // the model's next turn after tool calls: a new message
            if (frame) cancelAnimationFrame(frame);
            paint();
            view.body.classList.remove("cursor");
            view = messageView({ role: "assistant", content: [], status: "in_progress" });
            view.body.classList.add("cursor");
            view.pending = "";
            view.pendingReasoning = "";
            view.thinkingMs = null;
            view.thinkingSince = null;
            state.run.view = view;
            ui.messages.append(view.root);
          }
          if (data?.id) view.root.dataset.messageId = data.id;
        } else if (event === "thread.run.step.completed" && data?.type === "tool_calls") {
          // (a message_creation step is its message, shown already)
          const calls = data?.step_details?.tool_calls || [];
          if (frame) cancelAnimationFrame(frame);
          paint();
          view.root.append(toolCallsView(calls, new Map()));
        } else if (event === "thread.run.requires_action") {
          waiting = data;
        } else if (event === "thread.run.created") {
          if (data?.id) Object.assign(state.run, { runId: data.id, threadId });
          refreshThreadInfo(threadId); // the server titles new threads after the first message
        } else if (event === "thread.message.completed" || event === "thread.message.incomplete") {
          finalMessage = data;
        } else if (event === "thread.run.failed") {
          failure = data?.last_error?.message || "the run failed";
        } else if (event === "error") {
          // A stop of jan (server_shutdown) is said by the reply's own note ("Interrupted: the server stopped…"),
          // whether or not this event outran the closing connection; its text (how to resume over the API) is for
          // API clients, not a toast.
          if ((data?.code ?? data?.error?.code) !== "server_shutdown") {
            failure = data?.error?.message || data?.message || "the stream failed";
          }
        } else if (event === "done") {
          break;
        }
      }
      response = null;
      if (waiting) {
        if (frame) cancelAnimationFrame(frame);
        paint();
        const outputs = await askApproval(waiting, controller.signal);
        if (!outputs) {
          stopped = true;
          // a run waiting for approval holds its thread (the server refuses the next message): cancel it
          await cancelRun(threadId, waiting.id);
          break;
        }
        finalMessage = null;
        response = await api(`/v1/threads/${encodeURIComponent(threadId)}/runs/${encodeURIComponent(waiting.id)}/submit_tool_outputs`, {
          method: "POST", body: { tool_outputs: outputs, stream: true }, signal: controller.signal, raw: true,
        });
      }
    }
    if (frame) cancelAnimationFrame(frame);
    paint();
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else if (error.status === 404 && !view && state.thread) {
      // nothing was sent yet: the open thread was deleted elsewhere (another tab, the API)
      threadGone = state.thread.id;
      failure = rewind && !keep ? THREAD_GONE
        : `${THREAD_GONE} Your ${rewind ? "edit" : "message"} is kept: press Enter to send it in a new thread.`;
    } else if (error.code === "run_active" && !view) {
      // another tab (or client) has a run writing in this thread: nothing was sent, and nothing streams here
      failure = rewind ? `${THREAD_BUSY} Try again once that answer ends.`
        : `${THREAD_BUSY} Your message is kept: send it once that answer ends (reload to see it).`;
    } else failure = error.message;
  } finally {
    if (stopped && view) {
      // The server ends the run when it notices the stop, and until it has saved the reply the run holds the
      // thread (a new message would be refused): sending waits for the saved reply.
      saved = await savedReply(threadIdOf(view), view.root.dataset.messageId);
    }
    state.run = null;
    setStreaming(false);
    settle();
  }
  // the page may show another thread by now (switched mid-answer): the reply then belongs to none of its messages
  const shown = Boolean(view && state.thread && state.thread.id === threadIdOf(view));
  if (view) {
    view.body.classList.remove("cursor");
    if (view.pending !== undefined && view.pending !== view.text) setViewText(view, view.pending, false);
    if (view.pendingReasoning) {  // stopped or failed mid-thought: the thinking so far, no longer "Thinking…"
      const ms = view.thinkingMs ?? (view.thinkingSince === null ? null : performance.now() - view.thinkingSince);
      setViewReasoning(view, view.pendingReasoning, false, ms);
    }
    if (finalMessage) {
      if (shown) state.messages.push(finalMessage);
      if (finalMessage.id) view.root.dataset.messageId = finalMessage.id;
      const reasoning = messageReasoning(finalMessage);
      if (reasoning.text) setViewReasoning(view, reasoning.text, false, reasoning.ms ?? view.thinkingMs);
      setViewText(view, messageText(finalMessage), false);
      setViewStatus(view, finalMessage);
    } else if (stopped) {
      setViewStatus(view, { status: "incomplete", incomplete_details: { reason: "run_cancelled" } });
      // The server saves what it generated until it noticed the stop, which may be a few tokens
      // more than was painted: show the saved text (fetched above), so the page and the thread agree.
      if (saved) {
        if (shown) state.messages.push(saved);
        setViewText(view, messageText(saved), false);
        setViewStatus(view, saved);
      }
    } else if (failure) {
      setViewStatus(view, { status: "incomplete", incomplete_details: { reason: "run_failed" }, metadata: { error: failure } });
    }
    view.root.dataset.done = "true";
  } else if (failure) {
    // nothing was sent: give the text and images back (an edit's, where its thread is gone, to the prompt)
    if (!rewind) ui.prompt.value = ui.prompt.value || text;
    else if (threadGone && keep) ui.prompt.value = [ui.prompt.value, keep].filter(Boolean).join("\n");
    saveDraft();
    autosize();
    if (!state.attachments.length) {
      state.attachments = images;
      renderAttachments();
    }
  }
  if (threadGone) forgetThread(threadGone); // off the dead thread: the next Enter starts a new one with the kept text
  if (failure) toast(failure);
  if (shown && ui.messages.querySelector(".tool-calls")) {
    try {
      const threadId = state.thread.id;
      const messages = await fetchMessages(threadId); // tool results shown with their calls
      // meanwhile another thread may be open, or the next answer streaming into this one: leave those be
      if (!state.run && state.thread && state.thread.id === threadId) {
        state.messages = messages;
        renderMessages();
        const last = [...ui.messages.querySelectorAll("article.assistant")].pop();
        if (last) last.dataset.done = "true";
      }
    } catch {
      // the page keeps what it streamed
    }
  }
  loadThreads();
  loadModels(); // the run may have loaded its model (or failed to): the badge reads its state again
  // back to the prompt, unless the user went on elsewhere meanwhile (a title being typed, a settings field):
  // focus taken from there would end that edit half-typed
  const at = document.activeElement;
  if (!at || at === document.body || ui.composer.contains(at)) ui.prompt.focus();
  return Boolean(view);
}

// ------------------------------------------------------------------ edit and resend, regenerate

/**
 * Delete every message of ``threadId`` after ``messageId``, newest first (a failure halfway leaves the thread's
 * start whole, never a gap in it), through the messages API: what is replaced is gone from the thread's history
 * and from the prompt of its next run. ``messages``: the thread's messages as just read (else read here).
 * Resolves to the messages kept (``messageId``'s last); throws where the message is no longer in the thread.
 */
async function deleteAfter(threadId, messageId, messages = null) {
  const all = messages || await fetchMessages(threadId);
  const at = all.findIndex((m) => m.id === messageId);
  if (at === -1) throw new Error("That message no longer exists (deleted elsewhere).");
  for (const message of all.slice(at + 1).reverse()) {
    try {
      await api(`/v1/threads/${encodeURIComponent(threadId)}/messages/${encodeURIComponent(message.id)}`, { method: "DELETE" });
    } catch (error) {
      if (error.status !== 404) throw error; // (a 404: deleted meanwhile, as wanted)
    }
  }
  return all.slice(0, at + 1);
}

/** Edit and resend: the thread ends at the user's message ``messageId``, whose text becomes ``text`` (its images
 * stay), and is answered again (:func:`send`). Resolves to whether the answer started. */
function resendEdited(messageId, text) {
  return send({
    keep: text,
    rewind: async (threadId) => {
      const kept = await deleteAfter(threadId, messageId);
      const stored = kept[kept.length - 1];
      const others = Array.isArray(stored.content) ? stored.content.filter((part) => part?.type !== "text") : [];
      const content = others.length ? [...(text ? [{ type: "text", text }] : []), ...others] : text;
      try {
        kept[kept.length - 1] = await api(`/v1/threads/${encodeURIComponent(threadId)}/messages/${encodeURIComponent(messageId)}`, {
          method: "PATCH", body: { content },
        });
        keepEdit(threadId, null); // (sent: not to be opened again by the thread's next rendering)
      } catch (error) {
        if (error.status === 404) throw new Error("That message no longer exists (deleted elsewhere).");
        throw error;
      }
      return kept;
    },
  });
}

/** Regenerate: the replies after the thread's last message of the user are deleted, and it is answered again. */
function regenerate() {
  return send({
    rewind: async (threadId) => {
      const messages = await fetchMessages(threadId);
      const last = messages.map((m) => m.role === "user" && !m.metadata?.item).lastIndexOf(true);
      if (last === -1) throw new Error("There is no message of yours to answer again.");
      return deleteAfter(threadId, messages[last].id, messages);
    },
  });
}

/** Edit a message of the user's in place: Enter sends it (the answers after it are replaced), Shift+Enter is a new
 * line, Escape or Cancel leaves it as it was. ``text``: what to start from (else the message's own text). */
function openEditor(root, text = null, { focus = true } = {}) {
  for (const other of ui.messages.querySelectorAll("form.message-editor")) other.closeEditor?.();
  const messageId = root.dataset.messageId;
  const threadId = state.thread?.id;
  const message = state.messages.find((m) => m.id === messageId);
  const body = root.querySelector(".message-body");
  const actions = root.querySelector(".message-actions");
  const form = el("form", "message-editor");
  const box = el("textarea", "message-edit");
  box.dir = "auto";
  box.value = text ?? (message ? messageText(message) : body.textContent);
  box.setAttribute("aria-label", "Edit your message");
  box.rows = 2;
  // as tall as its text (as the prompt grows), up to half the window: an edit's lines are seen whole as typed
  const fit = () => {
    box.style.height = "auto";
    box.style.height = `${Math.min(box.scrollHeight + 2, window.innerHeight * 0.5)}px`;
  };
  box.addEventListener("input", () => {
    fit();
    keepEdit(threadId, { messageId, text: box.value });
  });
  const row = el("div", "row");
  const save = el("button", "btn primary small", "Send");
  save.type = "submit";
  const cancel = el("button", "btn small", "Cancel");
  cancel.type = "button";
  row.append(el("span", "muted small", "Enter to send · Esc to cancel"), cancel, save);
  form.append(box, row);
  root.classList.add("editing");
  body.hidden = true;
  if (actions) actions.hidden = true;
  root.insertBefore(form, body);
  const close = ({ focus = true } = {}) => {
    keepEdit(threadId, null);
    form.remove();
    body.hidden = false;
    if (actions) actions.hidden = false;
    root.classList.remove("editing");
    if (focus) root.querySelector(".edit-message")?.focus();
  };
  form.closeEditor = () => close({ focus: false });
  cancel.addEventListener("click", () => close());
  box.addEventListener("keydown", (event) => {
    if (event.isComposing) return;
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation(); // (the page's Escape would stop an answer or close a panel)
      close();
    } else if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const edited = box.value.trim();
    const images = message ? messageImages(message).length : 0;
    if (!edited && !images) {
      toast("Type the message to send, or press Esc to leave it as it was.");
      return;
    }
    if (state.run) {
      toast("An answer is being written: stop it (Esc) or wait for it, then send the edit.");
      return;
    }
    save.disabled = cancel.disabled = box.readOnly = true;
    if (await resendEdited(messageId, edited)) return; // (the thread was shown again, without this editor)
    if (form.isConnected) {
      save.disabled = cancel.disabled = box.readOnly = false;
      box.focus();
    }
    // it failed: the page shows the thread as stored now (some replies may be deleted already), the edit kept
    if (!state.run && state.thread && state.thread.id === threadId) {
      try {
        state.messages = await fetchMessages(threadId);
      } catch {
        return;
      }
      if (state.run || !state.thread || state.thread.id !== threadId) return;
      renderMessages();
      const again = ui.messages.querySelector(`article[data-message-id="${CSS.escape(messageId)}"]`);
      if (again && !again.querySelector("form.message-editor")) openEditor(again, box.value);
      else again?.querySelector("textarea.message-edit")?.focus();
    }
  });
  fit();
  if (focus) {
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }
}

function threadIdOf(view) {
  return view.threadId || (state.thread && state.thread.id) || "";
}

/**
 * A run of this thread left waiting for approval (its page was closed or reloaded while the approval box
 * showed) holds the thread: the server refuses a new message until it ends. Sending a new message moves on
 * from it, so it is cancelled; a run still generating (another client's) is left alone, and the send says so.
 */
async function releaseWaitingRun(threadId) {
  let last = null;
  try {
    last = (await api(`/v1/threads/${encodeURIComponent(threadId)}/runs?limit=1`))?.data?.[0];
  } catch {
    return; // the thread's runs cannot be listed: the send itself says what holds the thread
  }
  if (last && last.status === "requires_action") await cancelRun(threadId, last.id);
}

/** Cancel a run (one left waiting for approval), best effort: one already over holds nothing. */
/** "Answer now": the run's model turn stops thinking at its next token and answers (jan's run control). */
async function endThinking(button) {
  const run = state.run;
  if (!run?.runId) return;
  button.disabled = true;
  button.textContent = "Answering…";
  try {
    const result = await api(`/v1/threads/${encodeURIComponent(run.threadId)}/runs/${encodeURIComponent(run.runId)}/control`, {
      method: "POST", body: { action: "reasoning_end" },
    });
    if (!result?.success) button.hidden = true; // the thinking had ended already, or the model cannot be told
  } catch (error) {
    button.hidden = true;
    toast(`Could not end the thinking: ${error.message}`);
  }
}

async function cancelRun(threadId, runId) {
  try {
    await api(`/v1/threads/${encodeURIComponent(threadId)}/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
  } catch {
    // already cancelled or finished
  }
}

/** The reply as saved once its run ended (status no longer in_progress), or null if it cannot be read. */
async function savedReply(threadId, messageId) {
  if (!threadId || !messageId) return null;
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const message = await api(`/v1/threads/${encodeURIComponent(threadId)}/messages/${encodeURIComponent(messageId)}`);
      if (message.status !== "in_progress") return message;
    } catch {
      return null;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return null;
}

async function refreshThreadInfo(threadId) {
  try {
    const thread = await api(`/v1/threads/${encodeURIComponent(threadId)}`);
    if (state.thread && state.thread.id === threadId) {
      state.thread = thread;
      renderTitle();
    }
    const i = state.threads.findIndex((t) => t.id === threadId);
    if (i !== -1) state.threads[i] = thread;
    renderThreads();
  } catch {
    // the list refreshes after the answer anyway
  }
}

// ------------------------------------------------------------------ settings

function currentSettings() {
  if (!state.thread) return state.draftSettings;
  const entry = threadAssistant(state.thread) || {};
  const params = entry.model?.parameters || {};
  return {
    instructions: entry.instructions || "",
    temperature: typeof params.temperature === "number" ? params.temperature : null,
    max_tokens: typeof params.max_tokens === "number" ? params.max_tokens : null,
  };
}

function fillSettings() {
  const s = currentSettings();
  ui.setInstructions.value = s.instructions;
  ui.setTemperature.value = s.temperature === null ? "" : String(s.temperature);
  ui.setTemperatureRange.value = s.temperature === null ? "0.7" : String(s.temperature);
  ui.setMaxTokens.value = s.max_tokens === null ? "" : String(s.max_tokens);
  const defaults = state.models.find((m) => m.id === state.modelId)?.parameters || {};
  ui.setTemperature.placeholder = defaults.temperature !== undefined ? `default (${defaults.temperature})` : "default";
  ui.setMaxTokens.placeholder = defaults.max_tokens !== undefined ? `default (${defaults.max_tokens})` : "default";
  ui.settingsStatus.textContent = "";
}

function readSettingsForm() {
  const number = (input, parse) => {
    const raw = input.value.trim();
    if (raw === "") return null;
    const value = parse(raw);
    return Number.isFinite(value) ? value : null;
  };
  return {
    instructions: ui.setInstructions.value,
    temperature: number(ui.setTemperature, parseFloat),
    max_tokens: number(ui.setMaxTokens, (v) => parseInt(v, 10)),
  };
}

async function saveSettings() {
  if (!ui.settingsForm.reportValidity()) return;
  const settings = readSettingsForm();
  if (!state.thread) {
    state.draftSettings = settings;
    ui.settingsStatus.textContent = "Saved; applies to this new thread.";
    return;
  }
  await patchThreadAssistant((entry) => assistantEntry(state.modelId || entry.model?.id, settings, entry));
  ui.settingsStatus.textContent = "Saved";
}

/** Read the thread fresh, change its first assistant entry, write it back. */
async function patchThreadAssistant(change) {
  const id = state.thread.id;
  try {
    const fresh = await api(`/v1/threads/${encodeURIComponent(id)}`);
    const assistants = Array.isArray(fresh.assistants) ? [...fresh.assistants] : [];
    assistants[0] = change(assistants[0] || { ...DEFAULT_ASSISTANT });
    const updated = await api(`/v1/threads/${encodeURIComponent(id)}`, { method: "PATCH", body: { assistants } });
    if (state.thread && state.thread.id === id) state.thread = updated;
  } catch (error) {
    if (error.status === 404 && !state.run) {
      toast(THREAD_GONE);
      forgetThread(id);
    } else toast(`Could not save the thread settings: ${error.message}`);
    throw error;
  }
}

async function loadMcpServers() {
  let servers = [];
  try {
    servers = (await api("/v1/mcp/servers")).data || [];
  } catch {
    servers = [];
  }
  ui.mcpList.replaceChildren();
  for (const server of servers) {
    const li = el("li", "mcp-server");
    li.dataset.server = server.name;
    const label = el("div", "mcp-name");
    label.append(el("strong", "", server.name), " ", el("span", "muted small", `${server.transport} · ${server.state}${server.tools?.length ? ` · ${server.tools.length} tools` : ""}`));
    const button = el("button", "btn small", server.enabled ? "Disable" : "Enable");
    button.type = "button";
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`/v1/mcp/servers/${encodeURIComponent(server.name)}/${server.enabled ? "disable" : "enable"}`, { method: "POST" });
      } catch (error) {
        toast(`Could not change ${server.name}: ${error.message}`);
      }
      loadMcpServers();
    });
    li.append(label, button);
    if (server.error) li.append(el("div", "muted small", server.error));
    ui.mcpList.append(li);
  }
  ui.mcpEmpty.hidden = servers.length > 0;
}

function setSettingsOpen(open) {
  ui.settings.hidden = !open;
  ui.toggleSettings.setAttribute("aria-expanded", String(open));
  if (open) {
    fillSettings();
    loadMcpServers();
    ui.setInstructions.focus();
  }
}

// ------------------------------------------------------------------ models

async function loadModels() {
  try {
    const page = await api("/v1/models");
    state.models = page.data || [];
  } catch (error) {
    if (error.status !== 401 && error.code !== OFFLINE) toast(`Could not list models: ${error.message}`); // 401, down: the page says so
    if (error.code === OFFLINE) return; // keep the list it had: the server is away, not its models
    state.models = [];
  }
  // an embedding model is never the one a message goes to: the server refuses it, and the first message failed
  const chat = chatModels();
  if (!chat.some((m) => m.id === state.modelId)) {
    const ready = chat.find((m) => m.state === "ready");
    state.modelId = (ready || chat[0] || {}).id || "";
  }
  renderModels();
}

/** Whether a model sees images: /v1/models lists "vision" among its capabilities (it has a projector with a
 * vision encoder); a listing without capabilities (an older server) is taken as able (the server refuses if not). */
function canSee(modelId = state.modelId) {
  const model = state.models.find((m) => m.id === modelId);
  return Boolean(model) && (!Array.isArray(model.capabilities) || model.capabilities.includes("vision"));
}

/** The composer offers images only for a model that sees them: its attach button, and the hint's words. */
function renderAttach() {
  const see = canSee();
  ui.attach.hidden = !see;
  ui.composerHint.textContent = `Enter to send · Shift+Enter for a new line · Esc to stop${see ? " · paste or attach images" : ""}`;
}

/** Whether a model can answer in a chat: /v1/models lists its capabilities (an embedding model has no
 * "completion"); a listing without them (an older server) is taken as able. */
function canChat(model) {
  return !Array.isArray(model.capabilities) || model.capabilities.includes("completion");
}

/** The models the chat picker offers (the Models dialog lists them all, to start, stop and import). */
function chatModels() {
  return state.models.filter(canChat);
}

function modelLabel(model) {
  return model.name && model.name !== model.id ? `${model.name} (${model.id})` : model.id;
}

function renderModels() {
  const select = ui.modelSelect;
  const chat = chatModels();
  select.replaceChildren();
  if (!chat.length) {
    const option = el("option", "", state.keyNeeded ? "API key needed — enter it to see the models"
      : state.models.length ? "No chat model — open Models to add one" : "No models — open Models to add one");
    option.value = "";
    select.append(option);
    select.disabled = true;
  } else {
    select.disabled = false;
    for (const model of chat) {
      const option = el("option", "", `${modelLabel(model)}${model.state && model.state !== "ready" ? ` — ${model.state}` : ""}`);
      option.value = model.id;
      select.append(option);
    }
    select.value = state.modelId;
  }
  // a first visit with no model: the welcome says how to get one, not "pick a model above" from an empty list
  const none = !chat.length && !state.keyNeeded;
  ui.emptyHint.textContent = none ? (state.models.length ? "There is no chat model yet (embedding models only): add one to chat with."
    : "There is no model yet: add one to chat with.")
    : "Pick a model above, type a message and press Enter.";
  ui.emptyOpenModels.hidden = !none;
  renderModelState();
  renderModelList();
}

function renderModelState() {
  renderAttach();
  if (!ui.offline.hidden) {
    // the server is away: what the page last read of the model may no longer hold, and nothing can be started
    ui.modelState.textContent = "offline";
    ui.modelState.className = "badge unreachable";
    ui.modelState.hidden = false;
    ui.modelState.title = UNREACHABLE;
    ui.modelToggle.hidden = true;
    return;
  }
  const model = state.models.find((m) => m.id === state.modelId);
  const s = model ? model.state || "unknown" : "";
  ui.modelState.textContent = s;
  ui.modelState.className = `badge ${s}`;
  ui.modelState.hidden = !model;
  ui.modelState.title = model && model.error ? model.error : "";
  ui.modelToggle.hidden = !model;
  if (model) {
    const verb = s === "ready" ? "Stop" : s === "loading" ? "Loading…" : "Start";
    ui.modelToggle.textContent = s === "loading" ? verb : `${verb} model`;
    ui.modelToggle.dataset.action = s === "ready" ? "stop" : "start";
    ui.modelToggle.disabled = s === "loading" || s === "unavailable";
    ui.modelToggle.setAttribute("aria-label", `${verb} model ${model.id}`);
  }
}

function selectModel(modelId, { save = true } = {}) {
  state.modelId = modelId;
  localStorage.setItem(MODEL_STORAGE, modelId);
  ui.modelSelect.value = modelId;
  renderModelState();
  if (save && state.thread && !state.run) {
    patchThreadAssistant((entry) => {
      const next = { ...DEFAULT_ASSISTANT, ...entry };
      next.model = { settings: {}, parameters: {}, engine: "llama.cpp", ...(entry.model || {}), id: modelId };
      return next;
    }).catch(() => {});
  }
}

async function toggleModel(modelId, button) {
  const model = state.models.find((m) => m.id === modelId);
  if (!model) return;
  const action = model.state === "ready" ? "stop" : "start";
  model.state = action === "start" ? "loading" : model.state;
  renderModels();
  if (button) button.disabled = true;
  try {
    const updated = await api(`/v1/models/${encodeURIComponent(modelId)}/${action}`, { method: "POST" });
    Object.assign(model, updated);
    if (updated.state === "failed") toast(`Model ${modelId} failed to load: ${updated.error || "unknown error"}`);
  } catch (error) {
    toast(`Could not ${action} ${modelId}: ${error.message}`);
  }
  await loadModels();
}

function renderModelList() {
  ui.modelList.replaceChildren();
  if (!state.models.length) {
    ui.modelList.append(el("li", "muted", "No models yet."));
    return;
  }
  for (const model of state.models) {
    const li = el("li");
    li.dataset.modelId = model.id;
    const name = el("span", "model-name", model.name || model.id);
    if (model.name && model.name !== model.id) name.append(el("small", "", model.id));
    const badge = el("span", `badge ${model.state || ""}`, model.state || "unknown");
    const toggle = el("button", "btn small", model.state === "ready" ? "Stop" : model.state === "loading" ? "Loading…" : "Start");
    toggle.type = "button";
    toggle.disabled = model.state === "loading";
    toggle.setAttribute("aria-label", `${toggle.textContent} model ${model.id}`);
    toggle.addEventListener("click", () => toggleModel(model.id, toggle));
    const chats = canChat(model);
    const use = el("button", "btn small", model.id === state.modelId ? "In use" : chats ? "Use" : "Embeddings only");
    use.type = "button";
    use.disabled = model.id === state.modelId || !chats;
    use.setAttribute("aria-label", chats ? `Use model ${model.id}` : `Model ${model.id} makes embeddings only: it cannot chat`);
    use.addEventListener("click", () => { selectModel(model.id); renderModelList(); });
    li.append(name, badge, toggle, use);
    ui.modelList.append(li);
  }
}

async function importModel() {
  const path = ui.importPath.value.trim();
  if (!path) return;
  const body = { path };
  if (ui.importId.value.trim()) body.id = ui.importId.value.trim();
  ui.importStatus.textContent = "Importing…";
  try {
    const model = await api("/v1/models", { method: "POST", body });
    ui.importStatus.textContent = `Imported ${model.id}.`;
    ui.importPath.value = "";
    ui.importId.value = "";
    await loadModels();
    if (model.id) selectModel(model.id);
    renderModelList();
  } catch (error) {
    ui.importStatus.textContent = `Import failed: ${error.message}`;
  }
}

function showPull(progress) {
  ui.pullBox.hidden = false;
  const done = Number(progress.downloaded_bytes) || 0;
  const total = Number(progress.total_bytes) || 0;
  if (total > 0) {
    ui.pullProgress.max = total;
    ui.pullProgress.value = Math.min(done, total);
  } else {
    ui.pullProgress.removeAttribute("value"); // indeterminate
  }
  const pct = total > 0 ? ` (${Math.floor((100 * done) / total)}%)` : "";
  const stateText = progress.state || "downloading";
  ui.pullStatus.textContent = `${stateText}: ${formatBytes(done)}${total ? ` of ${formatBytes(total)}` : ""}${pct}`;
}

async function pullModel() {
  const url = ui.pullUrl.value.trim();
  if (!url || state.pull) return;
  const body = { url };
  if (ui.pullId.value.trim()) body.id = ui.pullId.value.trim();
  const controller = new AbortController();
  state.pull = { id: body.id || null, controller, cancelled: false };
  ui.pullGo.disabled = true;
  ui.pullCancel.hidden = false;
  showPull({ state: "queued", downloaded_bytes: 0, total_bytes: 0 });
  let last = null;
  let failure = null;
  try {
    const response = await api("/v1/models/pull", { method: "POST", body, signal: controller.signal, raw: true });
    const type = response.headers.get("Content-Type") || "";
    if (!type.includes("event-stream")) {
      last = await response.json();
      showPull(last);
    } else {
      for await (const { event, data } of readSSE(response)) {
        if (event === "done") break;
        if (event === "error") {
          failure = data?.error?.message || "the download failed";
          break;
        }
        if (data && typeof data === "object") {
          last = data;
          if (data.id && state.pull) state.pull.id = state.pull.id || data.model_id || data.id;
          showPull(data);
          if (data.state === "failed") failure = data.error || "the download failed";
        }
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") failure = error.message;
  }
  const cancelled = state.pull && state.pull.cancelled;
  state.pull = null;
  ui.pullGo.disabled = false;
  ui.pullCancel.hidden = true;
  if (cancelled || (last && last.state === "cancelled")) {
    ui.pullStatus.textContent = "Download cancelled.";
  } else if (failure) {
    ui.pullStatus.textContent = `Download failed: ${failure}`;
  } else if (last && last.state === "completed") {
    ui.pullProgress.value = ui.pullProgress.max;
    ui.pullStatus.textContent = `Downloaded ${last.model_id || last.id}; it is in the list above.`;
    ui.pullUrl.value = "";
    ui.pullId.value = "";
  }
  await loadModels();
}

async function cancelPull() {
  const pull = state.pull;
  if (!pull) return;
  pull.cancelled = true;
  ui.pullCancel.disabled = true;
  const id = pull.id || deriveModelId(ui.pullUrl.value.trim());
  try {
    // the progress stream then ends by itself with state "cancelled"
    if (id) await api(`/v1/downloads/${encodeURIComponent(id)}`, { method: "DELETE" });
    else pull.controller.abort();
  } catch (error) {
    if (error.status !== 404) toast(`Could not cancel: ${error.message}`);
    pull.controller.abort(); // stop watching (closing the stream alone does not cancel a download)
  } finally {
    ui.pullCancel.disabled = false;
  }
  setTimeout(() => { if (state.pull === pull) pull.controller.abort(); }, 5000);
}

/** The id the server gives a download without an explicit id (the file name, slugified). */
function deriveModelId(url) {
  const file = (url.split(/[?#]/)[0].split("/").pop() || "").replace(/\.[^.]*$/, "");
  return file.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+|[-.]+$/g, "");
}

function openModels() {
  renderModelList();
  ui.modelsDialog.showModal();
  (ui.modelList.querySelector("button") || ui.importPath).focus();
  loadModels();
}

// ------------------------------------------------------------------ composer

function autosize() {
  ui.prompt.style.height = "auto";
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, window.innerHeight * 0.4)}px`;
}

function anyDialogOpen() {
  return [ui.keyDialog, ui.modelsDialog, ui.confirmDialog].some((d) => d.open);
}

function bind() {
  ui.composer.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ui.prompt.addEventListener("input", () => { autosize(); saveDraft(); });
  ui.attach.addEventListener("click", () => ui.attachInput.click());
  ui.attachInput.addEventListener("change", async () => {
    await addImages([...ui.attachInput.files]);
    ui.attachInput.value = "";
    ui.prompt.focus();
  });
  ui.prompt.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      event.preventDefault();
      addImages(files);
    }
  });
  ui.composer.addEventListener("dragover", (event) => event.preventDefault());
  ui.composer.addEventListener("drop", (event) => {
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) {
      event.preventDefault();
      addImages(files);
    }
  });
  ui.stop.addEventListener("click", () => { stopRun(); ui.prompt.focus(); });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.isComposing && !anyDialogOpen()) {
      if (state.run) {
        event.preventDefault();
        stopRun();
        ui.prompt.focus();
      } else if (!ui.settings.hidden) {
        setSettingsOpen(false);
        ui.toggleSettings.focus();
      } else if (isNarrow() && sidebarOpen()) {
        setSidebar(false);
        ui.toggleSidebar.focus();
      }
    } else if (event.key.toLowerCase() === "o" && (event.ctrlKey || event.metaKey) && event.shiftKey) {
      event.preventDefault();
      newThread();
    }
  });

  ui.toggleSidebar.addEventListener("click", () => setSidebar(!sidebarOpen(), { focus: true }));
  ui.scrim.addEventListener("click", () => setSidebar(false));
  NARROW.addEventListener("change", () => setSidebar(!isNarrow()));
  ui.newThread.addEventListener("click", () => { newThread(); closeSidebarIfNarrow(); });

  ui.modelSelect.addEventListener("change", () => selectModel(ui.modelSelect.value));
  ui.modelToggle.addEventListener("click", () => toggleModel(state.modelId, ui.modelToggle));

  ui.toggleSettings.addEventListener("click", () => setSettingsOpen(ui.settings.hidden));
  ui.closeSettings.addEventListener("click", () => { setSettingsOpen(false); ui.toggleSettings.focus(); });
  ui.settingsForm.addEventListener("submit", (event) => { event.preventDefault(); saveSettings().catch(() => {}); });
  ui.setTemperatureRange.addEventListener("input", () => { ui.setTemperature.value = ui.setTemperatureRange.value; });
  ui.setTemperature.addEventListener("input", () => {
    if (ui.setTemperature.value !== "") ui.setTemperatureRange.value = ui.setTemperature.value;
  });

  ui.openModels.addEventListener("click", openModels);
  ui.emptyOpenModels.addEventListener("click", openModels);
  ui.modelsClose.addEventListener("click", () => ui.modelsDialog.close());
  ui.modelsDialog.addEventListener("close", () => ui.openModels.focus());
  ui.importForm.addEventListener("submit", (event) => { event.preventDefault(); importModel(); });
  ui.pullForm.addEventListener("submit", (event) => { event.preventDefault(); pullModel(); });
  ui.pullCancel.addEventListener("click", cancelPull);

  const enterKey = (message) => askForKey(message).then(() => refreshAll()).catch(() => {});
  ui.openKey.addEventListener("click", () => {
    enterKey(state.apiKey ? "Change the API key this page sends." : "Set the API key this page sends.");
  });
  ui.keyNeededOpen.addEventListener("click", () => enterKey("This server needs an API key."));
  ui.keyForget.addEventListener("click", () => {
    setApiKey("");
    ui.keyInput.value = "";
    ui.keyForget.hidden = true;
    ui.keyMessage.textContent = "Key forgotten.";
    ui.keyInput.focus();
  });

  window.addEventListener("hashchange", () => {
    if (location.hash && !location.hash.startsWith("#thread=")) return; // an in-page anchor
    const id = routeThreadId();
    if (id && (!state.thread || state.thread.id !== id)) openThread(id);
    else if (!id && state.thread) newThread();
  });
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    ui.prompt.focus();
  });
}

async function refreshAll() {
  await Promise.all([loadModels(), loadThreads()]);
}

async function init() {
  bind();
  setSidebar(!isNarrow());
  renderTitle();
  updateEmptyState();
  await refreshAll();
  const id = routeThreadId();
  if (id) await openThread(id);
  else { showDraft(); fillSettings(); }
  ui.prompt.focus();
  document.body.dataset.ready = "true";
  // keep model states fresh (a model loading in the background, another client stopping one)
  setInterval(() => {
    if (ui.offline.hidden && !document.hidden && !state.run && !anyDialogOpen() && document.activeElement !== ui.modelSelect) loadModels();
  }, 15000);
  // notice a server gone away while the page sits idle (nothing else would ask it): /health is open and cheap;
  // once it fails, setOffline's probe takes over and brings the page back when the server is
  let beating = false; // one check at a time: a server that hangs must not pile up requests
  setInterval(async () => {
    if (beating || !ui.offline.hidden || document.hidden) return;
    beating = true;
    try {
      // a model loading (at the server's start, for another client) is read again soon, not in 15 s:
      // reading the models is then the check that the server is there (api() flags it away if not)
      const model = state.models.find((m) => m.id === state.modelId);
      if (model && model.state === "loading" && !state.run && !anyDialogOpen() && document.activeElement !== ui.modelSelect) {
        await loadModels();
        return;
      }
      await fetch("/health", { cache: "no-store", signal: AbortSignal.timeout(30000) });
    } catch (error) {
      // refused or broken: away. A slow answer (a busy machine) is not taken for a server gone.
      if (error.name !== "TimeoutError") setOffline(true);
    } finally {
      beating = false;
    }
  }, HEARTBEAT_MS);
}

init();
