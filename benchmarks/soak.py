"""Soak: a long mixed load with clients that leave at random moments, and what must come back to its baseline.

Starts ``jan serve`` (a subprocess; ``--in-process`` runs it in this process's other thread instead, to count its
asyncio tasks and to diff ``tracemalloc`` snapshots) over a fresh data folder with stories260K, all-MiniLM-L6-v2
and the tiny random vision pair, and drives rounds of mixed requests over raw HTTP/1.1 sockets: every dialect
(OpenAI chat / completions / embeddings / responses / conversations, Anthropic messages, Ollama chat / generate /
embed, llama-server's native routes), streamed and not, tool calls, images, threads and runs, files, background
responses and runs cancelled, more requests at once than there are slots. Each request's client either reads
the whole answer or leaves: before the body, mid-body, right after sending (while queued), right after the
answer's headers, mid-stream; half of those leaving reset the connection (RST), half close it (FIN).

After each round (once the server is idle again: no slot busy, nothing queued) it prints what must return to its
baseline: open file descriptors, threads, asyncio tasks (in-process only), resident memory, temporary files and
records left ``queued``/``in_progress`` in the data folder, and any 5xx answer or traceback in the log. A steady
growth per round after the warm-up rounds is a leak; ``--in-process --tracemalloc`` names the lines that grew.

    python benchmarks/soak.py --rounds 20 --requests 80 --concurrency 10
    python benchmarks/soak.py --in-process --tracemalloc --rounds 12
    python benchmarks/soak.py --shutdown        # then SIGTERM/SIGINT with requests in flight, several times

Models from ``JAN_TEST_MODELS`` or ``../shared/models``; the photo from ``../shared/media``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from jan.testing.gguf_models import models_dir  # noqa: E402
from jan.testing.server import free_port  # noqa: E402

HOST = "127.0.0.1"
LEAVE_MODES = ("before_body", "mid_body", "queued", "after_headers", "mid_stream")


# -- a raw HTTP/1.1 client that can leave at any moment --------------------------------------------------------
class Answer:
    def __init__(self, status: int | None, body: bytes, left: str | None):
        self.status, self.body, self.left = status, body, left

    def json(self):
        try:
            head, _, rest = self.body.partition(b"\r\n\r\n")
            return json.loads(_dechunk(head, rest))
        except ValueError:
            return None


def _dechunk(head: bytes, rest: bytes) -> bytes:
    if b"transfer-encoding: chunked" not in head.lower():
        return rest
    out, pos = b"", 0
    while True:
        end = rest.find(b"\r\n", pos)
        if end < 0:
            return out
        size = int(rest[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return out
        out += rest[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


async def http(port: int, method: str, path: str, body: bytes | None = None, *, ctype: str = "application/json",
               leave: str | None = None, rng: random.Random | None = None, headers: dict | None = None) -> Answer:
    """One request on a connection of its own; ``leave`` (one of :data:`LEAVE_MODES`, None: read the whole answer)
    is when the client goes away, by a reset or a close (half each)."""
    rng = rng or random.Random()
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:  # (a server stopping: the shutdown checks)
        return Answer(None, b"", "refused")
    body = body or b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n")
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    head = head.encode() + b"\r\n"

    def go(reset: bool):
        if reset:
            writer.transport.abort()
        else:
            writer.close()

    reset = rng.random() < 0.5
    try:
        if leave == "before_body" and body:
            writer.write(head)
            await writer.drain()
            await asyncio.sleep(rng.random() * 0.05)
            go(reset)
            return Answer(None, b"", leave)
        if leave == "mid_body" and len(body) > 1:
            writer.write(head + body[:rng.randrange(1, len(body))])
            await writer.drain()
            await asyncio.sleep(rng.random() * 0.05)
            go(reset)
            return Answer(None, b"", leave)
        writer.write(head + body)
        await writer.drain()
        if leave == "queued":
            await asyncio.sleep(rng.random() * 0.02)
            go(reset)
            return Answer(None, b"", leave)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await asyncio.wait_for(reader.read(65536), 300)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
        if leave == "after_headers":
            go(reset)
            return Answer(status, data, leave)
        if leave == "mid_stream":
            for _ in range(rng.randrange(1, 6)):
                chunk = await asyncio.wait_for(reader.read(rng.randrange(16, 400)), 300)
                if not chunk:
                    break
                data += chunk
            go(reset)
            return Answer(status, data, leave)
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 300)
            if not chunk:
                break
            data += chunk
        writer.close()
        return Answer(status, data, None)
    except (ConnectionError, OSError):
        writer.transport.abort()
        return Answer(None, b"", leave or "reset_by_server")


# -- the mixed load ------------------------------------------------------------------------------------------------
class Load:
    def __init__(self, port: int, image_uri: str, rng: random.Random):
        self.port, self.image_uri, self.rng = port, image_uri, rng
        self.statuses: collections.Counter = collections.Counter()
        self.fives: list[str] = []
        self.thread_ids: list[str] = []
        self.file_ids: list[str] = []
        self.conversations: list[str] = []

    def leave(self) -> str | None:
        return self.rng.choice(LEAVE_MODES) if self.rng.random() < 0.45 else None

    async def req(self, kind: str, method: str, path: str, body=None, *, leave=None, raw: bytes | None = None,
                  ctype: str = "application/json") -> Answer:
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        ans = await http(self.port, method, path, payload, ctype=ctype, leave=leave, rng=self.rng)
        self.statuses[(kind, f"{ans.status or '-'}" + (f"/{ans.left}" if ans.left else ""))] += 1
        if ans.status and ans.status >= 500:
            self.fives.append(f"{kind} {method} {path} -> {ans.status}: {ans.body[-300:]!r}")
        return ans

    #: Long generations (the shutdown checks: requests still generating when the signal comes).
    long = False

    def n(self) -> int:
        return self.rng.randrange(300, 600) if self.long else self.rng.randrange(1, 40)

    def stream(self) -> bool:
        return self.rng.random() < 0.5

    def messages(self, image: bool = False) -> list:
        if image:
            return [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                  {"type": "image_url", "image_url": {"url": self.image_uri}}]}]
        return [{"role": "user", "content": self.rng.choice(["Once upon a time", "Tell me a story", "Hi"])}]

    TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}},
                                                               "required": ["city"]}}}]

    # each kind: one request (or a short chain) with a random leave mode
    async def chat(self):
        await self.req("chat", "POST", "/v1/chat/completions",
                       {"model": "stories260K", "messages": self.messages(), "max_tokens": self.n(),
                        "stream": self.stream(), "ignore_eos": self.long}, leave=self.leave())

    async def chat_tools(self):
        await self.req("chat_tools", "POST", "/v1/chat/completions",
                       {"model": "stories260K", "messages": self.messages(), "max_tokens": 60, "tools": self.TOOLS,
                        "tool_choice": "required", "stream": self.stream()}, leave=self.leave())

    async def chat_image(self):
        await self.req("chat_image", "POST", "/v1/chat/completions",
                       {"model": "vision-chat", "messages": self.messages(image=True), "max_tokens": self.n(),
                        "stream": self.stream()}, leave=self.leave())

    async def completions(self):
        await self.req("completions", "POST", "/v1/completions",
                       {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": self.n(),
                        "stream": self.stream(), "n": self.rng.choice([1, 1, 2]), "ignore_eos": self.long},
                       leave=self.leave())

    async def embeddings(self):
        await self.req("embeddings", "POST", "/v1/embeddings",
                       {"model": "all-MiniLM-L6-v2-f32", "input": ["hello world"] * self.rng.randrange(1, 8)},
                       leave=self.leave())

    async def responses(self):
        await self.req("responses", "POST", "/v1/responses",
                       {"model": "stories260K", "input": "Once upon a time", "max_output_tokens": self.n() + 16,
                        "stream": self.stream(), "store": self.rng.random() < 0.7}, leave=self.leave())

    async def responses_cancel(self):
        ans = await self.req("responses_bg", "POST", "/v1/responses",
                             {"model": "stories260K", "input": "Once upon a time", "max_output_tokens": 200,
                              "background": True, "store": True})
        body = ans.json()
        if isinstance(body, dict) and "id" in body:
            await asyncio.sleep(self.rng.random() * 0.3)
            await self.req("responses_cancel", "POST", f"/v1/responses/{body['id']}/cancel", {},
                           leave=self.rng.choice([None, None, "queued"]))

    async def responses_tools(self):
        tools = [{"type": "function", "name": "get_weather", "parameters": self.TOOLS[0]["function"]["parameters"]}]
        await self.req("responses_tools", "POST", "/v1/responses",
                       {"model": "stories260K", "input": "weather?", "tools": tools, "tool_choice": "required",
                        "max_output_tokens": 60, "stream": self.stream()}, leave=self.leave())

    async def conversation(self):
        if not self.conversations or self.rng.random() < 0.2:
            ans = await self.req("conversation_new", "POST", "/v1/conversations",
                                 {"items": [{"type": "message", "role": "user", "content": "Hi"}]})
            body = ans.json()
            if isinstance(body, dict) and "id" in body:
                self.conversations.append(body["id"])
            return
        conv = self.rng.choice(self.conversations)
        await self.req("conversation_turn", "POST", "/v1/responses",
                       {"model": "stories260K", "input": "and then?", "conversation": conv,
                        "max_output_tokens": self.n() + 16, "stream": self.stream()}, leave=self.leave())

    async def anthropic(self):
        body = {"model": "stories260K", "max_tokens": self.n(), "messages": [{"role": "user", "content": "Hello"}],
                "stream": self.stream()}
        if self.rng.random() < 0.3:
            body["tools"] = [{"name": "get_weather", "input_schema": self.TOOLS[0]["function"]["parameters"]}]
            body["tool_choice"] = {"type": "any"}
            body["max_tokens"] = 60
        await self.req("anthropic", "POST", "/v1/messages", body, leave=self.leave())

    async def anthropic_image(self):
        data = self.image_uri.split(",", 1)[1]
        await self.req("anthropic_image", "POST", "/v1/messages",
                       {"model": "vision-chat", "max_tokens": self.n(), "stream": self.stream(),
                        "messages": [{"role": "user", "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": data}},
                            {"type": "text", "text": "What is it?"}]}]}, leave=self.leave())

    async def ollama(self):
        which = self.rng.choice(["chat", "generate", "embed", "image"])
        if which == "chat":
            await self.req("ollama_chat", "POST", "/api/chat",
                           {"model": "stories260K", "messages": self.messages(), "stream": self.stream(),
                            "options": {"num_predict": self.n()}}, leave=self.leave())
        elif which == "generate":
            await self.req("ollama_generate", "POST", "/api/generate",
                           {"model": "stories260K", "prompt": "Once", "stream": self.stream(),
                            "options": {"num_predict": self.n()}}, leave=self.leave())
        elif which == "embed":
            await self.req("ollama_embed", "POST", "/api/embed",
                           {"model": "all-MiniLM-L6-v2-f32", "input": ["a", "b"]}, leave=self.leave())
        else:
            await self.req("ollama_image", "POST", "/api/chat",
                           {"model": "vision-chat", "stream": self.stream(), "options": {"num_predict": self.n()},
                            "messages": [{"role": "user", "content": "what?",
                                          "images": [self.image_uri.split(",", 1)[1]]}]}, leave=self.leave())

    async def llamacpp(self):
        which = self.rng.choice(["completion", "embedding", "tokenize", "slots", "infill", "props"])
        if which == "completion":
            await self.req("llama_completion", "POST", "/completion",
                           {"model": "stories260K", "prompt": "Once", "n_predict": self.n(), "stream": self.stream()},
                           leave=self.leave())
        elif which == "embedding":
            await self.req("llama_embedding", "POST", "/embedding",
                           {"model": "all-MiniLM-L6-v2-f32", "content": "hello"}, leave=self.leave())
        elif which == "tokenize":
            await self.req("llama_tokenize", "POST", "/tokenize",
                           {"model": "stories260K", "content": "Once upon a time", "with_pieces": True},
                           leave=self.leave())
        elif which == "infill":
            await self.req("llama_infill", "POST", "/infill",
                           {"model": "stories260K", "input_prefix": "Once", "input_suffix": "end", "n_predict": 8},
                           leave=self.leave())
        elif which == "props":
            await self.req("llama_props", "GET", "/props?model=stories260K")
        else:
            await self.req("llama_slots", "GET", "/slots?model=stories260K")

    async def thread_run(self):
        if not self.thread_ids or self.rng.random() < 0.3:
            ans = await self.req("thread_new", "POST", "/v1/threads",
                                 {"messages": [{"role": "user", "content": "Tell me a story"}]})
            body = ans.json()
            if isinstance(body, dict) and "id" in body:
                self.thread_ids.append(body["id"])
            return
        tid = self.rng.choice(self.thread_ids)
        which = self.rng.random()
        if which < 0.4:
            await self.req("run", "POST", f"/v1/threads/{tid}/runs",
                           {"model": "stories260K", "max_completion_tokens": self.n(), "stream": self.stream()},
                           leave=self.leave())
        elif which < 0.7:
            ans = await self.req("run_bg", "POST", f"/v1/threads/{tid}/runs",
                                 {"model": "stories260K", "max_completion_tokens": 200})
            body = ans.json()
            if isinstance(body, dict) and "id" in body:
                await asyncio.sleep(self.rng.random() * 0.3)
                await self.req("run_cancel", "POST", f"/v1/threads/{tid}/runs/{body['id']}/cancel", {},
                               leave=self.rng.choice([None, None, "queued"]))
        elif which < 0.85:
            await self.req("message_add", "POST", f"/v1/threads/{tid}/messages",
                           {"role": "user", "content": "and then?"}, leave=self.leave())
        else:
            await self.req("run_tools", "POST", f"/v1/threads/{tid}/runs",
                           {"model": "stories260K", "tools": self.TOOLS, "tool_choice": "required",
                            "max_completion_tokens": 60, "stream": self.stream()}, leave=self.leave())

    async def files(self):
        if self.file_ids and self.rng.random() < 0.4:
            fid = self.file_ids.pop(self.rng.randrange(len(self.file_ids)))
            await self.req("file_content", "GET", f"/v1/files/{fid}/content", leave=self.rng.choice(
                [None, "after_headers", "mid_stream"]))
            await self.req("file_delete", "DELETE", f"/v1/files/{fid}")
            return
        boundary = "soakboundary"
        content = os.urandom(self.rng.randrange(10, 200_000))
        raw = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
               f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n'
               f"Content-Type: application/octet-stream\r\n\r\n").encode() + content
        raw += f"\r\n--{boundary}--\r\n".encode()
        ans = await self.req("file_upload", "POST", "/v1/files", raw=raw,
                             ctype=f"multipart/form-data; boundary={boundary}", leave=self.leave())
        body = ans.json()
        if isinstance(body, dict) and "id" in body:
            self.file_ids.append(body["id"])

    async def responses_replay(self):
        """A background streamed response, left mid-stream, then replayed (``GET ?stream=true``) and left again."""
        ans = await self.req("responses_bg_stream", "POST", "/v1/responses",
                             {"model": "stories260K", "input": "Once upon a time", "max_output_tokens": 80,
                              "background": True, "stream": True, "store": True}, leave="mid_stream")
        match = re.search(rb'"id":\s*"(resp_[A-Za-z0-9]+)"', ans.body)
        if match:
            rid = match.group(1).decode()
            await self.req("responses_replay", "GET", f"/v1/responses/{rid}?stream=true&starting_after=2",
                           leave=self.rng.choice([None, "after_headers", "mid_stream"]))
            if self.rng.random() < 0.5:
                await self.req("responses_cancel", "POST", f"/v1/responses/{rid}/cancel", {})

    async def run_events(self):
        """A streamed run left mid-stream, its events then followed again (``GET .../events``) and left."""
        if not self.thread_ids:
            return await self.thread_run()
        tid = self.rng.choice(self.thread_ids)
        ans = await self.req("run_stream_left", "POST", f"/v1/threads/{tid}/runs",
                             {"model": "stories260K", "max_completion_tokens": 60, "stream": True},
                             leave="mid_stream")
        match = re.search(rb'"id":\s*"(run_[A-Za-z0-9]+)"', ans.body)
        if match:
            await self.req("run_events", "GET", f"/v1/threads/{tid}/runs/{match.group(1).decode()}/events",
                           leave=self.rng.choice([None, "after_headers", "mid_stream"]))

    async def batches(self):
        """An OpenAI batch over an uploaded JSONL, or an Anthropic message batch; some cancelled at once."""
        if self.rng.random() < 0.5:
            lines = "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"model": "stories260K", "max_tokens": 8,
                                                 "messages": [{"role": "user", "content": "Hi"}]}}) + "\n"
                            for i in range(3))
            boundary = "soakbatch"
            raw = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
                   f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.jsonl"\r\n'
                   f"Content-Type: application/jsonl\r\n\r\n{lines}\r\n--{boundary}--\r\n").encode()
            ans = await self.req("batch_file", "POST", "/v1/files", raw=raw,
                                 ctype=f"multipart/form-data; boundary={boundary}")
            body = ans.json()
            if not (isinstance(body, dict) and "id" in body):
                return
            ans = await self.req("batch", "POST", "/v1/batches",
                                 {"input_file_id": body["id"], "endpoint": "/v1/chat/completions",
                                  "completion_window": "24h"}, leave=self.rng.choice([None, None, "queued"]))
            batch = ans.json()
            if isinstance(batch, dict) and "id" in batch and self.rng.random() < 0.5:
                await self.req("batch_cancel", "POST", f"/v1/batches/{batch['id']}/cancel", {})
        else:
            ans = await self.req("message_batch", "POST", "/v1/messages/batches", {"requests": [
                {"custom_id": f"r{i}", "params": {"model": "stories260K", "max_tokens": 8,
                                                  "messages": [{"role": "user", "content": "Hi"}]}}
                for i in range(3)]}, leave=self.rng.choice([None, None, "queued"]))
            batch = ans.json()
            if isinstance(batch, dict) and "id" in batch and self.rng.random() < 0.5:
                await self.req("message_batch_cancel", "POST", f"/v1/messages/batches/{batch['id']}/cancel", {})

    KINDS = ("chat", "chat", "chat_tools", "chat_image", "completions", "embeddings", "responses", "responses_cancel",
             "responses_tools", "conversation", "anthropic", "anthropic_image", "ollama", "ollama", "llamacpp",
             "llamacpp", "thread_run", "thread_run", "files", "responses_replay", "run_events", "batches")

    async def round(self, requests: int, concurrency: int, kinds=None) -> None:
        sem = asyncio.Semaphore(concurrency)
        kinds = kinds or self.KINDS

        async def one():
            async with sem:
                await getattr(self, self.rng.choice(kinds))()

        await asyncio.gather(*(one() for _ in range(requests)))


# -- what is measured ----------------------------------------------------------------------------------------------
def get_json(port: int, path: str):
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=30) as resp:
        return json.loads(resp.read())


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        m = re.match(r"^(jan_slots_busy|jan_queue_depth|jan_prompt_cache_bytes)\{[^}]*\} ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] += float(m.group(2))
    return out


def batches_running(port: int) -> bool:
    """Whether a batch (OpenAI's or Anthropic's) has not ended yet."""
    openai = get_json(port, "/v1/batches?limit=100").get("data", [])
    anthropic = get_json(port, "/v1/messages/batches?limit=100").get("data", [])
    return any(b.get("status") in ("validating", "in_progress", "finalizing", "cancelling") for b in openai) or \
        any(b.get("processing_status") in ("in_progress", "canceling") for b in anthropic)


def wait_idle(port: int, bound: float = 120.0) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        m = metrics(port)
        if m["jan_slots_busy"] == 0 and m["jan_queue_depth"] == 0 and not batches_running(port):
            return True
        time.sleep(0.2)
    return False


def fd_targets(pid: int) -> collections.Counter:
    """What the process's open descriptors are (sockets and pipes by kind, files by path)."""
    out: collections.Counter = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        out[re.sub(r"\[\d+\]$", "", target)] += 1
    return out


def proc_counts(pid: int) -> dict[str, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
    return {"fds": fds, "threads": threads, "rss_kib": rss}


UNFINISHED = ("queued", "in_progress", "cancelling")


def _records(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    lines = text.splitlines() if path.suffix == ".jsonl" else [text]
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def data_leftovers(data: Path) -> dict[str, list[str]]:
    """Temporary files, and records (a run, a response, a message, a batch) still ``queued``/``in_progress``."""
    temps, pending = [], []
    for dirpath, _dirs, files in os.walk(data):
        for name in files:
            path = Path(dirpath) / name
            if name.endswith((".tmp", ".part")):
                temps.append(str(path.relative_to(data)))
            elif name.endswith((".json", ".jsonl")):
                for record in _records(path):
                    if isinstance(record, dict) and record.get("status") in UNFINISHED:
                        pending.append(f"{path.relative_to(data)}: {record.get('id')} {record['status']}")
    return {"temps": temps, "pending": pending}


# -- the server under test -----------------------------------------------------------------------------------------
def model_paths(work: Path) -> list[Path]:
    from jan.testing.gguf_models import write_vision_pair

    models = models_dir()
    vision, _mmproj = write_vision_pair(work / "vision")
    return [models / "stories260K.gguf", models / "all-MiniLM-L6-v2-f32.gguf", vision]


def image_uri() -> str:
    photo = models_dir().parent / "media" / "test-1.jpeg"
    return "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode()


class Subprocess:
    #: More ``jan serve`` arguments (``--serve-arg``): ``--cache-ram 0`` takes the prompt cache's growth out.
    extra: list[str] = []

    def __init__(self, data: Path, models: list[Path], log: Path, parallel: int):
        self.port = free_port()
        self.log = log
        cmd = [sys.executable, "-m", "jan.cli", "serve", "--port", str(self.port), "--data-folder", str(data),
               "--parallel", str(parallel), "--ctx-size", "1024", "--threads", "1", "--log-level", "info"]
        for m in models:
            cmd += ["-m", str(m)]
        cmd += self.extra
        self.proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 240
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jan serve exited {self.proc.returncode}: {log.read_text()[-3000:]}")
            try:
                get_json(self.port, "/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def tasks(self):
        return None

    def stop(self, sig=signal.SIGTERM, bound: float = 60.0) -> tuple[int | None, float]:
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            rc = None
        return rc, time.monotonic() - start


class InProcess:
    def __init__(self, data: Path, models: list[Path], log: Path, parallel: int):
        import logging

        from jan.server.config import ServerConfig
        from jan.testing.server import ServerThread

        handler = logging.FileHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        self.log = log
        cfg = ServerConfig(data_folder=data, models=[str(m) for m in models], n_ctx=1024, n_parallel=parallel,
                           n_threads=1)
        self.srv = ServerThread(cfg).__enter__()
        self.port = self.srv.config.port
        self.pid = os.getpid()

    def tasks(self):
        async def count():
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

        return self.srv.call(count())

    def stop(self, sig=None, bound: float = 60.0):
        start = time.monotonic()
        self.srv.stop()
        return 0, time.monotonic() - start


def log_problems(log: Path) -> list[str]:
    text = log.read_text(errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line or " ERROR " in line or "Task was destroyed"
            in line or "Unclosed" in line or "never retrieved" in line or "Exception ignored" in line
            or " CRITICAL " in line or "task left running" in line]


# -- the soak --------------------------------------------------------------------------------------------------
def soak(args) -> int:
    Subprocess.extra = list(args.serve_arg)
    work = Path(tempfile.mkdtemp(prefix="jan-soak-"))
    data, log = work / "data", work / "server.log"
    models = model_paths(work)
    server = (InProcess if args.in_process else Subprocess)(data, models, log, args.parallel)
    rng = random.Random(args.seed)
    load = Load(server.port, image_uri(), rng)
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(12)
    kinds = tuple(args.kinds.split(",")) if args.kinds else None
    rows, snap0 = [], None
    print(f"soak: data {data}, log {log}, port {server.port}, pid {server.pid}", flush=True)
    try:
        for r in range(args.rounds):
            asyncio.run(load.round(args.requests, args.concurrency, kinds))
            idle = wait_idle(server.port)
            time.sleep(args.settle)
            counts = proc_counts(server.pid)
            tasks = server.tasks()
            left = data_leftovers(data)
            row = {"round": r, "idle": idle, **counts,
                   "prompt_cache_kib": int(metrics(server.port)["jan_prompt_cache_bytes"]) // 1024,
                   "tasks": None if tasks is None else len(tasks),
                   "temps": len(left["temps"]), "pending": len(left["pending"]), "5xx": len(load.fives)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if r == 0:
                fds0 = fd_targets(server.pid)
            elif args.verbose:
                grown = fd_targets(server.pid) - fds0
                if grown:
                    print("  fds grown:", dict(grown))
            if left["pending"] and args.verbose:
                print("  pending:", left["pending"][:5])
            if left["temps"] and args.verbose:
                print("  temps:", left["temps"][:5])
            if args.verbose and tasks:
                for t in tasks[:15]:
                    print("  task:", t.get_coro())
            if args.tracemalloc and r == args.warmup:
                import tracemalloc

                snap0 = tracemalloc.take_snapshot()
        if args.tracemalloc and snap0 is not None:
            import tracemalloc

            snap1 = tracemalloc.take_snapshot()
            print("tracemalloc growth since round", args.warmup)
            for stat in snap1.compare_to(snap0, args.group_by)[:args.top]:
                print(f"  +{stat.size_diff / 1024:.1f} KiB {stat.count_diff:+d} blocks")
                for line in stat.traceback.format()[-8:]:
                    print("     ", line)
        print("statuses:", json.dumps({f"{k[0]}:{k[1]}": v for k, v in sorted(load.statuses.items(),
                                                                               key=lambda kv: str(kv[0]))}))
        for f in load.fives[:20]:
            print("5xx:", f)
        for p in log_problems(log)[:40]:
            print("log:", p)
        if args.shutdown:
            shutdown_checks(args, server, load, data, models)
    finally:
        rc, took = server.stop()
        print(f"stopped: rc {rc} in {took:.1f} s")
    return 0


def shutdown_checks(args, server, load, data: Path, models: list[Path]) -> None:
    """SIGTERM then SIGINT to fresh servers over the same data folder with requests in flight."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        server.stop()
        slog = data.parent / f"server-{sig.name}.log"
        server = Subprocess(data, models, slog, args.parallel)
        load.port, load.long = server.port, True

        async def inflight():
            task = asyncio.ensure_future(load.round(args.concurrency * 3, args.concurrency))
            await asyncio.sleep(1.5)
            return task

        async def drive():
            task = await inflight()
            rc, took = await asyncio.to_thread(server.stop, sig, 60.0)
            try:
                await asyncio.wait_for(task, 120)
            except Exception as exc:  # noqa: BLE001 - the clients' errors after the stop are expected
                print("  clients:", type(exc).__name__)
            return rc, took

        rc, took = asyncio.run(drive())
        left = data_leftovers(data)
        # (a batch stopped midway is taken up again at the next start, by design: jan.services.batches)
        resumed = [p for p in left["pending"] if p.startswith("batches")]
        pending = [p for p in left["pending"] if not p.startswith("batches")]
        print(f"{sig.name}: rc {rc} in {took:.1f} s; pending {pending[:5]}; temps {left['temps'][:5]}; "
              f"batches to resume {len(resumed)}")
        for p in log_problems(slog)[:20]:
            print("  log:", p)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--requests", type=int, default=60, help="requests per round")
    p.add_argument("--concurrency", type=int, default=10, help="clients at once (more than the slots)")
    p.add_argument("--parallel", type=int, default=2, help="slots per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settle", type=float, default=1.0, help="seconds after idle before measuring")
    p.add_argument("--kinds", default="", help="comma-separated request kinds (Load methods) to bisect a leak")
    p.add_argument("--in-process", action="store_true", help="serve from this process: asyncio tasks, tracemalloc")
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--warmup", type=int, default=2, help="rounds before the tracemalloc baseline")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--group-by", default="traceback", choices=("traceback", "lineno", "filename"),
                   help="how tracemalloc's growth is summed")
    p.add_argument("--shutdown", action="store_true", help="then SIGTERM/SIGINT with requests in flight")
    p.add_argument("--serve-arg", action="append", default=[], help="an argument more for jan serve (repeatable): "
                   "--serve-arg=--cache-ram --serve-arg=0 keeps the prompt cache's (bounded) growth out of RSS")
    p.add_argument("-v", "--verbose", action="store_true")
    return soak(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
