"""A request's images together are held to MediaLimits.max_total_pixels by their files' headers, before any is
decoded, as its audio clips' total length is: refusing at the image that went over, after decoding every one
before it, cost a request of many large images seconds of CPU and a gigabyte of pixels each time."""

from __future__ import annotations

import io

import jan
import jan.engine.media as media
import pytest


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 200)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def small(vision_pair):
    model_path, mmproj = vision_pair
    limits = media.MediaLimits(max_total_pixels=3 * 64)
    with jan.Model(model_path, mmproj=mmproj, n_ctx=256, n_threads=1, media_limits=limits) as model:
        yield model


def test_images_over_the_total_are_refused_before_any_is_decoded(small, monkeypatch):
    decoded = []
    real = media.load_image
    monkeypatch.setattr(media, "load_image", lambda data, *a, **k: decoded.append(len(data)) or real(data, *a, **k))
    with pytest.raises(jan.MediaError, match="pixels accepted together") as info:
        small.media_inputs([_png(8, 8)] * 3 + [_png(1, 1)])
    assert (info.value.reason, info.value.item_index) == ("too_large", 3)
    assert decoded == []  # (every image before the fourth was decoded first)


def test_within_the_total_all_are_decoded_and_a_bad_file_first_is_said_first(small):
    assert len(small.media_inputs([_png(8, 8)] * 3)) == 3  # just the budget
    # a file whose header does not read ends the header check: the decoding says what is wrong with it
    with pytest.raises(jan.MediaError) as info:
        small.media_inputs([_png(8, 8), b"\x89PNG\r\n\x1a\nbroken", _png(8, 8), _png(8, 8)])
    assert (info.value.reason, info.value.item_index) == ("unsupported_format", 1)
    # a path, a PIL image or an array is counted as it is decoded, as before
    import numpy as np

    with pytest.raises(jan.MediaError, match="pixels accepted together") as info:
        small.media_inputs([np.zeros((8, 8, 3), np.uint8)] * 3 + [_png(1, 1)])
    assert info.value.item_index == 3


def test_header_pixels_reads_sizes_without_decoding():
    from jan.image_types import header_pixels

    assert header_pixels(_png(7, 5)) == 35
    assert header_pixels(b"not an image") is None and header_pixels(b"\x89PNG\r\n\x1a\n") is None


def test_a_request_whose_client_left_stops_decoding_at_its_next_image(small, monkeypatch):
    """The media workers' await cancelled (the client left): the rest of the request's images are not decoded for
    nobody, holding a worker the next request's pictures wait for (jan.engine.media.MEDIA_CANCEL)."""
    import asyncio
    import threading

    from jan.services.media_workers import on_media_worker

    started, gate, done = threading.Event(), threading.Event(), threading.Event()
    decoded = []
    real = media.load_image

    def load(data, *a, **k):
        decoded.append(len(data))
        started.set()
        assert gate.wait(60), "the test did not open the gate"
        return real(data, *a, **k)

    monkeypatch.setattr(media, "load_image", load)

    def work(items):
        try:
            return small.prepare_media(items)
        finally:
            done.set()

    async def leave() -> None:
        task = asyncio.ensure_future(on_media_worker(work, [_png(2, 2)] * 3))
        assert await asyncio.to_thread(started.wait, 60), "the first image was never decoded"
        task.cancel()  # (as a client's leaving cancels its request's task)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(leave())
    gate.set()  # the first image's decoding ends (it cannot be stopped midway)
    assert done.wait(60), "the worker did not end"
    assert decoded == [len(_png(2, 2))]  # (all three were decoded)
