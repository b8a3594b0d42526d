"""The chat page with images, in a real headless Chromium against a real server with the tiny vision pair:
attach (file picker) and paste images, thumbnails in the thread, stored as files (not base64 in
messages.jsonl), shown again after a reload, and sent to the model (64 image tokens in the prompt).

Browser fixtures (``browser``, ``new_page``) are in conftest.py; they skip without Playwright/Chromium.
"""

from __future__ import annotations

import base64
import io

import pytest

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread
from test_web_page import api, messages_of, open_page, shot, thread_id_of


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory, vision_pair):
    model_path, _mmproj = vision_pair  # mmproj-*.gguf beside it: picked up on import
    config = ServerConfig(data_folder=tmp_path_factory.mktemp("web-vision"), models=[str(model_path)],
                          n_ctx=1024, n_parallel=2, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


def _png_b64(color=(30, 90, 220)) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (24, 18), color).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


PASTE = """([data]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], "pasted.png", { type: "image/png" }));
    document.querySelector("#prompt").dispatchEvent(
        new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
}"""

LOADED_WIDTH = "img => img.decode().then(() => img.naturalWidth)"


def test_attach_and_paste_images(vision_server, new_page, test_image_path, vision_pair):
    page = new_page(csp=True)  # under the page's own policy: thumbnails are data: and blob: URLs
    open_page(page, vision_server)
    page.click("#toggle-settings")
    page.fill("#set-max-tokens", "4")
    page.click("#save-settings")

    # the model sees ("vision" among its capabilities): the page offers images
    assert page.is_visible("#attach") and "attach images" in page.text_content("#composer-hint")
    # attach the photo with the file picker, paste a PNG: two thumbnails in the composer
    page.set_input_files("#attach-input", str(test_image_path))
    page.wait_for_selector("#attachments .attachment img.thumb")
    page.evaluate(PASTE, [_png_b64()])
    page.wait_for_selector("#attachments .attachment:nth-child(2) img.thumb")
    assert page.locator("#attachments img.thumb").count() == 2
    # one can be taken back before sending
    page.click("#attachments .attachment:nth-child(2) button")
    page.wait_for_selector("#attachments .attachment:nth-child(2)", state="detached")
    page.evaluate(PASTE, [_png_b64((200, 40, 40))])
    page.wait_for_selector("#attachments .attachment:nth-child(2) img.thumb")
    shot(page, "vision-01-attached")

    page.fill("#prompt", "What is in these pictures?")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant[data-done=true]", timeout=120_000)
    assert page.is_hidden("#attachments")
    thumbs = page.locator("article.user .message-images img.thumb")
    assert thumbs.count() == 2
    assert thumbs.first.evaluate(LOADED_WIDTH) > 0  # fetched back from the thread folder
    shot(page, "vision-02-answered")

    # stored as two files referenced by image_file parts; the model saw both images
    thread_id = thread_id_of(page)
    messages = messages_of(vision_server, thread_id)
    user, reply = messages[0], messages[-1]
    refs = [p["image_file"] for p in user["content"] if p["type"] == "image_file"]
    assert [r["mime_type"] for r in refs] == ["image/jpeg", "image/png"]
    assert [p["text"]["value"] for p in user["content"] if p["type"] == "text"] == ["What is in these pictures?"]
    # (OpenAI's status on the wire: whole, or incomplete where max_tokens cut it)
    cut = reply["metadata"].get("finish_reason") == "length"
    assert reply["role"] == "assistant" and reply["status"] == ("incomplete" if cut else "completed")
    assert reply["metadata"]["usage"]["prompt_tokens"] > 2 * 64
    raw = (vision_server.config.data_folder / "threads" / thread_id / "messages.jsonl").read_text()
    assert "base64" not in raw
    assert (vision_server.config.data_folder / "threads" / thread_id / "files" / refs[0]["file_id"]).read_bytes() \
        == test_image_path.read_bytes()

    # a reload shows the images again
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.user .message-images img.thumb[src^='blob:']")
    assert page.locator("article.user .message-images img.thumb").count() == 2
    assert page.locator("article.user .message-images img.thumb").nth(1).evaluate(LOADED_WIDTH) == 24
    shot(page, "vision-03-reloaded")
    assert api(vision_server, "GET", f"/v1/threads/{thread_id}")["id"] == thread_id

    # edited and sent again: the new text with the same two images, answered anew in the old answer's place
    page.click("article.user .edit-message")
    page.fill("textarea.message-edit", "Describe them")
    page.keyboard.press("Enter")
    page.wait_for_function("(old) => { const reply = document.querySelector('article.assistant[data-done=true]');"
                           " return reply && reply.dataset.messageId && reply.dataset.messageId !== old"
                           " && !document.body.classList.contains('streaming'); }", arg=reply["id"], timeout=120_000)
    edited = messages_of(vision_server, thread_id)
    assert [m["role"] for m in edited] == ["user", "assistant"] and edited[0]["id"] == user["id"]
    assert [p["image_file"]["file_id"] for p in edited[0]["content"] if p["type"] == "image_file"] \
        == [r["file_id"] for r in refs]
    assert [p["text"]["value"] for p in edited[0]["content"] if p["type"] == "text"] == ["Describe them"]
    assert edited[1]["metadata"]["usage"]["prompt_tokens"] > 2 * 64  # the model saw both images again
    assert page.locator("article.user .message-images img.thumb").count() == 2


def test_a_file_that_is_not_an_image_is_refused_in_the_page(vision_server, new_page, tmp_path):
    page = new_page()
    open_page(page, vision_server)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#attach-input", str(notes))
    page.wait_for_selector("#toast:not([hidden])")
    assert "not a PNG, JPEG, WebP or GIF" in page.text_content("#toast")
    assert page.is_hidden("#attachments")


def test_images_too_big_to_send_together_are_refused_in_the_page(vision_server, new_page, tmp_path):
    """A message's images go base64 in one body of at most 16 MiB: a 12 MB image (under the 20 MB per image) was
    taken, then the message came back as "Request body too large". Said at once, when attaching it."""
    page = new_page()
    open_page(page, vision_server)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (12 * 1024 * 1024))  # (the page checks type and size only)
    page.set_input_files("#attach-input", str(big))
    page.wait_for_selector("#toast:not([hidden])")
    assert "does not fit" in page.text_content("#toast")
    assert page.is_hidden("#attachments")
