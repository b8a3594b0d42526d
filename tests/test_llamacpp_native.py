"""llama-server's native endpoints (``POST /completion``, ``POST /infill``, ``GET /props``) on a real jan server:
its wire shapes, its field names mapped onto jan's one completion path, its error shape."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from jan.testing.gguf_models import TINY_CHAT_CONFIG, _read_tokenizer_kv, vocab_path, write_llama_from_vocab
from server_helpers import ok, post, start_server

STORY = "Once upon a time"
FIM = "fim-repo-coder"  # FIM tokens and the repo-level ones (Qwen2.5-Coder's layout)
FIM_PLAIN = "fim-coder"  # FIM tokens only
FIM_TEXT = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")


def write_fim_model(path: Path, repo: bool) -> Path:
    """Tiny random llama with the phi-3 vocabulary plus fill-in-the-middle tokens (and with ``repo`` the repo-name
    and file-separator tokens)."""
    n = len(_read_tokenizer_kv(vocab_path("phi-3"))["tokenizer.ggml.tokens"].value)
    extra = FIM_TEXT + (("<|repo_name|>", "<|file_sep|>") if repo else ())
    kv = {"tokenizer.ggml.fim_pre_token_id": n, "tokenizer.ggml.fim_suf_token_id": n + 1,
          "tokenizer.ggml.fim_mid_token_id": n + 2}
    if repo:
        kv |= {"tokenizer.ggml.fim_rep_token_id": n + 3, "tokenizer.ggml.fim_sep_token_id": n + 4}
    return write_llama_from_vocab(path, vocab_path("phi-3"), **TINY_CHAT_CONFIG, extra_special_tokens=extra,
                                  extra_kv=kv)


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("native")
    srv = start_server(tmp, [stories_path, write_fim_model(tmp / f"{FIM}.gguf", repo=True),
                             write_fim_model(tmp / f"{FIM_PLAIN}.gguf", repo=False)])
    yield srv
    srv.stop()


def sse(response: httpx.Response) -> list[dict]:
    """The ``data:`` objects of llama-server's native stream (which ends without ``[DONE]``)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    assert "data: [DONE]" not in lines
    return [json.loads(line[len("data: "):]) for line in lines]


def refused(server, path: str, body, says: str = "") -> str:
    """The 400 in llama-server's error shape; its message."""
    response = post(server, path, body)
    assert response.status_code == 400, (body, response.status_code, response.text)
    err = response.json()["error"]
    assert err["code"] == 400 and err["type"] == "invalid_request_error" and err["message"], err
    assert says in err["message"], (says, err)
    return err["message"]


GREEDY = {"model": "stories260K", "temperature": 0}


# -- /completion ----------------------------------------------------------------------------------
def test_completion_is_llama_servers_result_and_jans_greedy_text(server):
    result = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 12})
    openai = ok(server, "/v1/completions", GREEDY | {"prompt": STORY, "max_tokens": 12})
    assert result["content"] == openai["choices"][0]["text"] and result["content"].startswith(", there was")
    assert result["stop"] is True and result["stop_type"] == "limit" and result["stopping_word"] == ""
    assert result["tokens_predicted"] == 12 and result["tokens_evaluated"] == openai["usage"]["prompt_tokens"]
    # the prompt as llama-server spells it: its tokens' pieces, the BOS as its text
    assert result["model"] == "stories260K" and result["prompt"] == "<s> " + STORY and result["truncated"] is False
    assert result["tokens"] == []  # (only with return_tokens)
    timings = result["timings"]
    for key in ("prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms", "predicted_per_second"):
        assert isinstance(timings[key], (int, float)), key
    assert timings["predicted_n"] == 12 and timings["prompt_n"] + timings["cache_n"] == result["tokens_evaluated"]
    settings = result["generation_settings"]
    assert settings["n_predict"] == 12 and settings["temperature"] == 0 and settings["top_k"] == 40
    assert settings["samplers"] == ["penalties", "top_k", "typ_p", "top_p", "min_p", "temperature"]


# What llama-server 0.3.36 answers (side by side on the same GGUF): every field of a result, of a partial result,
# of its generation_settings and timings, and of /props that its clients read. jan may add fields; none of these
# may be missing, nor of another JSON type.
RESULT = {"index": int, "content": str, "tokens": list, "id_slot": int, "stop": bool, "model": str,
          "tokens_predicted": int, "tokens_evaluated": int, "generation_settings": dict, "prompt": str,
          "has_new_line": bool, "truncated": bool, "stop_type": str, "stopping_word": str, "tokens_cached": int,
          "timings": dict}
PARTIAL = {"index": int, "content": str, "tokens": list, "stop": bool, "id_slot": int, "tokens_predicted": int,
           "tokens_evaluated": int}
NUMBER = (int, float)
SETTINGS = {"seed": int, "temperature": NUMBER, "dynatemp_range": NUMBER, "dynatemp_exponent": NUMBER,
            "top_k": int, "top_p": NUMBER, "min_p": NUMBER, "top_n_sigma": NUMBER, "xtc_probability": NUMBER,
            "xtc_threshold": NUMBER, "typical_p": NUMBER, "repeat_last_n": int, "repeat_penalty": NUMBER,
            "presence_penalty": NUMBER, "frequency_penalty": NUMBER, "dry_multiplier": NUMBER, "dry_base": NUMBER,
            "dry_allowed_length": int, "dry_penalty_last_n": int, "mirostat": int, "mirostat_tau": NUMBER,
            "mirostat_eta": NUMBER, "adaptive_target": NUMBER, "adaptive_decay": NUMBER, "max_tokens": int,
            "n_predict": int, "n_keep": int, "n_discard": int, "ignore_eos": bool, "stream": bool, "n_probs": int,
            "min_keep": int, "chat_format": str, "reasoning_format": str, "reasoning_in_content": bool,
            "generation_prompt": str, "samplers": list, "speculative.types": str, "timings_per_token": bool,
            "post_sampling_probs": bool, "backend_sampling": bool, "lora": list}
RESULT_SETTINGS = SETTINGS | {"stop": list, "logit_bias": list, "grammar": str, "grammar_lazy": bool,
                              "grammar_triggers": list, "preserved_tokens": list, "dry_sequence_breakers": list}
TIMINGS = dict.fromkeys(("cache_n", "prompt_n", "predicted_n"), int) | dict.fromkeys(
    ("prompt_ms", "prompt_per_token_ms", "prompt_per_second", "predicted_ms", "predicted_per_token_ms",
     "predicted_per_second"), NUMBER)


def has_shape(obj: dict, shape: dict, where: str) -> None:
    for key, kind in shape.items():
        assert key in obj, f"{where}: no {key}"
        value = obj[key]
        assert isinstance(value, kind) and not (kind in (int, NUMBER) and isinstance(value, bool)), \
            f"{where}.{key}: {value!r}"


def test_results_have_every_field_of_llama_servers_in_its_type(server):
    result = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 4})
    has_shape(result, RESULT, "result")
    has_shape(result["generation_settings"], RESULT_SETTINGS, "generation_settings")
    has_shape(result["timings"], TIMINGS, "timings")
    assert result["generation_settings"]["max_tokens"] == 4 and result["generation_settings"]["stream"] is False
    # tokens_cached: what the slot holds after it (prompt and output, less the last token never evaluated), which
    # llama.vim shows as the context used
    assert result["tokens_cached"] == result["tokens_evaluated"] + result["tokens_predicted"] - 1 == 8
    events = sse(post(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 4, "stream": True}))
    for partial in events[:-1]:
        has_shape(partial, PARTIAL, "partial")
        # a partial tells its tokens without return_tokens (as llama-server's do) and the prompt's size
        assert partial["tokens"] and partial["tokens_evaluated"] == result["tokens_evaluated"]
    assert sum(len(e["tokens"]) for e in events[:-1]) == 4
    has_shape(events[-1], RESULT, "final")
    assert events[-1]["generation_settings"]["stream"] is True and events[-1]["tokens"] == []
    props = httpx.get(server.base_url + "/props", params={"model": "stories260K"}, timeout=120).json()
    has_shape(props, {"default_generation_settings": dict, "total_slots": int, "model_path": str, "modalities": dict,
                      "chat_template": str, "build_info": str, "model_alias": str, "bos_token": str,
                      "eos_token": str, "is_sleeping": bool}, "props")
    has_shape(props["default_generation_settings"], {"n_ctx": int, "params": dict}, "default_generation_settings")
    has_shape(props["default_generation_settings"]["params"], SETTINGS, "params")
    has_shape(props["modalities"], {"vision": bool, "audio": bool, "video": bool}, "modalities")


def test_a_prompt_too_long_tells_its_size_and_the_context(server):
    # llama-server's exceed_context_size_error carries n_prompt_tokens and n_ctx (what llama.vscode shows)
    for stream in (False, True):
        response = post(server, "/completion", {"model": "stories260K", "prompt": STORY * 200, "stream": stream})
        assert response.status_code == 400, response.text
        err = response.json()["error"]
        assert err["type"] == "exceed_context_size_error" and err["code"] == 400, err
        assert err["n_ctx"] == 512 and err["n_prompt_tokens"] > 512, err


def test_stream_sends_partials_then_the_final_result(server):
    whole = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 20})
    events = sse(post(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 20, "stream": True,
                                                       "return_tokens": True}))
    partials, final = events[:-1], events[-1]
    assert partials and all(e["stop"] is False and "content" in e and "tokens" in e for e in partials)
    assert "".join(e["content"] for e in partials) == whole["content"]
    assert sum(len(e["tokens"]) for e in partials) == 20
    assert final["stop"] is True and final["stop_type"] == "limit" and final["tokens_predicted"] == 20
    assert final["content"] == "" and final["timings"]["predicted_n"] == 20  # (the text came in the partials)
    for key in ("stopping_word", "tokens_evaluated", "generation_settings", "model", "truncated"):
        assert key in final, key


def test_a_stop_word_ends_it_with_stop_type_word(server):
    for stream in (False, True):
        body = GREEDY | {"prompt": STORY, "n_predict": 40, "stop": ["Lily", "never-said"], "stream": stream}
        if stream:
            events = sse(post(server, "/completion", body))
            final, content = events[-1], "".join(e["content"] for e in events)
        else:
            final = ok(server, "/completion", body)
            content = final["content"]
        assert final["stop_type"] == "word" and final["stopping_word"] == "Lily", final
        assert content == ", there was a little girl named " and "Lily" not in content


def test_n_predict_minus_one_runs_to_the_end_and_zero_generates_nothing(server):
    result = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": -1})
    # until the end of the story (its end-of-generation token) or of the context (512 tokens a slot)
    assert result["stop_type"] in ("eos", "limit") and result["tokens_predicted"] > 40, result["stop_type"]
    if result["stop_type"] == "limit":
        assert result["tokens_predicted"] + result["tokens_evaluated"] >= 512
    assert result["generation_settings"]["n_predict"] == -1
    nothing = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 0})
    assert nothing["content"] == "" and nothing["tokens_predicted"] == 0 and nothing["tokens_evaluated"] > 0
    # max_tokens is llama-server's other name for it
    assert ok(server, "/completion", GREEDY | {"prompt": STORY, "max_tokens": 3})["tokens_predicted"] == 3


def test_llama_servers_off_values_are_taken_as_it_reads_them(server):
    """A temperature below 0 is greedy and a top_k <= 0 no top-k to llama-server (llama.cpp's sampler chain): taken,
    not a 400 (jan's other dialects keep their own ranges: test_ollama_faults, test_dialect_conformance)."""
    greedy = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 8})["content"]
    body = {"model": "stories260K", "prompt": STORY, "n_predict": 8}
    assert ok(server, "/completion", body | {"temperature": -1})["content"] == greedy
    assert ok(server, "/completion", GREEDY | body | {"top_k": -1})["content"] == greedy
    refused(server, "/completion", body | {"temperature": 2.5}, "temperature")


def test_token_id_and_mixed_prompts_read_as_the_text(server):
    text = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 8})
    ids = ok(server, "/tokenize", {"model": "stories260K", "content": STORY, "add_special": True})["tokens"]
    by_ids = ok(server, "/completion", GREEDY | {"prompt": ids, "n_predict": 8, "return_tokens": True})
    assert by_ids["content"] == text["content"] and by_ids["tokens_evaluated"] == len(ids)
    mixed = ok(server, "/completion", GREEDY | {"prompt": [ids[0], STORY], "n_predict": 8})  # BOS id, then text
    assert mixed["content"] == text["content"]
    # return_tokens: the generated ids, which detokenize to the content
    assert len(by_ids["tokens"]) == 8
    assert ok(server, "/detokenize", {"model": "stories260K", "tokens": by_ids["tokens"]})["content"] == \
        by_ids["content"]


def test_several_prompts_answer_one_result_each(server):
    prompts = [STORY, "The cat"]
    results = ok(server, "/completion", GREEDY | {"prompt": prompts, "n_predict": 6})
    assert isinstance(results, list) and [r["index"] for r in results] == [0, 1]
    for prompt, result in zip(prompts, results):
        alone = ok(server, "/completion", GREEDY | {"prompt": prompt, "n_predict": 6})
        assert result["content"] == alone["content"] and result["prompt"] == "<s> " + prompt
        assert result["tokens_evaluated"] == alone["tokens_evaluated"] and result["tokens_predicted"] == 6
    events = sse(post(server, "/completion", GREEDY | {"prompt": prompts, "n_predict": 6, "stream": True}))
    finals = [e for e in events if e["stop"]]
    assert sorted(e["index"] for e in finals) == [0, 1]  # one each, sent as each ends (as llama-server's)
    for final in finals:
        after = events[events.index(final) + 1:]
        assert not [e for e in after if e["index"] == final["index"]], "a partial after its result's end"
        assert final["tokens_predicted"] == 6 and final["tokens_evaluated"] == results[final["index"]][
            "tokens_evaluated"] and final["content"] == ""
    for i, result in enumerate(results):
        assert "".join(e["content"] for e in events if e["index"] == i) == result["content"]


def test_probabilities_response_fields_logit_bias_and_json_schema(server):
    result = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 3, "n_probs": 2, "return_tokens": True})
    probs = result["completion_probabilities"]
    assert [p["id"] for p in probs] == result["tokens"]
    assert all(len(p["top_logprobs"]) == 2 and p["logprob"] <= 0 and "bytes" in p for p in probs)
    # response_fields: only those, a/b under its path (as llama-server answers, and llama.vim reads)
    picked = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 2,
                                                 "response_fields": ["content", "generation_settings/n_predict"]})
    assert set(picked) == {"content", "generation_settings/n_predict"} and picked["generation_settings/n_predict"] == 2
    # logit_bias false bans a token: the greedy first token is never said
    first = result["tokens"][0]
    for bias in ([[first, False]], {str(first): False}):
        banned = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 3, "return_tokens": True,
                                                     "logit_bias": bias})
        assert banned["tokens"][0] != first
    # ... and so does its text, as llama-server takes it: the text's tokens (no special ones added), each biased (was a
    # 400: text tokens "not supported"); checked against llama-server 0.3.36's answers to the same bodies
    plain = ok(server, "/completion", GREEDY | {"prompt": "Once upon a time", "n_predict": 4, "return_tokens": True})
    assert plain["tokens"][0] == 432  # ","
    for bias in ([[",", False]], {",": False}, [[",", -100]]):
        banned = ok(server, "/completion", GREEDY | {"prompt": "Once upon a time", "n_predict": 4,
                                                     "return_tokens": True, "logit_bias": bias})
        assert banned["tokens"] == [383, 286, 261, 376], bias  # " there was a little", as llama-server says
        told = banned["generation_settings"]["logit_bias"]
        assert [b["token"] for b in told] == [410, 432]  # (SentencePiece's leading space, then ",")
    several = ok(server, "/completion", GREEDY | {"prompt": "Once upon a time", "n_predict": 4, "return_tokens": True,
                                                  "logit_bias": [[" there was", -100], [5, 0.5]]})
    assert [(b["token"], b["bias"]) for b in several["generation_settings"]["logit_bias"]] == \
        [(410, -100.0), (383, -100.0), (286, -100.0), (5, 0.5)]
    assert several["tokens"] == [432, 322, 261, 262]
    # an object's key that is a number (spaces and a sign allowed, as strtol takes it) is an id, not text
    keyed = ok(server, "/completion", GREEDY | {"prompt": "Once upon a time", "n_predict": 1,
                                                "logit_bias": {" 383 ": -1, "+286": -2}})
    assert [(b["token"], b["bias"]) for b in keyed["generation_settings"]["logit_bias"]] == [(383, -1.0), (286, -2.0)]
    shaped = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 4, "json_schema": {}})
    assert shaped["content"].startswith("{")


def test_harmless_and_unknown_fields_are_accepted(server):
    # what llama.vscode and llama.vim send besides the sampling: caching, slots, prompt-time limits
    result = ok(server, "/completion", GREEDY | {
        "prompt": STORY, "n_predict": 4, "cache_prompt": True, "id_slot": 0, "t_max_prompt_ms": 500, "n_keep": -1,
        "timings_per_token": False, "seed": -1, "samplers": ["top_k", "top_p", "temperature"], "dry_multiplier": 0,
        "xtc_probability": 0, "lora": [], "some_client_option": {"x": 1}})
    assert result["tokens_predicted"] == 4


def test_min_keep_of_one_is_what_jans_samplers_do(server):
    """min_keep 1 (llama-server clients send it) was refused as "not supported": jan's truncating samplers keep one
    candidate at least, as llama.cpp's do with min_keep 0 or 1, so both are accepted and change nothing; more is
    still refused."""
    body = GREEDY | {"prompt": STORY, "n_predict": 4, "return_tokens": True, "top_k": 5, "top_p": 0.5, "min_p": 0.2}
    plain = ok(server, "/completion", body)
    for keep in (0, 1):
        assert ok(server, "/completion", body | {"min_keep": keep})["tokens"] == plain["tokens"]
    for keep in (2, True):
        response = post(server, "/completion", body | {"min_keep": keep})
        assert response.status_code == 400 and "min_keep" in response.json()["error"]["message"], response.text


# -- /infill --------------------------------------------------------------------------------------
PREFIX, SUFFIX = "def add(a, b):\n", "\n\nprint(add(1, 2))\n"


def test_infill_is_the_fill_in_the_middle_of_v1_completions_suffix(server):
    body = {"model": FIM_PLAIN, "temperature": 0}
    infill = ok(server, "/infill", body | {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 6})
    same = ok(server, "/v1/completions", body | {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 6})
    assert infill["content"] == same["choices"][0]["text"] and infill["tokens_predicted"] == 6
    # the prompt the model read, its FIM tokens spelled: prefix, then suffix, then the middle to write
    prompt = infill["prompt"]
    assert prompt.index("<|fim_prefix|>") < prompt.index("<|fim_suffix|>") < prompt.index("<|fim_middle|>")
    assert prompt.endswith("<|fim_middle|>") and "add(1, 2)" in prompt
    # prompt: the text typed after the prefix
    typed = ok(server, "/infill", body | {"input_prefix": PREFIX, "prompt": "    return", "input_suffix": SUFFIX,
                                          "n_predict": 1})
    assert "    return<|fim_suffix|>" in typed["prompt"]


def test_infill_extra_files_come_before_the_prefix_framed_as_a_repository(server):
    extra = [{"filename": "util.py", "text": "def sub(a, b):\n    return a - b\n"}, {"text": "X = 1\n"}]
    result = ok(server, "/infill", {"model": FIM, "input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": extra,
                                    "n_predict": 3, "temperature": 0})
    prompt = result["prompt"]
    order = ["<|repo_name|>", "myproject", "<|file_sep|>", "util.py", "return a - b", "<|file_sep|>", "tmp",
             "X = 1", "<|file_sep|>", "filename", "<|fim_prefix|>", "def add", "<|fim_suffix|>", "<|fim_middle|>"]
    at = -1
    for piece in order:
        at = prompt.index(piece, at + 1)  # each after the one before
    # a model without the repo tokens gets each file after a snippet line
    plain = ok(server, "/infill", {"model": FIM_PLAIN, "input_prefix": PREFIX, "input_suffix": SUFFIX,
                                   "input_extra": extra, "n_predict": 3, "temperature": 0})["prompt"]
    assert plain.count("--- snippet ---") == 2 and "<|file_sep|>" not in plain
    assert plain.index("return a - b") < plain.index("X = 1") < plain.index("<|fim_prefix|>")
    # without extra files llama-server still frames the file as a repository's (the same greedy output as its)
    bare = ok(server, "/infill", {"model": FIM, "input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 1})
    assert bare["prompt"].startswith("<s><|repo_name|> myproject\n<|file_sep|> filename\n<|fim_prefix|>"), bare
    # ... where the model has those tokens; and /v1/completions' suffix (not llama-server's) stays plain
    assert ok(server, "/infill", {"model": FIM_PLAIN, "input_prefix": PREFIX, "input_suffix": SUFFIX,
                                  "n_predict": 1})["prompt"].startswith("<s><|fim_prefix|>")


def test_extra_files_give_way_to_a_full_context(server):
    # 512 tokens a slot: the extra files' oldest tokens are dropped, the FIM prompt is whole
    extra = [{"filename": f"f{i}.py", "text": f"value_{i} = {i} * 12345 + 678\n" * 20} for i in range(8)]
    result = ok(server, "/infill", {"model": FIM, "input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": extra,
                                    "n_predict": 16, "temperature": 0})
    assert result["tokens_evaluated"] + 16 <= 512
    prompt = result["prompt"]
    assert "value_7" in prompt and prompt.index("<|fim_prefix|>") < prompt.index("def add(a, b)")
    assert "value_0 =" not in result["prompt"]


def test_a_prefix_and_suffix_too_long_give_way_as_llama_server_cuts_them(server):
    prefix = "".join(f"line_{i} = {i}\n" for i in range(200)) + "def add(a, b):\n"
    suffix = "\nprint(add(1, 2))\n" + "".join(f"tail_{i} = {i}\n" for i in range(200))
    result = ok(server, "/infill", {"model": FIM, "input_prefix": prefix, "input_suffix": suffix, "n_predict": 16,
                                    "temperature": 0})
    prompt = result["prompt"]
    assert result["tokens_evaluated"] + 16 <= 512 and result["tokens_predicted"] == 16
    # the code nearest the gap is kept: the prefix's end, the suffix's start
    assert "def add(a, b)" in prompt and "print(add(1, 2))" in prompt
    assert "line_0 =" not in prompt and "tail_199" not in prompt
    assert prompt.index("<|fim_prefix|>") < prompt.index("def add") < prompt.index("<|fim_suffix|>")
    # elsewhere a fill-in-the-middle prompt too long stays a 400 (nothing is dropped without being asked)
    response = post(server, "/v1/completions", {"model": FIM, "prompt": prefix, "suffix": suffix, "max_tokens": 16})
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"


def test_infill_streams_as_completion_does(server):
    body = {"model": FIM, "input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 5, "temperature": 0}
    whole = ok(server, "/infill", body)
    events = sse(post(server, "/infill", body | {"stream": True}))
    assert events[-1]["stop"] is True and events[-1]["tokens_predicted"] == 5
    assert "".join(e["content"] for e in events) == whole["content"]


def test_the_bodies_editor_plugins_send_are_served(server):
    """llama.vim's and llama.vscode's requests as they send them (the warm-up with n_predict 0 too)."""
    fields = ["content", "timings/prompt_n", "timings/prompt_ms", "timings/prompt_per_token_ms",
              "timings/prompt_per_second", "timings/predicted_n", "timings/predicted_ms",
              "timings/predicted_per_token_ms", "timings/predicted_per_second", "truncated", "tokens_cached"]
    extra = [{"text": "import os\n", "time": 12.5, "filename": "a.py"}]
    vim = {"id_slot": 0, "input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": extra, "prompt": "    ",
           "n_predict": 8, "stop": [], "n_indent": 4, "top_k": 40, "top_p": 0.90,
           "samplers": ["top_k", "top_p", "infill"], "stream": False, "cache_prompt": True, "t_max_prompt_ms": 500,
           "t_max_predict_ms": 1000, "response_fields": fields, "model": FIM}
    result = ok(server, "/infill", vim)
    assert set(result) == set(fields) and isinstance(result["content"], str), result
    assert result["timings/predicted_n"] <= 8 and result["truncated"] is False
    settings = ok(server, "/infill", vim | {"response_fields": ["generation_settings"]})["generation_settings"]
    assert settings["samplers"] == ["top_k", "top_p", "infill"] and settings["top_k"] == 40 and settings["min_p"] == 0
    assert settings["temperature"] == 1.0  # (no temperature sampler: the distribution as it is)
    warm = ok(server, "/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": extra, "prompt": "",
                                  "n_predict": 0, "samplers": [], "cache_prompt": True, "t_max_prompt_ms": 500,
                                  "t_max_predict_ms": 1, "model": FIM})
    assert warm["content"] == "" and warm["tokens_predicted"] == 0
    vscode = ok(server, "/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": extra,
                                    "prompt": "", "n_predict": 8, "top_k": 40, "top_p": 0.99, "stream": False,
                                    "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True, "n_indent": 4,
                                    "t_max_prompt_ms": 500, "t_max_predict_ms": 2500, "n_cmpl": 2, "model": FIM})
    assert isinstance(vscode, list) and [r["index"] for r in vscode] == [0, 1]


# -- the output rules llama-server applies (n_indent, t_max_predict_ms) ------------------------------
# (the rules themselves, and on every route that takes them: tests/test_line_rules.py)
def test_t_max_predict_ms_on_a_real_generation(server):
    full = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 300})
    assert "\n" in full["content"]
    cut = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 300, "t_max_predict_ms": 1})
    # (1 ms has passed by the first newline): it ends there, with what came up to it
    assert cut["stop_type"] == "limit" and "\n" in cut["content"]
    assert full["content"].startswith(cut["content"]) and len(cut["content"]) < len(full["content"])
    assert 0 < cut["tokens_predicted"] < full["tokens_predicted"] and cut["tokens_evaluated"] > 0


# -- bad input: llama-server's error shape, never a 500 ---------------------------------------------
@pytest.mark.parametrize("body,says", [
    ({"prompt": 5}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": STORY, "n_predict": "3"}, "n_predict"),
    ({"prompt": STORY, "n_predict": -2}, "n_predict"),
    ({"prompt": STORY, "temperature": "hot"}, "temperature"),
    ({"prompt": STORY, "stream": "yes"}, "stream"),
    ({"prompt": STORY, "stop": 3}, "stop"),
    ({"prompt": [STORY, 2**40]}, "prompt"),
    ({"prompt": [1, 2**30]}, "token"),
    ({"prompt": STORY, "model": "no-such-model"}, "no-such-model"),
    ({"prompt": STORY, "n_probs": 99}, "n_probs"),
    ({"prompt": STORY, "dry_multiplier": 0.8}, "dry_multiplier"),
    ({"prompt": STORY, "xtc_probability": 0.5}, "xtc_probability"),
    ({"prompt": STORY, "lora": [{"id": 0, "scale": 0.5}]}, "lora"),
    ({"prompt": STORY, "image_data": [{"data": "AAAA", "id": 1}]}, "image_data"),
    ({"prompt": STORY, "samplers": ["top_k", "nonsense"]}, "samplers"),
    ({"prompt": STORY, "samplers": ["temperature", "top_k"]}, "samplers"),
    ({"prompt": STORY, "samplers": ["infill", "top_k"]}, "samplers"),  # (infill after the others, as clients list it)
    ({"prompt": STORY, "logit_bias": {"-1": 1.0}}, "logit_bias"),  # (a number: an id, not text to tokenize)
    ({"prompt": STORY, "logit_bias": [[1, "x"]]}, "logit_bias"),
    ({"prompt": STORY, "grammar": "root ::= \"a\"", "json_schema": {}}, "grammar"),
    ({"prompt": STORY, "grammar": "root ::= nope"}, ""),
    ({"prompt": STORY * 200}, ""),  # longer than the context: llama-server's exceed_context_size_error
])
def test_bad_completion_bodies_are_400_in_llama_servers_shape(server, body, says):
    body = {"model": "stories260K", **body}
    for stream in (False, True):  # (a stream refused before its first byte answers the error, not events)
        response = post(server, "/completion", body | {"stream": True} if stream and body.get("stream") is None
                         else body)
        assert response.status_code == 400, (body, response.status_code, response.text)
        err = response.json()["error"]
        assert err["code"] == 400 and err["type"] in ("invalid_request_error", "exceed_context_size_error"), err
        assert says in err["message"], (says, err)


# -- lazy grammars: free text until a trigger, the grammar's from there on -------------------------------------
LAZY = GREEDY | {"prompt": STORY, "n_predict": 24, "grammar": 'root ::= "was" " 42"+', "grammar_lazy": True}
#: stories260K's greedy text after STORY, which says " was" (token 286) early: ", there was a little girl named..."
WAS_TOKEN = 286


@pytest.mark.parametrize("trigger", [
    {"type": 1, "value": "was"},
    {"type": "word", "value": "was"},
    {"type": 2, "value": "(?:the)re (was)"},  # (the first group that matched starts the grammar's text)
    {"type": "pattern", "value": "w[a]s"},
    {"type": 3, "value": "[\\s\\S]*there (was)"},  # (anchored ^...$: the whole text so far)
    {"type": 0, "value": " was", "token": WAS_TOKEN},
])
def test_a_lazy_grammar_holds_from_its_trigger_on(server, trigger):
    free = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 24})["content"]
    assert free.startswith(", there was a little"), free
    body = LAZY | {"grammar_triggers": [trigger]}
    if trigger["type"] == 0:
        body["grammar"] = 'root ::= " was" " 42"+'
    result = ok(server, "/completion", body)
    text = result["content"]
    # free text before the trigger (the model's own, as without a grammar), the grammar's after it
    assert text.startswith(", there was 42 42"), text
    assert set(text[len(", there was"):]) <= set(" 42"), text
    settings = result["generation_settings"]
    assert settings["grammar_lazy"] is True
    told = {"type": trigger["type"] if type(trigger["type"]) is int else
            ["token", "word", "pattern", "pattern_full"].index(trigger["type"]), "value": trigger["value"]}
    assert settings["grammar_triggers"] == [told | ({"token": WAS_TOKEN} if told["type"] == 0 else {})]


def test_a_lazy_grammar_never_triggered_leaves_the_text_free(server):
    free = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 24})["content"]
    for stream in (False, True):
        body = LAZY | {"grammar_triggers": [{"type": 1, "value": "zebra"}], "stream": stream}
        if stream:
            text = "".join(e["content"] for e in sse(post(server, "/completion", body)))
        else:
            text = ok(server, "/completion", body)["content"]
        assert text == free


def test_triggers_of_a_grammar_that_is_not_lazy_are_read_and_the_grammar_holds_whole(server):
    # (llama-server's: the triggers of a grammar_lazy false are checked, and the grammar constrains everything)
    text = ok(server, "/completion", LAZY | {"grammar_lazy": False,
                                             "grammar_triggers": [{"type": 1, "value": "zebra"}]})["content"]
    assert text.startswith("was 42"), text
    refused(server, "/completion", LAZY | {"grammar_lazy": False, "grammar_triggers": [{"type": 9, "value": "x"}]},
            "grammar_triggers[0].type")


@pytest.mark.parametrize("body,says", [
    ({"grammar_triggers": [{"type": 7, "value": "was"}]}, "grammar_triggers[0].type: unknown trigger type 7"),
    ({"grammar_triggers": [{"type": "words", "value": "was"}]}, "unknown trigger type 'words'"),
    ({"grammar_triggers": [{"type": True, "value": "was"}]}, "grammar_triggers[0].type"),
    ({"grammar_triggers": [{"value": "was"}]}, "grammar_triggers[0].type"),
    ({"grammar_triggers": [{"type": 1, "value": 5}]}, "grammar_triggers[0].value: must be a string"),
    ({"grammar_triggers": [{"type": 1}]}, "grammar_triggers[0].value"),
    ({"grammar_triggers": [{"type": 1, "value": ""}]}, "grammar_triggers[0].value"),
    ({"grammar_triggers": ["was"]}, "grammar_triggers[0]: a trigger is an object"),
    ({"grammar_triggers": {"type": 1, "value": "was"}}, "grammar_triggers"),
    ({"grammar_triggers": [{"type": 1, "value": "x"}, {"type": 2, "value": "a(b"}]},
     "grammar_triggers[1].value: not a regular expression"),
    ({"grammar_triggers": [{"type": 3, "value": "[z"}]}, "grammar_triggers[0].value"),
    ({"grammar_triggers": [{"type": 0, "value": "x"}]}, "grammar_triggers[0].token"),
    ({"grammar_triggers": [{"type": 0, "value": "x", "token": -1}]}, "grammar_triggers[0].token"),
    ({"grammar_triggers": [{"type": 0, "value": "x", "token": "5"}]}, "grammar_triggers[0].token"),
    ({"grammar_triggers": [{"type": 0, "value": "x", "token": 10**6}]},
     "grammar_triggers: token id 1000000 is outside the model's vocabulary"),
    ({"grammar_triggers": []}, "no triggers set for the lazy grammar"),
    ({"grammar_triggers": None}, "no triggers set for the lazy grammar"),
    ({"grammar": None, "grammar_triggers": [{"type": 1, "value": "was"}]}, "a lazy grammar needs a grammar"),
    ({"grammar_lazy": "yes", "grammar_triggers": [{"type": 1, "value": "was"}]}, "grammar_lazy"),
    ({"preserved_tokens": "<s>", "grammar_triggers": [{"type": 1, "value": "was"}]}, "preserved_tokens"),
    ({"preserved_tokens": [1], "grammar_triggers": [{"type": 1, "value": "was"}]}, "preserved_tokens"),
])
def test_bad_lazy_grammars_are_400_in_llama_servers_shape(server, body, says):
    for stream in (False, True):
        refused(server, "/completion", LAZY | body | {"stream": stream}, says)


def test_a_lazy_json_schema_waits_for_its_trigger_too(server):
    free = ok(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 24})["content"]
    body = GREEDY | {"prompt": STORY, "n_predict": 24, "grammar_lazy": True, "json_schema": {"type": "integer"},
                     "grammar_triggers": [{"type": 1, "value": "zebra"}]}
    assert ok(server, "/completion", body)["content"] == free
    # (the same schema not lazy constrains the whole answer at once)
    whole = ok(server, "/completion", body | {"grammar_lazy": False})["content"]
    assert whole.strip().lstrip("-").isdigit(), whole


def test_typed_lazy_triggers_need_a_grammar():
    from jan.services.types import CompletionRequest
    for given in ({"grammar_triggers": ("was",)}, {"grammar_trigger_tokens": (286,)}):
        with pytest.raises(ValueError, match="^grammar_triggers: start a lazy grammar: they need a grammar"):
            CompletionRequest(model=None, prompts=(STORY,), **given)
    assert CompletionRequest(model=None, prompts=(STORY,), grammar='root ::= "a"', grammar_triggers=["a"]
                             ).grammar_triggers == ("a",)
    from jan.services.types import ChatMessage, ChatRequest
    messages = (ChatMessage.of_text("user", STORY),)
    for given in ({"grammar_triggers": ("was",)}, {"grammar_trigger_tokens": (286,)}):
        with pytest.raises(ValueError, match="^grammar_triggers: start a lazy grammar: they need a grammar"):
            ChatRequest(model=None, messages=messages, **given)
    assert ChatRequest(model=None, messages=messages, grammar='root ::= "a"', grammar_triggers=["a"],
                       preserved_tokens=["<s>"]).preserved_tokens == ("<s>",)


def test_v1_completions_takes_a_lazy_grammar_as_completion_does(server):
    body = GREEDY | {"prompt": STORY, "max_tokens": 24, "grammar": LAZY["grammar"], "grammar_lazy": True,
                     "grammar_triggers": [{"type": "word", "value": "was"}]}
    text = ok(server, "/v1/completions", body)["choices"][0]["text"]
    assert text == ok(server, "/completion", LAZY | {"grammar_triggers": body["grammar_triggers"]})["content"]
    assert text.startswith(", there was 42 42"), text
    for bad, says in (({"grammar_triggers": [{"type": 5, "value": "was"}]}, "grammar_triggers[0].type"),
                      ({"grammar_triggers": [{"type": 2, "value": "(("}]}, "grammar_triggers[0].value"),
                      ({"grammar_triggers": [{"type": 0, "value": "x", "token": 10**6}]},
                       "outside the model's vocabulary"),
                      ({"grammar_triggers": []}, "no triggers set"),
                      ({"grammar": None}, "needs a grammar")):
        response = post(server, "/v1/completions", body | bad)
        assert response.status_code == 400, response.text
        err = response.json()["error"]
        assert says in err["message"] and err["type"] == "invalid_request_error", err


def test_chat_refuses_a_lazy_grammar_without_a_grammar_as_completion_does(server):
    response = post(server, "/v1/chat/completions", GREEDY | {"messages": [{"role": "user", "content": "hi"}],
                                                              "grammar_lazy": True, "max_tokens": 2})
    assert response.status_code == 400, response.text
    assert "a lazy grammar needs a grammar" in response.json()["error"]["message"]


@pytest.mark.parametrize("body,says", [
    ({"model": "stories260K", "input_prefix": "x", "input_suffix": "y"}, "Infill is not supported"),
    ({"model": FIM, "input_suffix": "y"}, "input_prefix"),
    ({"model": FIM, "input_prefix": "x"}, "input_suffix"),
    ({"model": FIM, "input_prefix": "x", "input_suffix": "y", "prompt": [1, 2]}, "prompt"),
    ({"model": FIM, "input_prefix": "x", "input_suffix": "y", "input_extra": {"text": "a"}}, "input_extra"),
    ({"model": FIM, "input_prefix": "x", "input_suffix": "y", "input_extra": [{"filename": "a.py"}]}, "text"),
    ({"model": FIM, "input_prefix": "x", "input_suffix": "y", "input_extra": [{"text": "a", "filename": 3}]},
     "filename"),
    ({"model": "no-such-model", "input_prefix": "x", "input_suffix": "y"}, "no-such-model"),
])
def test_bad_infill_bodies_are_400_in_llama_servers_shape(server, body, says):
    refused(server, "/infill", body, says)


def test_bad_json_and_unknown_routes_keep_the_shape(server):
    response = httpx.post(server.base_url + "/completion", content=b"{not json", timeout=60,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == 400


# -- /props ---------------------------------------------------------------------------------------
def test_props_tell_the_models_settings_in_llama_servers_names(server):
    response = httpx.get(server.base_url + "/props", params={"model": "stories260K"}, timeout=60)
    assert response.status_code == 200, response.text
    props = response.json()
    params = props["default_generation_settings"]["params"]
    assert params["temperature"] == 0.8 and params["top_k"] == 40 and params["n_predict"] == -1
    assert props["total_slots"] == 4 and props["model_alias"] == "stories260K"
    assert props["default_generation_settings"]["n_ctx"] == 512  # (the server's --ctx-size, loaded or not)
    assert props["model_path"].endswith("stories260K.gguf")
    assert props["modalities"] == {"vision": False, "audio": False, "video": False}
    assert props["build_info"].startswith("jan ") and isinstance(props["chat_template"], str)
    # which of llama-server's optional endpoints are served (/slots, /metrics; not POST /props)
    assert (props["endpoint_slots"], props["endpoint_metrics"], props["endpoint_props"]) == (True, True, False)
    # the marker a prompt object's prompt_string takes per image or audio clip: llama-server 0.3.36 tells its own
    # (random at start) only here, so its clients read it from /props; jan told none (a KeyError for them)
    assert props["media_marker"] == "<__media__>"
    # the vocabulary's BOS and EOS as their text, as llama-server 0.3.36 tells them ("<s>", "</s>"): jan told its
    # header-read template's, "" and, for a model without a template (ChatML stands in), "<|im_end|>"
    assert (props["bos_token"], props["eos_token"]) == ("<s>", "</s>")
    fim = httpx.get(server.base_url + "/props", params={"model": FIM}, timeout=60).json()
    assert fim["infill"] is True and props["infill"] is False
    # which model: three are served here, none named
    for query in ({}, {"model": "no-such-model"}):
        response = httpx.get(server.base_url + "/props", params=query, timeout=60)
        assert response.status_code == 400 and response.json()["error"]["code"] == 400, response.text


def test_openapi_lists_the_native_endpoints(server):
    spec = httpx.get(server.base_url + "/openapi.json", timeout=60).json()
    assert {"/completion", "/infill", "/props"} <= set(spec["paths"])
    body = spec["paths"]["/infill"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/InfillBody")


def test_every_event_stream_is_documented_as_its_events(server):
    """OpenAPI 3.1 has an event stream's ``schema`` describe each event (``data``, ``event``, ``id``, ``retry``),
    not the stream as a string: schemathesis read the native ``/completion`` stream's events against
    ``{"type": "string"}`` and failed every one. Each route's real events conform (a stream of ``/completion``'s)."""
    import jsonschema

    spec = httpx.get(server.base_url + "/openapi.json", timeout=60).json()
    streams = {(path, method): op["responses"]["200"]["content"]["text/event-stream"]["schema"]
               for path, item in spec["paths"].items() for method, op in item.items()
               if "text/event-stream" in op.get("responses", {}).get("200", {}).get("content", {})}
    assert {("/completion", "post"), ("/infill", "post"), ("/v1/chat/completions", "post")} <= set(streams)
    response = post(server, "/completion", GREEDY | {"prompt": STORY, "n_predict": 4, "stream": True})
    events = [{"data": json.dumps(e), "event": "message"} for e in sse(response)]
    for where, schema in streams.items():
        assert schema.get("type") == "object" and schema["properties"]["data"] == {"type": "string"}, where
        for event in events:
            jsonschema.validate(event, schema)


def test_typed_infill_extra_is_checked_where_it_is_made():
    from jan.services.errors import RequestError
    from jan.services.types import CompletionRequest, InfillChunk

    with pytest.raises(RequestError) as err:
        CompletionRequest(model=None, prompts=("x",), infill_extra=(InfillChunk("y"),))
    assert err.value.param == "infill_extra" and "suffix" in str(err.value)
    with pytest.raises(RequestError) as err:
        InfillChunk(5)  # type: ignore[arg-type]
    assert err.value.param == "text"
    assert CompletionRequest(model=None, prompts=("x",), suffix="", infill_extra=[InfillChunk("y", "a.py")]) \
        .infill_extra == (InfillChunk("y", "a.py"),)


def test_speculative_types_tell_what_the_models_requests_draft_with(tmp_path, stories_path):
    """``speculative.types`` (``/props`` and each result's ``generation_settings``) says how the model drafts, in
    llama-server's names, loaded or not: it said "none" while the server's draft model drafted every request."""
    from jan.store import DataFolder

    store = DataFolder(tmp_path / "data")
    for model_id, settings in (("ngram", {"speculative": "ngram"}), ("off", {"speculative": "none"}),
                               ("drafted", {})):
        store.models.import_gguf(stories_path, model_id=model_id, mode="reference", settings=settings)
    srv = start_server(tmp_path, [], draft_model=str(stories_path))
    try:
        expected = {"drafted": "draft-simple", "ngram": "ngram-simple", "off": "none"}
        for loaded in (False, True):
            for model_id, types in expected.items():
                props = httpx.get(srv.base_url + "/props", params={"model": model_id}, timeout=120).json()
                assert props["is_sleeping"] is not loaded, props
                assert props["default_generation_settings"]["params"]["speculative.types"] == types, (model_id, loaded)
                if loaded:
                    result = ok(srv, "/completion", GREEDY | {"model": model_id, "prompt": STORY, "n_predict": 4})
                    assert result["generation_settings"]["speculative.types"] == types, (model_id, result)
            for model_id in expected:  # loads each
                ok(srv, "/completion", GREEDY | {"model": model_id, "prompt": STORY, "n_predict": 1})
    finally:
        srv.stop()


# the BOS token, a control token whose text the output drops, made the only likely one
BOS_ONLY = GREEDY | {"prompt": STORY, "n_predict": 4, "logit_bias": [[1, 100.0]]}


def test_preserved_tokens_show_their_text_as_llama_server_does(server):
    # (llama-server: "" without it, "<s><s><s><s>" with it, its generation_settings telling the id)
    assert ok(server, "/completion", BOS_ONLY)["content"] == ""
    result = ok(server, "/completion", BOS_ONLY | {"preserved_tokens": ["<s>"], "return_tokens": True,
                                                   "n_probs": 1})
    assert result["content"] == "<s>" * 4, result
    assert result["tokens"] == [1] * 4
    assert result["generation_settings"]["preserved_tokens"] == [1]
    assert [p["token"] for p in result["completion_probabilities"]] == ["<s>"] * 4
    # streamed: the same text, piece by piece
    events = sse(post(server, "/completion", BOS_ONLY | {"preserved_tokens": ["<s>"], "stream": True}))
    assert "".join(e["content"] for e in events) == "<s>" * 4
    # a text of several tokens names none (llama-server's rule): nothing shown, none told
    result = ok(server, "/completion", BOS_ONLY | {"preserved_tokens": ["<s> upon", "Once upon"]})
    assert result["content"] == "" and result["generation_settings"]["preserved_tokens"] == []


def test_v1_completions_takes_preserved_tokens_too(server):
    body = GREEDY | {"prompt": STORY, "max_tokens": 4, "logit_bias": {"1": 100}}
    assert ok(server, "/v1/completions", body)["choices"][0]["text"] == ""
    choice = ok(server, "/v1/completions", body | {"preserved_tokens": ["<s>"], "logprobs": 1})["choices"][0]
    assert choice["text"] == "<s>" * 4, choice
    assert choice["logprobs"]["tokens"] == ["<s>"] * 4
    response = post(server, "/v1/completions", body | {"preserved_tokens": [1]})
    assert response.status_code == 400 and "preserved_tokens" in response.json()["error"]["message"], response.text



def test_a_remote_model_is_sent_the_preserved_tokens():
    from jan.extensions.remote.wire import completion_body
    from jan.services.types import CompletionRequest
    body = completion_body(CompletionRequest(model=None, prompts=(STORY,), preserved_tokens=("<s>",)))
    assert body["preserved_tokens"] == ["<s>"]
    assert "preserved_tokens" not in completion_body(CompletionRequest(model=None, prompts=(STORY,)))


def test_the_engine_shows_the_text_of_preserved_token_ids_only(stories):
    opts = {"max_tokens": 3, "temperature": 0, "logit_bias": {1: 100.0}}
    assert stories.generate(STORY, **opts).text == ""
    assert stories.generate(STORY, **opts, preserved_tokens=[1]).text == "<s>" * 3
    assert stories.generate(STORY, **opts, preserved_tokens=[2]).text == ""  # (another token's: BOS stays dropped)
    for bad in ([10**6], [-1], "<s>", [1.5]):
        with pytest.raises(ValueError, match="preserved_tokens"):
            stories.generate(STORY, **opts, preserved_tokens=bad)


CHAT = GREEDY | {"messages": [{"role": "user", "content": STORY}], "max_tokens": 24}


def chat_text(server, body) -> str:
    return ok(server, "/v1/chat/completions", body)["choices"][0]["message"]["content"]


def test_the_chat_route_takes_a_lazy_grammar_as_completion_does(server):
    free = chat_text(server, CHAT)
    word = free.split()[2]  # (a word the free answer writes: the trigger fires there)
    grammar = f'root ::= "{word}" " 42"+'
    lazy = CHAT | {"grammar": grammar, "grammar_lazy": True, "grammar_triggers": [{"type": "word", "value": word}]}
    text = chat_text(server, lazy)
    cut = free.index(word)
    assert text.startswith(free[:cut] + word + " 42 42"), (free, text)
    # not lazy: the triggers are read and the grammar holds the whole answer, as llama-server's does
    assert chat_text(server, lazy | {"grammar_lazy": False}).startswith(word + " 42"), text
    # a trigger that never matches leaves the answer free
    never = lazy | {"grammar_triggers": [{"type": 1, "value": "zebra"}]}
    assert chat_text(server, never) == free
    # a lazy json_schema: free until the trigger, then the schema's
    schema = CHAT | {"json_schema": {"type": "integer"}, "grammar_lazy": True,
                     "grammar_triggers": [{"type": 2, "value": "zebra"}]}
    assert chat_text(server, schema) == free


@pytest.mark.parametrize("bad,says", [
    ({"grammar_triggers": [{"type": 1, "value": "was"}]}, "no triggers set"),  # (the bad one replaces it below)
    ({"grammar_triggers": [{"type": 7, "value": "was"}]}, "grammar_triggers[0].type"),
    ({"grammar_triggers": [{"type": 2, "value": "(("}]}, "grammar_triggers[0].value"),
    ({"grammar_triggers": [{"type": 0, "value": "x", "token": 10**6}]}, "outside the model's vocabulary"),
    ({"grammar": None}, "needs a grammar"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
      "tool_choice": "required"}, "tool_choice"),
    ({"preserved_tokens": [1]}, "preserved_tokens"),
])
def test_bad_lazy_grammars_on_the_chat_route_are_400(server, bad, says):
    body = CHAT | {"grammar": 'root ::= "a"', "grammar_lazy": True,
                   "grammar_triggers": [{"type": 1, "value": "a"}]} | bad
    if says == "no triggers set":
        body["grammar_triggers"] = []
    for stream in (False, True):
        response = post(server, "/v1/chat/completions", body | {"stream": stream})
        assert response.status_code == 400, response.text
        err = response.json()["error"]
        assert says in err["message"] and err["type"] == "invalid_request_error", err


def test_the_chat_route_takes_preserved_tokens(server):
    body = CHAT | {"max_tokens": 3, "logit_bias": {"1": 100}}
    assert chat_text(server, body) == ""
    assert chat_text(server, body | {"preserved_tokens": ["<s>"]}) == "<s>" * 3
