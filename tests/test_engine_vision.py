"""Images through the native engine (libmtmd), checked against llama-cpp-python's own multimodal path.

The model pair is tiny and random (tests/conftest.py: vision_pair), so the
output is gibberish — but it depends on every pixel, every embedding and
every position, which is what these tests compare.
"""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import pytest

import jan
from cut_off_helpers import LONG, LONG_N_CTX
from mtmd_reference import llama_cpp_mtmd_greedy

N_GEN = 16
QUESTION = "What is in this picture?"


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def photo_png(test_image_path):
    """The JPEG photo decoded by Pillow, as a PNG: both sides then see the very same pixels
    (llama.cpp's stb decoder and libjpeg-turbo may round a JPEG differently)."""
    from PIL import Image

    with Image.open(test_image_path) as im:
        return _png(im.convert("RGB"))


@pytest.fixture(scope="module")
def vlm(vision_pair):
    model_path, mmproj = vision_pair
    model = jan.Model(model_path, mmproj=mmproj, n_ctx=512, n_parallel=3, n_threads=1, n_threads_batch=1)
    yield model
    model.close()


def _chat_prompt(model: jan.Model, question: str = QUESTION, n_images: int = 1) -> str:
    marker = model.media_marker
    parts = "\n".join([question] + [marker] * n_images)
    return f"<|im_start|>user\n{parts}<|im_end|>\n<|im_start|>assistant\n"


# --------------------------------------------------------------------------
# the reference tests (done-when of issue 14)
# --------------------------------------------------------------------------


def test_greedy_image_tokens_equal_llama_cpp_python_mtmd(vlm, vision_pair, photo_png, test_image_path):
    prompt = _chat_prompt(vlm)
    ref = llama_cpp_mtmd_greedy(*vision_pair, prompt, [photo_png], N_GEN)
    # jan gets the original JPEG: Pillow decodes it to the pixels the PNG holds
    got = vlm.generate(prompt, images=[test_image_path], max_tokens=N_GEN, temperature=0, ignore_eos=True)
    assert got.token_ids == ref
    assert got.usage.prompt_tokens == len(vlm.tokenize(prompt.split(vlm.media_marker)[0], True, True)) + \
        len(vlm.tokenize(prompt.split(vlm.media_marker)[1], False, True)) + 64


def test_greedy_chat_text_equals_llama_cpp_python_mtmd_chat_handler(vlm, vision_pair, photo_png):
    """The same through llama-cpp-python's MTMDChatHandler (its chat API, data URL in, text out)."""
    import llama_cpp
    from llama_cpp.llama_chat_format import MTMDChatHandler

    model_path, mmproj = vision_pair
    url = "data:image/png;base64," + base64.b64encode(photo_png).decode()
    handler = MTMDChatHandler(clip_model_path=str(mmproj), verbose=False, use_gpu=False)
    llm = llama_cpp.Llama(str(model_path), chat_handler=handler, n_ctx=512, n_threads=1, verbose=False)
    try:
        messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION},
                                                 {"type": "image_url", "image_url": {"url": url}}]}]
        ref = llm.create_chat_completion(messages=messages, temperature=0, max_tokens=N_GEN, repeat_penalty=1.0)
    finally:
        llm.close()
    got = vlm.generate(_chat_prompt(vlm), images=[photo_png], max_tokens=N_GEN, temperature=0)
    assert got.text == ref["choices"][0]["message"]["content"]
    assert got.usage.prompt_tokens == ref["usage"]["prompt_tokens"]


def test_two_images_in_one_prompt_match_the_reference(vlm, vision_pair, photo_png):
    from PIL import Image

    red = _png(Image.new("RGB", (40, 30), (200, 30, 30)))
    prompt = _chat_prompt(vlm, "Compare", n_images=2)
    ref = llama_cpp_mtmd_greedy(*vision_pair, prompt, [photo_png, red], 8)
    got = vlm.generate(prompt, images=[photo_png, red], max_tokens=8, temperature=0, ignore_eos=True)
    assert got.token_ids == ref


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------


def test_image_sources_path_bytes_array_and_pil_agree(vlm, test_image_path):
    from PIL import Image

    prompt = _chat_prompt(vlm)
    with Image.open(test_image_path) as im:
        pil = im.convert("RGB")
    outs = [
        vlm.generate(prompt, images=[src], max_tokens=6, temperature=0, ignore_eos=True).token_ids
        for src in (test_image_path, str(test_image_path), test_image_path.read_bytes(), np.asarray(pil), pil)
    ]
    assert all(o == outs[0] for o in outs)


def test_the_image_changes_the_answer(vlm):
    from PIL import Image

    prompt = _chat_prompt(vlm)
    a = vlm.generate(prompt, images=[Image.new("RGB", (32, 32), (255, 0, 0))], max_tokens=8, temperature=0,
                     ignore_eos=True)
    b = vlm.generate(prompt, images=[Image.new("RGB", (32, 32), (0, 0, 255))], max_tokens=8, temperature=0,
                     ignore_eos=True)
    assert a.token_ids != b.token_ids


def test_gif_first_frame_and_webp(vlm):
    from PIL import Image

    frames = [Image.new("RGB", (24, 24), c) for c in ((10, 200, 10), (200, 10, 10))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    webp = io.BytesIO()
    frames[0].save(webp, "WEBP", lossless=True)
    prompt = _chat_prompt(vlm)
    first = vlm.generate(prompt, images=[_png(frames[0])], max_tokens=6, temperature=0, ignore_eos=True).token_ids
    for data in (gif.getvalue(), webp.getvalue()):
        assert vlm.generate(prompt, images=[data], max_tokens=6, temperature=0, ignore_eos=True).token_ids == first


@pytest.mark.parametrize(
    "images, reason",
    [
        ([b"not an image at all"], "unsupported_format"),
        ([b"BM" + b"\0" * 64], "unsupported_format"),  # BMP: decodable, but not accepted
        ([np.zeros((4, 4, 5), np.uint8)], "unsupported_format"),
        ([np.zeros((4, 4, 3), np.uint8)] * 101, "too_many"),
    ],
)
def test_bad_images_raise_media_error(vlm, images, reason):
    with pytest.raises(jan.MediaError) as info:
        vlm.generate(_chat_prompt(vlm, n_images=0) + vlm.media_marker * len(images), images=images, max_tokens=1)
    assert info.value.reason == reason


def test_a_path_that_cannot_be_read_is_a_media_error(tmp_path):
    """A folder given as an image or a clip (or a file the process may not read) is ``unreadable``, as a missing
    file is: it raised IsADirectoryError, no MediaError."""
    from jan.engine.media import audio_input, decode_image

    for read in (decode_image, audio_input):
        for path in (tmp_path, tmp_path / "missing.png"):
            with pytest.raises(jan.MediaError, match="cannot read") as info:
                read(path)
            assert info.value.reason == "unreadable"


def test_a_damaged_image_is_named_by_what_is_wrong_not_by_a_buffer():
    from jan.engine.media import decode_image
    from PIL import Image

    for cut in (33, 40):  # a PNG's signature and header, then nothing Pillow can identify
        with pytest.raises(jan.MediaError) as info:
            decode_image(_png(Image.new("RGB", (8, 8)))[:cut], what="messages[0].content[1]")
        assert info.value.reason == "unsupported_format"
        assert "BytesIO" not in str(info.value) and "0x" not in str(info.value), str(info.value)
        assert str(info.value).startswith("messages[0].content[1]: cannot decode the image")


def test_too_large_image_and_marker_mismatch(vision_pair):
    from PIL import Image

    model_path, mmproj = vision_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=256, n_threads=1,
                   media_limits=jan.engine.media.MediaLimits(max_pixels=100, max_bytes=10_000)) as small:
        with pytest.raises(jan.MediaError, match="pixels") as info:
            small.generate("x", images=[Image.new("RGB", (11, 10))], max_tokens=1)
        assert info.value.reason == "too_large"
        with pytest.raises(jan.MediaError, match="bytes") as info:
            small.generate("x", images=[b"\x89PNG\r\n\x1a\n" + b"\0" * 20_000], max_tokens=1)
        assert info.value.reason == "too_large"
        with pytest.raises(jan.MediaError, match="marker"):
            small.generate(f"{small.media_marker} {small.media_marker}", images=[Image.new("RGB", (8, 8))],
                           max_tokens=1)


def test_a_request_may_hold_many_images_within_a_total_pixel_budget(vision_pair):
    """A conversation's every image goes again each turn: a ninth picture must not end it (the cap was 8 items);
    what bounds a request's memory is the pixels of all its images together."""
    model_path, mmproj = vision_pair
    limits = jan.engine.media.MediaLimits(max_total_pixels=3 * 64)
    with jan.Model(model_path, mmproj=mmproj, n_ctx=4096, n_threads=1) as big, \
            jan.Model(model_path, mmproj=mmproj, n_ctx=256, n_threads=1, media_limits=limits) as small:
        assert len(big.media_inputs([np.full((4, 4, 3), i, np.uint8) for i in range(30)])) == 30
        assert len(small.media_inputs([np.zeros((8, 8, 3), np.uint8)] * 3)) == 3  # just the budget
        with pytest.raises(jan.MediaError, match="pixels accepted together") as info:
            small.media_inputs([np.zeros((8, 8, 3), np.uint8)] * 3 + [np.zeros((1, 1, 3), np.uint8)])
        assert (info.value.reason, info.value.item_index) == ("too_large", 3)


def test_model_without_projector_refuses_images(stories):
    assert stories.capabilities == {"vision": False, "audio": False}
    with pytest.raises(jan.MediaError) as info:
        stories.generate("Once", images=[np.zeros((8, 8, 3), np.uint8)], max_tokens=1)
    assert info.value.reason == "no_projector"


def test_audio_refused_by_a_vision_only_projector(vlm):
    assert vlm.capabilities == {"vision": True, "audio": False}
    with pytest.raises(jan.MediaError) as info:
        vlm.generate("listen", audio=[b"RIFF\0\0\0\0WAVEfmt "], max_tokens=1)
    assert info.value.reason == "no_projector"
    # which item it is (images first, then audio: the clip is item 1), so a caller can name the part that sent it
    with pytest.raises(jan.MediaError) as info:
        vlm.media_inputs(images=[np.zeros((8, 8, 3), np.uint8)], audio=[b"RIFF\0\0\0\0WAVEfmt "])
    assert (info.value.reason, info.value.item_index) == ("no_projector", 1)


def test_bad_mmproj_is_a_model_load_error(vision_pair, tmp_path):
    model_path, _ = vision_pair
    with pytest.raises(jan.ModelLoadError):
        jan.Model(model_path, mmproj=tmp_path / "missing.gguf", n_ctx=128, n_threads=1)
    with pytest.raises(jan.ModelLoadError):
        jan.Model(model_path, mmproj=model_path, n_ctx=128, n_threads=1)  # a text model is no projector


# --------------------------------------------------------------------------
# scheduling: slots, batching, prefix reuse
# --------------------------------------------------------------------------


def test_follow_up_about_the_same_image_reuses_its_kv_cache(vision_pair, photo_png):
    model_path, mmproj = vision_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=512, n_parallel=1, n_threads=1) as model:
        first_turn = _chat_prompt(model)
        first = model.generate(first_turn, images=[photo_png], max_tokens=4, temperature=0, ignore_eos=True)
        assert first.usage.cached_tokens == 0
        follow_up = (first_turn + first.text + "<|im_end|>\n<|im_start|>user\nAnd the colours?<|im_end|>\n"
                     "<|im_start|>assistant\n")
        second = model.generate(follow_up, images=[photo_png], max_tokens=4, temperature=0, ignore_eos=True)
        # the whole first turn, image included, comes from the cache
        assert second.usage.cached_tokens >= first.usage.prompt_tokens
        fresh = jan.Model(model_path, mmproj=mmproj, n_ctx=512, n_parallel=1, n_threads=1)
        try:
            assert fresh.generate(follow_up, images=[photo_png], max_tokens=4, temperature=0,
                                  ignore_eos=True).token_ids == second.token_ids
        finally:
            fresh.close()
        # another image at the same place is evaluated again, not reused
        from PIL import Image

        third = model.generate(follow_up, images=[Image.new("RGB", (16, 16), (1, 2, 3))], max_tokens=2,
                               temperature=0)
        assert third.usage.cached_tokens < first.usage.prompt_tokens - 64
        assert model.metrics()["media_encodes_total"] == 2  # the re-sent photo was not encoded again


def test_image_requests_in_parallel_slots_while_text_streams(vision_pair, photo_png):
    # The text request streams until the test cancels it (LONG tokens in a context that fits them), so it runs the
    # whole time the images are encoded and generated, however fast the machine: its 40 tokens ended before an image
    # request did 4 times in 10 here, and every time with the work cut to what a fast core makes meanwhile (7)
    from PIL import Image

    model_path, mmproj = vision_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=LONG_N_CTX, n_parallel=3, n_threads=1,
                   n_threads_batch=1) as vlm:
        prompt = _chat_prompt(vlm)
        hello = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
        blue = _png(Image.new("RGB", (20, 20), (0, 0, 255)))
        alone = [vlm.generate(prompt, images=[img], max_tokens=8, temperature=0, ignore_eos=True).token_ids
                 for img in (photo_png, blue)]
        text_alone = vlm.generate(hello, max_tokens=40, temperature=0, ignore_eos=True).token_ids

        text = vlm.stream(hello, max_tokens=LONG, temperature=0, ignore_eos=True)
        chunks = iter(text)
        streamed = list(next(chunks).token_ids)  # the text request is generating before the images arrive
        results: dict[int, list[int]] = {}

        def run(i, img):
            results[i] = vlm.generate(prompt, images=[img], max_tokens=8, temperature=0, ignore_eos=True).token_ids

        threads = [threading.Thread(target=run, args=(i, img)) for i, img in enumerate((photo_png, blue))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
            assert not t.is_alive()
        while len(streamed) < len(text_alone):
            streamed += next(chunks).token_ids
        text.cancel()  # the text ran the whole time: it ends now, by the test
        final = text.result()
    assert final.finish_reason == "cancelled"
    assert results == {0: alone[0], 1: alone[1]}
    assert streamed[:len(text_alone)] == text_alone


def test_image_over_several_decode_steps_matches_the_reference(vision_pair, photo_png):
    """n_batch 16 < 64 image tokens: the image's embeddings go in over four engine steps."""
    model_path, mmproj = vision_pair
    prompt = "Look: <__media__> What is it?"
    ref = llama_cpp_mtmd_greedy(model_path, mmproj, prompt, [photo_png], 6)
    with jan.Model(model_path, mmproj=mmproj, n_ctx=256, n_batch=16, n_threads=1) as model:
        assert model.media_marker == "<__media__>"
        got = model.generate(prompt, images=[photo_png], max_tokens=6, temperature=0, ignore_eos=True)
    assert got.token_ids == ref


def test_prompt_ending_with_an_image(vlm, photo_png):
    """The last prompt entry is an image embedding: its logits pick the first token
    (llama-cpp-python's helper asks no logits of image chunks, so there is no reference here)."""
    got = vlm.generate("Look: " + vlm.media_marker, images=[photo_png], max_tokens=6, temperature=0, ignore_eos=True)
    assert len(got.token_ids) == 6 and got.finish_reason == "length"
    again = vlm.generate("Look: " + vlm.media_marker, images=[photo_png], max_tokens=6, temperature=0,
                         ignore_eos=True)
    assert again.token_ids == got.token_ids  # the image re-evaluated from the cache boundary


def test_status_reports_projector_memory(vision_pair):
    model_path, mmproj = vision_pair
    with jan.Engine() as engine:
        engine.load("vlm", str(model_path), mmproj=str(mmproj), n_ctx=128, n_threads=1)
        status = engine.status()["vlm"]
        assert status["projector_memory_bytes"] > 100_000  # weights alone are ~128 kB
        assert status["memory_bytes"] > status["projector_memory_bytes"]


# -- decoding as a viewer shows the picture (jan.image_types.load_image, shared by every front end) -----
def _encoded(image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def test_exif_orientation_is_applied():
    """A phone photo is stored sideways with an EXIF tag saying how to turn it: the model gets it upright."""
    from jan.engine.media import decode_image
    from PIL import Image

    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    rgb, width, height = decode_image(_encoded(image, "JPEG", quality=95, exif=exif.tobytes()))
    assert (width, height) == (20, 40)
    upright = Image.frombytes("RGB", (width, height), rgb)
    top, bottom = upright.getpixel((10, 5)), upright.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60, top          # the red half is on top once turned
    assert bottom[2] > 200 and bottom[0] < 60, bottom


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_picture_as_a_viewer_does(orientation):
    """Each of EXIF's eight orientations gives the pixels Pillow's own ``exif_transpose`` gives (what viewers show)."""
    from jan.image_types import MAX_PIXELS, load_image
    from PIL import Image, ImageOps

    image = Image.new("RGB", (6, 4), (0, 0, 0))
    for x in range(6):
        for y in range(4):
            image.putpixel((x, y), (40 * x, 60 * y, 100))  # every pixel its own colour: any turn or flip shows
    exif = image.getexif()
    exif[0x0112] = orientation
    data = _encoded(image, "PNG", exif=exif.tobytes())
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    got = load_image(data, MAX_PIXELS)
    assert (got.size, got.tobytes()) == (expected.size, expected.tobytes())


def test_damaged_exif_is_no_reason_to_refuse_the_picture():
    """EXIF whose fields Pillow cannot write back (a numeric tag holding text) made its ``exif_transpose`` raise
    struct.error: a 500 in every front end for a picture any browser shows. The orientation is still read."""
    from jan.engine.media import decode_image
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    exif[0x010F] = "cam"  # Make...
    raw = exif.tobytes().replace(b"\x01\x0f\x00\x02", b"\x01\x4e\x00\x02")  # ...retagged NumberOfInks, a number
    assert raw != exif.tobytes()
    _, width, height = decode_image(_encoded(Image.new("RGB", (16, 12), (10, 200, 30)), "JPEG", exif=raw))
    assert (width, height) == (12, 16)


def test_damaged_images_are_media_errors_whatever_pillow_raises():
    """Bytes of good pictures changed at random (a fixed seed: the same cases every run) decode or are a
    MediaError -- never another exception, which a server would answer with a 500."""
    import random
    import warnings

    from jan.image_types import MAX_PIXELS, load_image
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 3
    exif[0x010F] = "cam"
    seeds = [_encoded(Image.new("RGB", (16, 12), (10, 200, 30)), "JPEG", exif=exif.tobytes()),
             _encoded(Image.new("RGBA", (16, 12), (10, 200, 30, 90)), "PNG", exif=exif.tobytes()),
             _encoded(Image.new("I;16", (8, 8), 4000), "PNG"),
             _encoded(Image.new("CMYK", (8, 8), (1, 2, 3, 4)), "JPEG"),
             _encoded(Image.new("RGB", (16, 12), (10, 200, 30)), "WEBP", exif=exif.tobytes()),
             _encoded(Image.new("P", (16, 12), 3), "GIF", transparency=3)]
    rng = random.Random(1234)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Pillow warns of the damage it reads past)
        for _ in range(3000):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                load_image(bytes(data), MAX_PIXELS)
            except jan.MediaError:
                pass


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF"])
def test_transparency_is_laid_over_white(fmt):
    """Transparent pixels are white, as a page shows them, not whatever colour they hold (black, mostly): black
    text on a transparent background must stay readable."""
    from jan.engine.media import decode_image
    from PIL import Image

    image = Image.new("RGBA", (16, 8), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (0, 0, 8, 8))  # opaque black on the left, transparent on the right
    if fmt == "GIF":
        image = image.convert("P", palette=Image.ADAPTIVE, colors=2)
        image.info["transparency"] = image.getpixel((12, 4))
        data = _encoded(image, "GIF", transparency=image.info["transparency"])
    else:
        data = _encoded(image, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    rgb, width, height = decode_image(data)
    decoded = Image.frombytes("RGB", (width, height), rgb)
    assert decoded.getpixel((2, 4)) == (0, 0, 0)
    assert decoded.getpixel((12, 4)) == (255, 255, 255)


@pytest.mark.parametrize("mode, key", [("RGB", (200, 10, 10)), ("L", 200), ("P", 1)])
def test_png_transparent_colour_is_laid_over_white(mode, key):
    """A PNG without an alpha channel can name one colour transparent (its tRNS chunk): those pixels are white
    too. An RGB PNG's was shown in its stored colour: the plain-RGB shortcut came before the check."""
    from jan.engine.media import decode_image
    from PIL import Image

    image = Image.new(mode, (16, 8), key)
    if mode == "P":
        image.putpalette([0, 0, 0, 200, 10, 10])
    image.paste(0, (0, 0, 8, 8))  # black (palette index 0) on the left, the transparent colour on the right
    rgb, width, height = decode_image(_encoded(image, "PNG", transparency=key))
    decoded = Image.frombytes("RGB", (width, height), rgb)
    assert decoded.getpixel((2, 4)) == (0, 0, 0)
    assert decoded.getpixel((12, 4)) == (255, 255, 255)


@pytest.mark.parametrize("mode, colour", [("RGBA", (0, 0, 0, 128)), ("LA", (0, 128))])
def test_half_transparent_pixels_are_blended_with_white(mode, colour):
    from jan.engine.media import decode_image
    from PIL import Image

    rgb, _, _ = decode_image(_encoded(Image.new(mode, (4, 4), colour), "PNG"))
    assert all(126 <= v <= 128 for v in rgb[:3]), rgb[:3]  # half black over white: mid grey


def test_16_bit_greyscale_is_scaled_not_clipped():
    from jan.engine.media import decode_image
    from PIL import Image

    rgb, _, _ = decode_image(_encoded(Image.new("I;16", (4, 4), 0x4000), "PNG"))  # a quarter of the range
    assert rgb[:3] == bytes([0x40] * 3)


def test_a_decompression_bomb_names_jans_limit():
    """Pillow's own bomb check (twice its MAX_IMAGE_PIXELS) fires before jan's pixel limit can: the error says
    jan's limit (too_large), not Pillow's."""
    import struct
    import zlib

    from jan.engine.media import DEFAULT_LIMITS, decode_image
    from PIL import Image

    png = bytearray(_png(Image.new("RGB", (1, 1))))
    png[16:24] = struct.pack(">II", 20000, 20000)  # the header says 400 megapixels
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    with pytest.raises(jan.MediaError) as info:
        decode_image(bytes(png))
    assert info.value.reason == "too_large"
    assert str(DEFAULT_LIMITS.max_pixels) in str(info.value) and "decompression bomb" not in str(info.value)
