"""llama.cpp's warnings that say nothing is wrong reach jan's log at DEBUG, the rest at their own level."""

from __future__ import annotations

import logging

import jan.engine.logs as logs


def test_an_unset_special_token_is_no_warning(monkeypatch, caplog):
    lines = [(3, "load: bad special token: 'tokenizer.ggml.seperator_token_id' = 4294967295, using default id -1\n"),
             (3, "load: bad special token: 'tokenizer.ggml.padding_token_id' = 70000, using default id 2\n"),
             (4, "llama_model_load: error loading model\n")]
    monkeypatch.setattr(logs._engine, "drain_logs", lambda: list(lines))
    with caplog.at_level(logging.DEBUG, logger="jan.llama"):
        records = logs.forward_native_logs()
    # the converter's "none" (0xFFFFFFFF) is llama.cpp's chatter; an id past the vocabulary stays a warning
    assert [level for level, _ in records] == [logging.DEBUG, logging.WARNING, logging.ERROR]
    assert [r.levelno for r in caplog.records if r.name == "jan.llama"] == [logging.DEBUG, logging.WARNING,
                                                                             logging.ERROR]
