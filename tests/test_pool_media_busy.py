"""A chat's model is held from its template to its submit: encoding its images can outlast the pool's claim on
the model, and with ``--max-loaded-models 1`` a load of another model must not unload it meanwhile (the chat then
failed with ``model_unloaded``)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import jan
import jan.engine.registry as registry
from jan.core import LocalModel
from jan.engine.registry import ModelPoolBusyError
from jan.services.chat import _start
from jan.services.types import ChatMessage, ChatRequest, ImagePart, SamplingOptions, TextPart
from jan.templates import ChatTemplate

GENEROUS_S = 300  # bounds for waits: a busy 2-core machine, never a pacing


def test_a_model_encoding_a_chats_images_is_not_unloaded_for_another(vision_pair, test_image_path, stories_path,
                                                                     monkeypatch):
    monkeypatch.setattr(registry, "CLAIM_GRACE_S", 0.0)  # the claim lapses at once: only the hold keeps the model
    model_path, mmproj = vision_pair
    with jan.ModelPool(max_loaded=1, room_timeout=0.2, n_threads=1) as pool:
        model = pool.load("v", model_path, mmproj=mmproj, claim=True)
        inside, gate = threading.Event(), threading.Event()
        encode = model.prepare_media

        def slow_encode(items):  # the encode of a big image on a slow CPU
            inside.set()
            assert gate.wait(GENEROUS_S), "the test never opened the gate"
            return encode(items)

        model.prepare_media = slow_encode
        local = LocalModel(model, ChatTemplate(model.chat_template, "", ""))
        request = ChatRequest("v", (ChatMessage("user", (ImagePart(test_image_path.read_bytes(), "image/jpeg"),
                                                         TextPart("What is in the picture?"))),),
                              sampling=SamplingOptions.from_mapping({"max_tokens": 4}))
        with ThreadPoolExecutor(1) as run:
            started = run.submit(_start, local, request, None)
            try:
                assert inside.wait(GENEROUS_S)
                with pytest.raises(ModelPoolBusyError):
                    pool.load("s", stories_path)  # waits for room, which the chat holds, and gives up
                assert pool.loaded() == ["v"]
            finally:
                gate.set()
            start = started.result(GENEROUS_S)
        chunks = list(start.requests[0])
        assert chunks[-1].finish_reason in ("length", "stop")
