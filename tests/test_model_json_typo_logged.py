"""A hand-edited model.json key that is a likely typo of one jan reads (``settings.ctx_lenn``) is logged when the model
loads, naming the key meant, once per model and key: such a file is never refused (another app's keys stay), and its
setting was silently not applied, the model loading with its default, with no word in the server's log (a PATCH
refuses the same key; ``jan models show`` tells it)."""

from __future__ import annotations

import json
import logging

from api_helpers import Client, running


async def test_a_typo_in_a_hand_edited_model_json_is_logged_once_at_load(tmp_path, stories_path, caplog):
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        async with Client(srv.base_url) as api:
            await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "typo", "mode": "reference"}, 201)
            path = data / "models" / "typo" / "model.json"
            model = json.loads(path.read_text())
            model["settings"]["ctx_lenn"] = 512  # by hand: never refused
            model["settings"]["other_apps_key"] = 1  # like no key jan reads: no typo, nothing said
            path.write_text(json.dumps(model))
            with caplog.at_level(logging.WARNING, logger="jan.llamacpp"):
                for _ in range(2):
                    await api.ok("POST", "/v1/models/typo/start")
                    await api.ok("POST", "/v1/models/typo/stop")
            told = [r.getMessage() for r in caplog.records if "ctx_lenn" in r.getMessage()]
            assert told == ["model 'typo': settings.ctx_lenn: jan reads no such key: did you mean 'settings.ctx_len'? "
                            "(a key it does not read is kept but never used)"], told
            assert not [r for r in caplog.records if "other_apps_key" in r.getMessage()]
