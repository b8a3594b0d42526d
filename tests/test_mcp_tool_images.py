"""An image an MCP tool returned (the notes server's ``screenshot``: a caption and a PNG) reaches a model with a
projector as an image, as a client's own tool result's image does (tests/test_tool_result_images.py), in every path
where jan runs MCP tools itself: a run's tool loop, the Responses API's ``mcp`` tools, Anthropic's ``mcp_servers``.
A model without one reads the note it always read. The thread keeps the image (a file of the thread, as every
message's image), so a later turn's prompt holds it again.

The measure is the prompt's tokens: the tiny vision pair's projector makes 64 of an image, and the note is a dozen.
Each turn after the call is compared with the same turn after ``list_notes`` (a text result of about the note's
length), on the same model."""

from __future__ import annotations

import shutil

import pytest
from api_helpers import Client, running
from run_helpers import run_to_end

from mcp_helpers import notes_url  # noqa: F401 - the module's MCP server over HTTP (a fixture)
from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

pytestmark = pytest.mark.timeout(600)

IMAGE_TOKENS = 64  # the tiny vision pair's projector
#: What an image adds to a turn over a text result of about the note's size, at the least (64 less a few tokens
#: the text results differ by); a note alone adds none.
SEEN = IMAGE_TOKENS - 16


@pytest.fixture(scope="module")
def server(tmp_path_factory, tool_model, notes_url):
    from jan.testing.gguf_models import (QWEN3_TEMPLATE, TINY_CHAT_CONFIG, _write_chatml_phi3, templates_dir,
                                         write_mlp_mmproj)

    tmp = tmp_path_factory.mktemp("mcp-images")
    # a vision pair that calls tools: the tiny vision model in Qwen3's tool-calling template, with its projector
    template = (templates_dir() / QWEN3_TEMPLATE).read_text(encoding="utf-8")
    seeing = _write_chatml_phi3(tmp / "vision-tools.gguf", None, 0, template)
    write_mlp_mmproj(tmp / "mmproj-vision-tools.gguf", n_embd_text=TINY_CHAT_CONFIG["n_embd"], seed=1)
    # its twin without the projector (the same weights, template and tokenizer: the same prompts but the image)
    (tmp / "blind").mkdir()
    blind = shutil.copyfile(seeing, tmp / "blind" / "blind-tools.gguf")
    write_mcp_config(tmp / "data", {"notes": stdio_entry(notes_folder(tmp))})
    # (Anthropic's connector reaches servers by URL: the notes server's is allowed, as a media URL prefix)
    with running(tmp / "data", seeing, blind, tool_model, n_ctx=2048,
                 allow_media_from=[notes_url.rsplit("/", 1)[0] + "/"]) as srv:
        yield srv


def forced(tool: str) -> dict:
    return {"tool_choice": {"type": "function", "function": {"name": f"notes__{tool}"}}, "parallel_tool_calls": False,
            "max_tokens": 60, "temperature": 0}


async def run_growth(api: Client, model: str, tool: str) -> tuple[int, list[dict], str]:
    """The tokens a run's second turn's prompt has over its first's, when the model called ``tool`` (of the notes
    server) and read its result; the thread's messages, and its id."""
    assistant = await api.ok("POST", "/v1/assistants", {"name": "Screen", "model": model, "tools": [
        {"type": "mcp", "server_label": "notes", "allowed_tools": [tool], "require_approval": "never"}]})
    thread = await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}],
                                                  "messages": [{"role": "user", "content": "Look at the screen."}]})
    run = await run_to_end(api, f"/v1/threads/{thread['id']}/runs", forced(tool))
    assert run["status"] in ("completed", "incomplete"), run
    steps = (await api.ok("GET", f"/v1/threads/{thread['id']}/runs/{run['id']}/steps?order=asc"))["data"]
    messages = (await api.ok("GET", f"/v1/threads/{thread['id']}/messages?order=asc&limit=100&all=true"))["data"]
    assert [s["type"] for s in steps] == ["tool_calls", "message_creation"], steps
    return steps[1]["usage"]["prompt_tokens"] - steps[0]["usage"]["prompt_tokens"], messages, thread["id"]


async def next_prompt(api: Client, thread_id: str) -> int:
    """The prompt tokens of a later run of the thread (no tool called): its history read back from the store."""
    await api.ok("POST", f"/v1/threads/{thread_id}/messages", {"role": "user", "content": "And now?"})
    run = await run_to_end(api, f"/v1/threads/{thread_id}/runs", {"max_tokens": 1, "tool_choice": "none"})
    assert run["status"] in ("completed", "incomplete"), run
    return run["usage"]["prompt_tokens"]


async def test_a_runs_mcp_image_reaches_a_model_with_a_projector(server):
    async with Client(server.base_url) as api:
        text, _, text_thread = await run_growth(api, "vision-tools", "list_notes")
        image, messages, image_thread = await run_growth(api, "vision-tools", "screenshot")
        assert image >= text + SEEN
        # kept as the thread keeps every image (a file of the thread), after the tool's text
        [result] = [m for m in messages if m["role"] == "tool"]
        assert [p["type"] for p in result["content"]] == ["text", "image_file"]
        assert result["content"][0]["text"]["value"] == "the screen"
        assert result["metadata"]["result"]["parts"][1]["type"] == "image"
        # a later run of the thread reads it again
        assert await next_prompt(api, image_thread) >= await next_prompt(api, text_thread) + SEEN


async def test_a_runs_mcp_image_is_a_note_to_a_model_without_a_projector(server):
    async with Client(server.base_url) as api:
        text, _, text_thread = await run_growth(api, "qwen3-tools", "list_notes")
        image, messages, image_thread = await run_growth(api, "qwen3-tools", "screenshot")
        assert image < text + SEEN  # (no 400 for an image nobody sent: the note, as always)
        assert await next_prompt(api, image_thread) < await next_prompt(api, text_thread) + SEEN


def responses_body(model: str, tool: str) -> dict:
    return {"model": model, "input": "Look at the screen.", "max_output_tokens": 60, "temperature": 0,
            "store": False, "parallel_tool_calls": False,
            "tools": [{"type": "mcp", "server_label": "notes", "allowed_tools": [tool], "require_approval": "never"}],
            "tool_choice": {"type": "mcp", "server_label": "notes", "name": tool}}


async def test_a_responses_mcp_image_reaches_a_model_with_a_projector(server):
    """The same answer on the twin models: the one that sees reads the image (64 tokens more than the note's)."""
    async with Client(server.base_url) as api:
        seeing = await api.ok("POST", "/v1/responses", responses_body("vision-tools", "screenshot"))
        blind = await api.ok("POST", "/v1/responses", responses_body("blind-tools", "screenshot"))
        for response in (seeing, blind):  # (the call ran, and the model went on: one more turn)
            [call] = [item for item in response["output"] if item["type"] == "mcp_call"]
            assert call["output"].startswith("the screen\n[image image/png, ") and call.get("error") is None, call
        assert seeing["usage"]["input_tokens"] >= blind["usage"]["input_tokens"] + SEEN


def anthropic_body(url: str, model: str) -> dict:
    return {"model": model, "max_tokens": 60, "temperature": 0, "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": "Look at the screen."}],
            "mcp_servers": [{"type": "url", "url": url, "name": "notes",
                             "tool_configuration": {"enabled": True, "allowed_tools": ["screenshot"]}}]}


def input_tokens(message: dict) -> int:
    return message["usage"]["input_tokens"] + message["usage"].get("cache_read_input_tokens", 0)


async def test_an_anthropic_mcp_image_reaches_a_model_with_a_projector(server, notes_url):
    async with Client(server.base_url) as api:
        seeing = await api.ok("POST", "/v1/messages", anthropic_body(notes_url, "vision-tools"))
        blind = await api.ok("POST", "/v1/messages", anthropic_body(notes_url, "blind-tools"))
        for message in (seeing, blind):
            use, result = message["content"][:2]
            assert use["type"] == "mcp_tool_use" and result["type"] == "mcp_tool_result", message
            assert result["is_error"] is False and result["content"][0]["text"].startswith("the screen"), result
        assert input_tokens(seeing) >= input_tokens(blind) + SEEN


async def conversation_run(api: Client, model: str, tool: str) -> str:
    """A conversation (a ``conv_`` thread) in which a run of ``model`` called ``tool`` of the notes server, as the
    web page runs a conversation's next turn; its id."""
    conversation = await api.ok("POST", "/v1/conversations", {"items": [
        {"type": "message", "role": "user", "content": "Look at the screen."}]})
    assistant = await api.ok("POST", "/v1/assistants", {"name": "Screen", "model": model, "tools": [
        {"type": "mcp", "server_label": "notes", "allowed_tools": [tool], "require_approval": "never"}]})
    run = await run_to_end(api, f"/v1/threads/{conversation['id']}/runs",
                           {"assistant_id": assistant["id"], **forced(tool)})
    assert run["status"] in ("completed", "incomplete"), run
    return conversation["id"]


async def test_a_conversation_continues_a_runs_mcp_image_on_either_model(server):
    """A Responses turn continuing the conversation reads the run's image on the model that sees, and its note on
    the one that does not (no 400 for an image nobody sent)."""
    async with Client(server.base_url) as api:
        tokens = {}
        for model in ("vision-tools", "blind-tools"):
            conversation = await conversation_run(api, model, "screenshot")
            response = await api.ok("POST", "/v1/responses", {"model": model, "conversation": conversation,
                                                              "input": "And now?", "max_output_tokens": 1})
            tokens[model] = response["usage"]["input_tokens"]
        assert tokens["vision-tools"] >= tokens["blind-tools"] + SEEN


async def test_a_stored_responses_mcp_image_is_seen_again_by_a_follow_up(server):
    """A stored response's ``mcp_call`` kept only the image's note: a follow-up (``previous_response_id``) showed
    the model that sees no image. It reads the image again (64 tokens more than the twin without a projector)."""
    async with Client(server.base_url) as api:
        tokens = {}
        for model in ("vision-tools", "blind-tools"):
            first = await api.ok("POST", "/v1/responses", {**responses_body(model, "screenshot"), "store": True})
            assert any(item["type"] == "mcp_call" for item in first["output"]), first["output"]
            again = await api.ok("POST", "/v1/responses", {"model": model, "previous_response_id": first["id"],
                                                           "input": "And now?", "max_output_tokens": 1})
            tokens[model] = again["usage"]["input_tokens"]
        assert tokens["vision-tools"] >= tokens["blind-tools"] + SEEN


async def test_an_anthropic_mcp_image_sent_back_is_seen_again(server, notes_url):
    """The reply's ``mcp_tool_result`` carries the image (an image block after its text); sent back, the model that
    sees reads it again, the one that does not its note (no 400 for an image nobody chose to send)."""
    async with Client(server.base_url) as api:
        tokens = {}
        for model in ("vision-tools", "blind-tools"):
            body = anthropic_body(notes_url, model)
            reply = await api.ok("POST", "/v1/messages", body)
            result = reply["content"][1]
            assert [b["type"] for b in result["content"]] == ["text", "image"], result
            again = await api.ok("POST", "/v1/messages", {**body, "tool_choice": {"type": "none"}, "max_tokens": 1,
                                                          "messages": [*body["messages"],
                                                                       {"role": "assistant", "content": reply["content"]},
                                                                       {"role": "user", "content": "And now?"}]})
            tokens[model] = input_tokens(again)
        assert tokens["vision-tools"] >= tokens["blind-tools"] + SEEN


async def test_an_anthropic_threads_mcp_image_is_seen_again_and_no_400_on_the_blind_twin(server, notes_url):
    """A thread (``thread``) holds the reply's MCP result with its image: the next turn's model that sees reads the
    image; the one without a projector its note (the image was kept as an image of the thread, read back as any
    image a client sent: a 400 for the model that cannot see it, though nobody chose to send it)."""
    async with Client(server.base_url) as api:
        tokens = {}
        for model in ("vision-tools", "blind-tools"):
            body = anthropic_body(notes_url, model)
            first = await api.ok("POST", "/v1/messages", {**body, "thread": {"type": "create"}})
            assert [b["type"] for b in first["content"][1]["content"]] == ["text", "image"], first["content"]
            again = await api.ok("POST", "/v1/messages", {
                **body, "tool_choice": {"type": "none"}, "max_tokens": 1,
                "messages": [{"role": "user", "content": "And now?"}],
                "thread": {"type": "continue", "previous_message_id": first["id"]}})
            tokens[model] = input_tokens(again)
        assert tokens["vision-tools"] >= tokens["blind-tools"] + SEEN
