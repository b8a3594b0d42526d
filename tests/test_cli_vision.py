"""Images from the command line, on the tiny vision pair: `jan run --image` and `jan chat`'s `/image`."""

from __future__ import annotations

import io
import json
import re

import pytest

from test_cli_helpers import cli_env, fails, jan, ok


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "jan")


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def _prompt_tokens(stderr: str) -> int:
    found = re.search(r"prompt: (\d+) tokens", stderr)
    assert found, stderr
    return int(found.group(1))


def test_run_with_an_image(env, vision_pair, test_image_path):
    model, _mmproj = vision_pair  # mmproj-<name> beside the .gguf: picked up for a model given by path
    args = [model, "What is in this picture?", "-n", "6", "--temperature", "0", "--threads", "1", "-v"]
    with_image = ok(jan("run", *args, "--image", test_image_path, env=env))
    again = ok(jan("run", *args, "-i", test_image_path, env=env))
    text_only = ok(jan("run", *args, env=env))
    assert with_image.stdout.strip() and with_image.stdout == again.stdout
    assert _prompt_tokens(with_image.stderr) >= _prompt_tokens(text_only.stderr) + 64  # 64 image tokens


def test_run_refuses_bad_images(env, vision_pair, tmp_path):
    model, _mmproj = vision_pair
    notes = tmp_path / "notes.txt"
    notes.write_text("no picture here")
    fails(jan("run", model, "describe", "--image", notes, env=env), "not a PNG, JPEG, WebP or GIF image")
    fails(jan("run", model, "describe", "--image", tmp_path / "missing.png", env=env), "cannot read image")
    # the right magic bytes, but cut off: said of the file given, not of a request field the user never wrote
    cut = tmp_path / "cut.png"
    cut.write_bytes(_png()[:60])
    said = fails(jan("run", model, "describe", "--image", cut, env=env), f"image '{cut}': cannot decode the image")
    assert "messages[" not in said
    result = jan("run", model, "describe", "--raw", "--image", notes, env=env)
    assert result.returncode == 2 and "--image applies to chat" in result.stderr


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_an_empty_media_file_is_told_as_empty(tmp_path, kind):
    """An empty --image/--audio file is said to be empty, not to be of a format it is not ("not a PNG...")."""
    from jan.cli.common import CLIError
    from jan.cli.images import audio_part, image_part

    empty = tmp_path / ("empty.png" if kind == "image" else "empty.wav")
    empty.write_bytes(b"")
    with pytest.raises(CLIError) as caught:
        (image_part if kind == "image" else audio_part)(empty)
    assert str(caught.value) == f"{kind} '{empty}' is empty"


def test_chat_image_command(env, vision_pair, test_image_path, tmp_path):
    model, _mmproj = vision_pair
    lines = ["/image", f"/image {tmp_path / 'missing.png'}", f"/image {test_image_path}",
             "What is in this picture?", "And now?", "/exit"]
    result = jan("chat", model, "--max-tokens", "4", "--temperature", "0", "--threads", "1",
                 input="\n".join(lines) + "\n", env=env)
    assert result.returncode == 1  # (piped: the failed /image is the chat's failure, though it went on)
    # (notes: on stderr, stdout being no terminal, where only the answers go)
    assert "no image attached" in result.stderr and "no image attached" not in result.stdout
    assert "jan: error: /image: could not attach" in result.stderr and "cannot read image" in result.stderr
    assert "image attached (1)" in result.stderr
    (folder,) = [p for p in (tmp_path / "jan" / "threads").iterdir() if (p / "thread.json").is_file()]
    raw = (folder / "messages.jsonl").read_text()
    assert "base64" not in raw
    messages = [json.loads(line) for line in raw.splitlines() if line]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    first = messages[0]["content"]
    assert first[0]["text"]["value"] == "What is in this picture?" and first[1]["type"] == "image_file"
    assert (folder / "files" / first[1]["image_file"]["file_id"]).read_bytes() == test_image_path.read_bytes()
    assert all(p["type"] == "text" for p in messages[2]["content"])  # the image went with one message only
    assert json.loads((folder / "thread.json").read_text())["title"] == "What is in this picture?"

    # resumed, the thread's image goes to the model again (read back from the thread folder)
    ok(jan("chat", model, "--thread", folder.name, "--max-tokens", "4", "--temperature", "0", "--threads", "1",
           input="Once more?\n/exit\n", env=env))
    messages = [json.loads(line) for line in (folder / "messages.jsonl").read_text().splitlines() if line]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3


def test_history_of_a_thread_with_images():
    from jan.cli.conversation import history_of

    stored = [
        {"role": "user", "content": [{"type": "text", "text": {"value": "look", "annotations": []}},
                                     {"type": "image_file", "image_file": {"file_id": "img-a.png"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": {"value": "a dog", "annotations": []}}]},
    ]
    files = {"img-a.png": (b"\x89PNG-bytes", "image/png")}
    assert history_of(stored, files.__getitem__) == [
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORy1ieXRlcw=="}}]},
        {"role": "assistant", "content": "a dog"}]
    assert history_of(stored)[0] == {"role": "user", "content": "look"}  # without a reader: the text
