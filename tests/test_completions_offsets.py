"""``/v1/completions`` logprobs laid over the text they came with: OpenAI's ``text_offset[i]`` is where token ``i``
is in the choice's ``text`` as returned, and its ``tokens[i]`` is that text's own piece there. With ``echo`` the
text starts with the prompt, whose BOS is no part of it; a stop string is cut from the text, and so are its
tokens. On stories260K (real weights, a SentencePiece vocabulary: a space before the text it tokenizes, UTF-8
characters split over byte tokens)."""

from __future__ import annotations

import json

import httpx
import pytest

from jan.engine.results import TokenLogprob
from jan.server.openai_wire import pieces_in
from server_helpers import start_server

STORY = "Once upon a time, there was"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("completion-offsets"), [stories_path], n_ctx=512, n_parallel=2)
    yield srv
    srv.stop()


def post(server, body: dict) -> dict:
    r = httpx.post(server.base_url + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def streamed(server, body: dict) -> list[dict]:
    """The streamed choices, each folded (text and logprobs concatenated), checking that every chunk's tokens
    lie in the text that chunk brought (each piece of text comes with the tokens that make it)."""
    choices: dict[int, dict] = {}
    with httpx.stream("POST", server.base_url + "/v1/completions", json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    for chunk in chunks:
        for piece in chunk["choices"]:
            choice = choices.setdefault(piece["index"], {"text": "", "finish_reason": None, "logprobs": {
                "tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}})
            start, end = len(choice["text"]), len(choice["text"]) + len(piece["text"])
            assert all(start <= at <= end for at in piece["logprobs"]["text_offset"]), (piece, start)
            choice["text"] += piece["text"]
            for key, values in piece["logprobs"].items():  # (llama-server's content list too)
                choice["logprobs"].setdefault(key, []).extend(values)
            choice["finish_reason"] = piece["finish_reason"] or choice["finish_reason"]
    return [choices[i] for i in sorted(choices)]


def assert_laid_over_text(choice: dict) -> None:
    """Every token is where its offset says, spelled as the text has it; together they spell the text."""
    text, lp = choice["text"], choice["logprobs"]
    tokens, offsets = lp["tokens"], lp["text_offset"]
    assert len(tokens) == len(offsets) == len(lp["token_logprobs"]) == len(lp["top_logprobs"])
    for i, (token, at) in enumerate(zip(tokens, offsets)):
        assert text[at:].startswith(token), (i, token, at, text)
    assert offsets == sorted(offsets) and all(0 <= at <= len(text) for at in offsets)
    assert "".join(tokens) == text


def both_ways(server, body: dict) -> list[tuple[str, dict]]:
    """The body's choices answered whole and streamed (each checked), with how they came."""
    whole = post(server, body)["choices"]
    flowing = streamed(server, body)
    assert len(whole) == len(flowing)
    out = [("whole", c) for c in whole] + [("streamed", c) for c in flowing]
    for _, choice in out:
        assert_laid_over_text(choice)
    return out


def test_an_echoed_prompts_tokens_are_where_the_returned_text_has_them(server, stories):
    prompt_tokens = stories.tokenize(STORY)  # BOS first, then " Once" (SentencePiece's space before the text)
    body = {"model": "stories260K", "prompt": STORY, "max_tokens": 12, "temperature": 0, "echo": True, "logprobs": 2}
    for how, choice in both_ways(server, body):
        lp = choice["logprobs"]
        assert choice["text"].startswith(STORY), how
        scored = len(prompt_tokens)
        assert lp["tokens"][:2] == ["", "Once"] and lp["text_offset"][:3] == [0, 0, 4], (how, lp)  # the BOS spells nothing
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        assert "".join(lp["tokens"][:scored]) == STORY
        # the first generated token is right after the prompt: the BOS's "<s>" is not counted before it
        assert lp["text_offset"][scored] == len(STORY), (how, lp["text_offset"])
        assert len(lp["tokens"]) == scored + 12
        # greedy: each generated token is its own best alternative, keyed as it is spelled (what evaluation
        # harnesses compare to tell whether greedy decoding would have produced the text)
        assert all(max(top, key=top.get) == tok for tok, top in zip(lp["tokens"][scored:], lp["top_logprobs"][scored:]))


def test_a_prompt_of_token_ids_is_echoed_as_they_spell_it(server, stories):
    ids = stories.tokenize(STORY)
    body = {"model": "stories260K", "prompt": ids, "max_tokens": 5, "temperature": 0, "echo": True, "logprobs": 0}
    for how, choice in both_ways(server, body):
        echoed = stories.detokenize(ids)
        assert choice["text"].startswith(echoed), how
        lp = choice["logprobs"]
        assert lp["tokens"][0] == "" and lp["text_offset"][len(ids)] == len(echoed), (how, lp)


@pytest.mark.parametrize("stop", [[" the"], ["e"], ["."]])
def test_a_stop_strings_tokens_are_cut_with_its_text(server, stop):
    """``" the"`` ends between tokens, ``"e"`` inside one (" little" shows " littl", its token spelled so),
    ``"."`` right after a word: the tokens left are exactly the text's."""
    body = {"model": "stories260K", "prompt": STORY, "max_tokens": 40, "temperature": 0, "logprobs": 1, "stop": stop}
    for echo in (False, True):
        for how, choice in both_ways(server, {**body, "echo": echo}):
            assert choice["finish_reason"] == "stop", (how, choice)
            assert stop[0] not in choice["text"][len(STORY) if echo else 0:], (how, choice["text"])


def test_several_prompts_each_get_their_own_offsets(server):
    """A prompt array (with text that needs byte tokens, a leading space, an empty prompt) and ``n``: each choice
    is laid over its own text."""
    prompts = ["héllo ☃ 日本", " hi", "", "Lily"]
    body = {"model": "stories260K", "prompt": prompts, "n": 2, "max_tokens": 6, "temperature": 0.8, "seed": 7,
            "echo": True, "logprobs": 1, "stop": ["."]}
    choices = both_ways(server, body)
    assert len(choices) == 2 * 2 * len(prompts)
    for i, (how, choice) in enumerate(choices):
        prompt = prompts[(i % (2 * len(prompts))) // 2]
        assert choice["text"].startswith(prompt), (how, prompt, choice["text"])
        assert "".join(choice["logprobs"]["tokens"]).startswith(prompt)


def test_the_prompt_alone_scored_is_laid_over_the_prompt(server, stories):
    """``max_tokens: 0`` with ``echo``: the text is the prompt, its tokens (BOS first) spell it."""
    body = {"model": "stories260K", "prompt": "Lily and Ben ☃ played.", "max_tokens": 0, "echo": True, "logprobs": 1}
    for how, choice in both_ways(server, body):
        assert choice["text"] == body["prompt"], how
        assert len(choice["logprobs"]["tokens"]) == len(stories.tokenize(body["prompt"]))


# -- the alignment itself, on made-up tokens --------------------------------------------------------------------
def token(piece: bytes, token_id: int = 0) -> TokenLogprob:
    return TokenLogprob(token_id=token_id, token=piece.decode("utf-8", errors="replace"), bytes=list(piece),
                        logprob=-1.0)


def test_pieces_in_spells_each_token_as_the_text_has_it():
    snowman = "☃".encode()
    cases = [
        # a BOS the text does not show, SentencePiece's space before the text
        ("Once upon", [b"<s>", b" Once", b" upon"], [(0, ""), (0, "Once"), (4, " upon")]),
        # a character over three byte tokens: the last one spells it, from where it starts
        ("a ☃ b", [b"a", b" ", snowman[:1], snowman[1:2], snowman[2:], b" b"],
         [(0, "a"), (1, " "), (2, ""), (2, ""), (2, "☃"), (3, " b")]),
        # a stop string cut the last token; an end-of-generation token the text does not show
        ("a littl", [b"a", b" little"], [(0, "a"), (1, " littl")]),
        ("done", [b"done", b"</s>"], [(0, "done"), (4, "")]),
        # a byte that is no UTF-8: the engine shows U+FFFD for it
        ("x\ufffdy", [b"x", b"\xff", b"y"], [(0, "x"), (1, "\ufffd"), (2, "y")]),
        # a token the text does not have moves nothing after it
        ("ab", [b"a", b"zz", b"b"], [(0, "a"), (1, ""), (1, "b")]),
        ("", [b"<s>"], [(0, "")]),
    ]
    for text, pieces, expected in cases:
        assert pieces_in(text, [token(p) for p in pieces]) == expected, text


def test_a_choices_text_goes_out_with_the_tokens_that_make_it(stories):
    """The service's side (:class:`ShownLogprobs`): text the engine showed of a token it has not shown all of
    waits for the rest, or for the stop string that cuts it, however the engine's chunks fell."""
    from jan.services.local import ShownLogprobs

    a, little, girl = [TokenLogprob(token_id=t, token=stories.token_to_piece(t), bytes=list(stories.token_to_bytes(t)),
                                    logprob=-1.0) for t in stories.tokenize("a little girl", add_special=False)[:3]]
    assert (a.token, little.token) == (" a", " little")
    # " littl" shown, its "e" held (it may start the stop string "e"), which then matched
    gate = ShownLogprobs(stories)
    assert gate.add(" a", [a]) == (" a", [a])
    assert gate.add(" littl", [little]) == ("", [])
    assert gate.finish("e") == (" littl", [little])
    # the same in one chunk
    gate = ShownLogprobs(stories)
    assert gate.add(" a littl", [a, little]) == (" a", [a])
    assert gate.finish("e") == (" littl", [little])
    # no stop after all: the rest of the token's text comes, and it goes out with it; then a stop between tokens
    gate = ShownLogprobs(stories)
    assert gate.add(" a littl", [a, little]) == (" a", [a])
    assert gate.add("e", []) == (" little", [little])
    assert gate.add("", [girl]) == ("", [])
    assert gate.finish(" g") == ("", [])
    # an end that is no stop string lets everything out
    gate = ShownLogprobs(stories)
    assert gate.add(" a lit", [a, little]) == (" a", [a])
    assert gate.finish(None) == (" lit", [little])


# -- bytes that are no UTF-8 (a byte token alone: a lone continuation byte) ----------------------------------------
LONE_BYTE = 184  # stories260K's <0xB5>: a UTF-8 continuation byte, which the engine's text shows as U+FFFD


def test_a_byte_that_is_no_utf8_goes_out_with_its_own_text(server, stories):
    """Tokens whose bytes are no UTF-8 (a random-weight or tiny model writes them): the engine shows each as U+FFFD,
    three bytes for the token's one. Counted as three, the gate let the token out with the first byte of U+FFFD's
    encoding (a delta's text "", its token spelled "" at offset 0) and the tokens after it a piece late, whole
    and streamed differently."""
    assert stories.token_to_bytes(LONE_BYTE) == b"\xb5"
    body = {"model": "stories260K", "prompt": STORY, "max_tokens": 4, "temperature": 0, "logprobs": 1,
            "logit_bias": {str(LONE_BYTE): 100}}
    for how, choice in both_ways(server, body):
        assert choice["text"] == "\ufffd" * 4, how
        assert choice["logprobs"]["tokens"] == ["\ufffd"] * 4 and choice["logprobs"]["text_offset"] == [0, 1, 2, 3], how


def test_the_gate_counts_a_byte_that_is_no_utf8_as_its_token_made_it(stories):
    """:class:`ShownLogprobs` and :class:`ShownTokens` on U+FFFD shown for a lone byte, then text after it."""
    from jan.services.local import ShownLogprobs, ShownTokens, shown_bytes

    lone = TokenLogprob(token_id=LONE_BYTE, token="\ufffd", bytes=[0xB5], logprob=-1.0)
    a = stories.tokenize("a", add_special=False)[-1]
    after = TokenLogprob(token_id=a, token=stories.token_to_piece(a), bytes=list(stories.token_to_bytes(a)),
                         logprob=-1.0)
    gate = ShownLogprobs(stories)
    assert gate.add("\ufffd", [lone]) == ("\ufffd", [lone])
    assert gate.add(after.token, [after]) == (after.token, [after])
    assert gate.finish(None) == ("", [])
    gate = ShownLogprobs(stories)  # both in one chunk
    assert gate.add("\ufffd" + after.token, [lone, after]) == ("\ufffd" + after.token, [lone, after])
    ids = ShownTokens(stories)
    assert ids.add("\ufffd", [LONE_BYTE]) == [LONE_BYTE]
    assert ids.add("", [a]) == []  # its text not shown yet (it may begin a stop string)
    assert ids.finish(after.token) == []
    # the bytes a text shows: one U+FFFD for each bad run of one to three bytes; one the model wrote is its own
    assert shown_bytes(b"\xb5abc", "\ufffda") == 2
    assert shown_bytes(b"\xe2\x82" + "€".encode(), "\ufffd") == 2
    assert shown_bytes("\ufffdb".encode(), "\ufffd") == 3
    assert shown_bytes(b"abc", "ab") == 2
