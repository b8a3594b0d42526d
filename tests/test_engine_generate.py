"""Generation on real models, checked against llama-cpp-python on the same files."""

from __future__ import annotations

import threading
import time

import pytest

import jan

PROMPT = "Once upon a time"


def llama_cpp_greedy(path, prompt: str, n: int) -> list[int]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, n_threads=1, verbose=False, seed=0)
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    out = []
    for tok in llm.generate(tokens, temp=0.0, repeat_penalty=1.0, top_k=40, top_p=0.95, min_p=0.05):
        if tok == llm.token_eos() or len(out) == n:
            break
        out.append(tok)
    return out


@pytest.mark.parametrize("fixture", ["stories_path", "tiny_random_path"])
def test_greedy_tokens_match_llama_cpp_python(request, fixture):
    path = request.getfixturevalue(fixture)
    expected = llama_cpp_greedy(path, PROMPT, 120)
    assert len(expected) >= 100
    with jan.Model(path, n_ctx=512, n_threads=1) as model:
        result = model.generate(PROMPT, max_tokens=120, temperature=0)
        assert result.token_ids == expected[: len(result.token_ids)]
        assert len(result.token_ids) == len(expected)
        assert result.text == model.detokenize(expected)


def test_readme_example_tells_the_story_of_lily(stories):
    text = stories.generate(PROMPT, max_tokens=30, temperature=0).text
    assert text.startswith(", there was a little girl named Lily. She loved to play outside in the park.")


def test_completion_reports_finish_reason_and_usage(stories):
    result = stories.generate(PROMPT, max_tokens=7, temperature=0)
    assert result.finish_reason == "length"
    assert result.usage.prompt_tokens == len(stories.tokenize(PROMPT))
    assert result.usage.completion_tokens == 7 == len(result.token_ids)


def test_prompt_as_tokens_equals_prompt_as_text(stories):
    tokens = stories.tokenize(PROMPT)
    assert stories.generate(tokens, max_tokens=20, temperature=0).text == \
        stories.generate(PROMPT, max_tokens=20, temperature=0).text


def test_stop_string_spanning_tokens_is_cut_exactly(stories):
    full = stories.generate(PROMPT, max_tokens=40, temperature=0).text
    stop = "ittle gi"  # starts inside " little", ends inside " girl"
    assert stop in full
    expected = full[: full.index(stop)]

    result = stories.generate(PROMPT, max_tokens=40, temperature=0, stop=[stop, "never-seen"])
    assert result.text == expected
    assert result.finish_reason == "stop"
    assert result.stop == stop

    pieces = [c.text for c in stories.stream(PROMPT, max_tokens=40, temperature=0, stop=stop)]
    assert "".join(pieces) == expected
    # no piece ever carried the start of the stop string past the cut
    assert all("ittle" not in p for p in pieces)


def test_stop_string_held_back_then_released_when_it_does_not_match(stories):
    full = stories.generate(PROMPT, max_tokens=40, temperature=0).text
    # "little g" is a prefix of the stop "little gx": held back, then released unchanged
    result = stories.generate(PROMPT, max_tokens=40, temperature=0, stop="little gx")
    assert result.text == full
    assert result.finish_reason == "length"


@pytest.mark.parametrize("temperature", [0, 0.8])
def test_ignore_eos_ends_where_a_finished_grammar_leaves_only_the_end(stories, temperature):
    """ignore_eos bans the end of generation while anything else may be written: a grammar that has finished
    leaves only the end, and the request stops there (it failed as "a grammar the model cannot satisfy");
    a grammar that may go on keeps generating to ``max_tokens``."""
    done = stories.generate(PROMPT, max_tokens=40, temperature=temperature, seed=7, ignore_eos=True,
                            grammar='root ::= "Once upon a time"')
    assert (done.text, done.finish_reason) == ("Once upon a time", "stop")
    free = stories.generate(PROMPT, max_tokens=24, temperature=temperature, seed=7, ignore_eos=True,
                            grammar="root ::= [a-z ]+")
    assert free.finish_reason == "length" and free.usage.completion_tokens == 24


@pytest.mark.parametrize("fixture", ["stories_path", "tiny_random_path"])
def test_streamed_pieces_are_whole_utf8_characters(request, fixture):
    path = request.getfixturevalue(fixture)
    target = "héllo 😀 naïve 日本語 ✓"
    grammar = 'root ::= "' + target + '"'
    with jan.Model(path, n_ctx=256, n_threads=1) as model:
        # the small vocabulary spells these characters with byte tokens
        assert any(len(model.token_to_bytes(t)) == 1 and model.token_to_bytes(t)[0] >= 0x80
                   for t in model.tokenize(target, add_special=False))
        chunks = list(model.stream(PROMPT, grammar=grammar, max_tokens=80, temperature=0))
        generated = [t for c in chunks for t in c.token_ids]
        partial = [t for t in generated if len(model.token_to_bytes(t)) == 1 and model.token_to_bytes(t)[0] >= 0x80]
    assert len(partial) >= 4, "the output should spell characters with byte tokens"
    text = "".join(c.text for c in chunks)
    assert text == target
    assert all("\ufffd" not in c.text for c in chunks)


def test_fixed_seed_reproduces_sampled_output(stories):
    a = stories.generate(PROMPT, max_tokens=40, temperature=1.0, seed=1234)
    b = stories.generate(PROMPT, max_tokens=40, temperature=1.0, seed=1234)
    assert a.text == b.text
    others = {stories.generate(PROMPT, max_tokens=40, temperature=1.0, seed=s).text for s in range(5)}
    assert len(others) > 1, "different seeds should give different stories"


def _worker_calls_while_this_thread_takes_turns(call, turns: int = 40) -> int:
    """Run ``call`` over and over in a worker thread until this thread has taken ``turns`` turns at the GIL
    (each short sleep hands it over, and waking needs it back); returns how many calls the worker completed
    meanwhile (at most ``4 * turns``).

    Ordering, not speed: a call that holds the GIL lets this thread take a turn only between two calls
    (at most about one per call), so the worker completes a good share of ``turns`` calls; a call that
    releases it lets this thread take all its turns during the first calls, however loaded the machine.
    """
    stop = threading.Event()
    calls = [0]

    def worker():
        while calls[0] == 0 or (not stop.is_set() and calls[0] < 4 * turns):  # at least one call
            call()
            calls[0] += 1

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        for _ in range(turns):
            time.sleep(0.0001)  # a real sleep: the GIL is released, and must be taken back
        return calls[0]
    finally:
        stop.set()
        thread.join()


def test_generation_releases_the_gil(stories):
    """A second Python thread keeps running while one generates."""
    calls = _worker_calls_while_this_thread_takes_turns(
        lambda: stories.generate(PROMPT, max_tokens=200, temperature=0, ignore_eos=True))
    assert calls < 10, f"this thread got the GIL only between generations ({calls} of them)"


def test_tokenize_releases_the_gil(stories):
    text = "Once upon a time, there was a little girl. " * 20_000
    counts = []
    calls = _worker_calls_while_this_thread_takes_turns(lambda: counts.append(len(stories.tokenize(text))))
    assert counts and counts[0] > 100_000
    assert calls < 10, f"this thread got the GIL only between tokenizations ({calls} of them)"


def test_metadata(stories):
    info = stories.info
    assert info.architecture == "llama"
    assert info.n_vocab == 512
    assert info.n_embd == 64
    assert info.n_layer == 5
    assert 250_000 < info.n_params < 300_000
    assert info.n_ctx_train > 0
    assert info.special_tokens["bos"] == 1 and info.special_tokens["eos"] == 2
    assert info.metadata["general.architecture"] == "llama"
    assert info.chat_template is None


def test_chat_template_comes_from_gguf(vocab_dir):
    with jan.Model(vocab_dir / "ggml-vocab-phi-3.gguf", vocab_only=True) as m:
        assert "<|assistant|>" in m.chat_template
        assert m.metadata["tokenizer.chat_template"] == m.chat_template


def test_system_info():
    info = jan.system_info()
    assert "CPU" in info["backends"]
    assert any(d["type"] == "cpu" for d in info["devices"])
    assert info["llama_cpp_python_version"] == "0.3.36"
    assert "AVX" in info["cpu_features"] or "NEON" in info["cpu_features"] or info["cpu_features"]


def test_llama_log_goes_to_python_logging(stories_path, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="jan.llama"):
        jan.Model(stories_path, n_ctx=64).close()
    assert any(r.name == "jan.llama" and "llama" in r.getMessage() for r in caplog.records)


def test_a_thinking_marker_inside_a_token_starts_and_ends_the_budget(stories):
    # The greedy story goes ", there was a little girl": "re wa" opens "thinking" inside the token " was" (a BPE
    # token can run past a marker, as "<th" "ink" ">Total" does on Qwen's vocabulary); the budget must see it there,
    # not only where a token ends exactly at the marker, and close the block after its 2 tokens.
    plain = stories.generate("Once upon a time", max_tokens=12, temperature=0).text
    assert plain.startswith(", there was a little")
    capped = stories.generate("Once upon a time", max_tokens=12, temperature=0, reasoning_budget=2,
                              reasoning_start="re wa", reasoning_end="END").text
    assert capped.startswith(", there was a little") and "END" in capped, capped
    # an end marker inside a token closes the block too ("as a lit" ends inside " little", the budget's third
    # token): the block is over, so nothing is forced where the budget runs out
    ended = stories.generate("Once upon a time", max_tokens=12, temperature=0, reasoning_budget=3,
                             reasoning_start=", th", reasoning_end="as a lit").text
    assert ended == plain


def test_an_interrupting_marker_ends_the_thinking_and_nothing_is_forced_after_it(stories):
    # Apertus writes a call inside its thinking (<|inner_prefix|>...<|tools_prefix|>[...]) and Solar Open may go on to
    # its answer's header without the thought's end marker: those markers end the block where they stand. The budget
    # knew only the end marker, so it went on counting and forced it into the call or the answer ("a little ENDogg")
    plain = stories.generate("Once upon a time", max_tokens=12, temperature=0).text
    capped = dict(max_tokens=12, temperature=0, reasoning_budget=3, reasoning_start=", th", reasoning_end="END")
    assert "END" in stories.generate("Once upon a time", **capped).text
    interrupted = stories.generate("Once upon a time", **capped, reasoning_interrupt=["as a lit"]).text
    assert interrupted == plain
    with pytest.raises(ValueError, match="reasoning_interrupt"):
        stories.generate("Once upon a time", **capped, reasoning_interrupt="as a lit")


def test_reasoning_every_caps_the_thinking_of_every_block_of_the_reply(stories):
    # gpt-oss may write a second analysis message after its first (after the budget closed it, or after a call's
    # header): the budget capped the reply's first block only, and the second thought on uncapped. With
    # reasoning_every the blocks share the one budget. The greedy story has two blocks between "She" and ".":
    # "She loved to play outside in the park." (about 13 tokens) and later "She wanted to play with it, but it".
    plain = stories.generate("Once upon a time", max_tokens=50, temperature=0).text
    assert plain.count("She") == 2, plain
    second = plain.index("She wanted")
    capped = dict(max_tokens=50, temperature=0, reasoning_budget=16, reasoning_start="She", reasoning_end=".",
                  reasoning_close="END")
    assert stories.generate("Once upon a time", **capped).text == plain  # the first block fits; the second is free
    every = stories.generate("Once upon a time", **capped, reasoning_every=True).text
    assert every.startswith(plain[:second + len("She")]) and "END" in every[second:], every
    assert "END" not in every[:second], every


def test_reasoning_every_rules_out_opening_a_block_once_the_budget_is_spent(stories):
    # gpt-oss's forced close where a call may follow stops at <|channel|>, where "analysis" would open another block
    # (closed at once, and opened again...): once the budget is spent, text going on into the start marker from
    # where the output stands part-way into it is ruled out. Greedy, the story goes on "END. She was" after this
    # close; "She w" is the start marker, so " was" is ruled out and the story goes another way.
    opts = dict(max_tokens=30, temperature=0, reasoning_budget=3, reasoning_open=True, reasoning_start="She w",
                reasoning_end=".", reasoning_close="END. She")
    assert "END. She was" in stories.generate("Once upon a time", **opts).text
    every = stories.generate("Once upon a time", **opts, reasoning_every=True).text
    assert every.count("END") == 1 and "END. She" in every and "She w" not in every, every
    # and a closing text that holds the start marker is no block the model opened: nothing is forced again
    reopen = dict(max_tokens=50, temperature=0, reasoning_budget=14, reasoning_start="She", reasoning_end=".",
                  reasoning_close="END. She", reasoning_every=True)
    assert stories.generate("Once upon a time", **reopen).text.count("END") == 1


def test_a_spent_budget_rules_out_a_start_marker_of_one_token(stories):
    # A model that opens its block again once the budget is spent had it closed at once, each time: one that
    # insists wrote <think></think><think></think>... until max_tokens, with no answer. A start marker that is one
    # token of its own (<think>, [THINK]) is ruled out once the budget is spent, so the model goes on with its
    # answer. Greedy, the story reopens "to" (one token) again and again after the budget closed it: "to END."
    opts = dict(max_tokens=80, temperature=0, reasoning_budget=2, reasoning_start="to", reasoning_end=".",
                reasoning_close="END.")
    first_only = stories.generate("Once upon a time", **opts).text
    assert first_only.count("END") == 1  # (the first block alone is capped)
    every = stories.generate("Once upon a time", **opts, reasoning_every=True).text
    head, _, answer = every.partition("END.")
    assert head and answer.strip() and "END" not in answer and " to " not in answer, every
    # a marker of several tokens stays free (the answer may begin it): reopened, it is closed at once, as before
    several = dict(opts, reasoning_start="to play", reasoning_budget=1)
    assert stories.generate("Once upon a time", **several, reasoning_every=True).text.count("END") > 1


@pytest.mark.parametrize("every", [False, True])
def test_a_budget_of_0_rules_out_a_start_marker_of_one_token_from_the_first(stories, every):
    # A budget of 0 (thinking asked off where the template has no switch: the prompt leaves the model to open its
    # block) let the model open it and closed it at once, an empty block before the answer ("loved to END."); the
    # one-token marker is now ruled out from the first token, as once a budget is spent. Greedy, the story says
    # "She loved to play": it now goes on another way, with no block and nothing forced.
    opts = dict(max_tokens=80, temperature=0, reasoning_budget=0, reasoning_start="to", reasoning_end=".",
                reasoning_close="END.", reasoning_every=every)
    text = stories.generate("Once upon a time", **opts).text
    assert text.strip() and "END" not in text and " to " not in text, text
    # a marker of several tokens stays free to begin the answer: opened, it is closed at once, as before
    several = stories.generate("Once upon a time", **dict(opts, reasoning_start="loved to")).text
    assert "loved to END." in several, several


@pytest.mark.parametrize("start", ["park to dance", "she went to sleep", "One day, she saw"])
def test_a_spent_budget_leaves_the_answer_free_to_begin_the_start_marker(stories, start):
    # Every format now counts every block (reasoning_every), and where the budget was spent the engine ruled out
    # text going on into the start marker: for a marker of plain text (Apriel's "Here are my reasoning steps:",
    # "<think>" spelled in pieces) the answer could no longer write "Here are" or "<th", and with thinking asked
    # off (a budget of 0) none of it could. Only a close that ends part-way into the marker (gpt-oss's, at
    # <|channel|>) has that guard; here the answer after "END." is the one the first-block budget gives.
    opts = dict(max_tokens=60, temperature=0, reasoning_budget=3, reasoning_open=True, reasoning_start=start,
                reasoning_end=".", reasoning_close="END.")
    first_only = stories.generate("Once upon a time", **opts).text
    assert "END." in first_only and start.split()[0] in first_only.split("END.")[1], first_only
    assert stories.generate("Once upon a time", **opts, reasoning_every=True).text == first_only


def test_a_budget_whose_closing_text_the_grammar_rules_out_is_a_400_naming_the_budget(stories):
    # A grammar that covers the thinking but cannot write its end marker: the budget's forced "END" is ruled out.
    # The error names the clash (reasoning_budget), not "a grammar the model cannot satisfy" (the grammar alone is
    # fine: without the budget, or with a grammar that allows the marker, the same request generates).
    with pytest.raises(jan.BadRequestError) as err:
        stories.generate("Once upon a time", max_tokens=12, temperature=0, reasoning_budget=2,
                         reasoning_start="re wa", reasoning_end="END", grammar="root ::= [^E]*")
    assert err.value.param == "reasoning_budget" and "'END'" in str(err.value), err.value
    assert err.value.code == "reasoning_budget_conflicts_with_grammar"
    assert stories.generate("Once upon a time", max_tokens=12, temperature=0, grammar="root ::= [^E]*").text
    allowed = stories.generate("Once upon a time", max_tokens=12, temperature=0, reasoning_budget=2,
                               reasoning_start="re wa", reasoning_end="END", grammar="root ::= [^Q]*").text
    assert "END" in allowed


def test_two_async_consumers_of_one_request_both_finish(stories):
    # The second consumer replaced the first one's waiter: the first was never woken again, and whichever did not
    # drain the final event waited on a fd that never became readable again (aresult() awaited twice hung).
    import asyncio

    full = stories.generate(PROMPT, max_tokens=40, temperature=0)

    async def twice():
        request = stories.stream(PROMPT, max_tokens=40, temperature=0)
        return await asyncio.wait_for(asyncio.gather(request.aresult(), request.aresult()), 60)

    async def two_tasks():
        request = stories.stream(PROMPT, max_tokens=40, temperature=0)

        async def read():
            return [chunk async for chunk in request]
        return await asyncio.wait_for(asyncio.gather(read(), read()), 60)

    first, second = asyncio.run(twice())
    # both awaited the one end: each has the whole completion (as a future's result), however the events came
    # (a share of the tokens each when they came one by one, but all of them twice when one drained the end first)
    assert first is second and first.token_ids == full.token_ids and first.finish_reason == "length"
    # two tasks iterating: each chunk went to one of them, the two parts hold every token once
    a, b = asyncio.run(two_tasks())
    assert sorted(t for c in a + b for t in c.token_ids) == sorted(full.token_ids)
    assert [c.finish_reason for c in a + b if c.finish_reason] == ["length"]


def test_two_threads_iterating_one_request_share_its_chunks(stories):
    request = stories.stream(PROMPT, max_tokens=200, temperature=0, ignore_eos=True)
    parts: list[list] = [[], []]
    errors: list[BaseException] = []

    def read(k):
        try:
            for chunk in request:
                parts[k].append(chunk)
        except BaseException as exc:  # noqa: BLE001 - an IndexError from a race shows here
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    assert sum(len(c.token_ids) for c in parts[0] + parts[1]) == 200
    assert [c.finish_reason for c in parts[0] + parts[1] if c.finish_reason] == ["length"]


_FORK_CHILD = r"""
import gc, os, sys, time
import jan
model = jan.Model(sys.argv[1], n_ctx=256, n_threads=1)
model.generate("Once", max_tokens=2)
request = model.stream("Once upon a time", max_tokens=4000, temperature=0, ignore_eos=True)
pid = os.fork()
if pid == 0:
    said = []
    for name, use in [("generate", lambda: model.generate("Once", max_tokens=2)),
                      ("tokenize", lambda: model.tokenize("Once")),
                      ("iterate", lambda: next(iter(request))), ("result", lambda: request.result())]:
        try:
            use()
            said.append(name + ": no error")
        except jan.ModelClosedError:
            pass
    request.cancel()
    print("child:", said or "ok", flush=True)
    del request
    model.close()  # joined the parent's engine thread: std::system_error, then std::terminate (SIGABRT)
    del model
    gc.collect()
    sys.exit(0)  # a normal exit, finalizers and all
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    status = "hung"
request.cancel()
print("parent:", status, model.generate("Once", max_tokens=3, temperature=0).finish_reason, flush=True)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_gets_model_closed_and_exits_cleanly(stories_path):
    # A model (and its requests) belongs to the process that loaded it: in a child forked after the load there is
    # no engine thread, so a generation waited forever, and the child aborted at exit (a join of the parent's thread).
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FORK_CHILD, str(stories_path)], capture_output=True, text=True,
                         timeout=180)
    lines = [line for line in out.stdout.splitlines() if line.startswith(("child:", "parent:"))]
    assert lines == ["child: ok", "parent: 0 length"], (out.stdout[-2000:], out.stderr[-2000:])


def test_a_watched_thinking_is_the_plain_output_until_ended(stories):
    # llama-server's "reasoning_end" control: a request made with a thinking budget (2**31 - 1: no cap, only
    # watched) generates what it would without one until its thinking is ended (the next test); once finished there
    # is nothing to end. (An end asked before the request exists is a spent budget, 0, at its submit: the chat
    # service's way, tested in test_server_reasoning.)
    plain = stories.generate("Once upon a time", max_tokens=16, temperature=0).text
    watched = dict(max_tokens=16, temperature=0, reasoning_budget=2**31 - 1, reasoning_open=True,
                   reasoning_end="END")
    request = stories.stream("Once upon a time", **watched)
    assert "".join(chunk.text for chunk in request) == plain
    assert request.end_reasoning() is False  # finished: nothing left to end
    spent = stories.generate("Once upon a time", **{**watched, "reasoning_budget": 0}).text
    assert spent.lstrip().startswith("END") and spent != plain, spent


def test_end_reasoning_while_it_thinks_keeps_what_was_thought(stories):
    plain = stories.generate("Once upon a time", max_tokens=200, temperature=0, ignore_eos=True).text
    request = stories.stream("Once upon a time", max_tokens=200, temperature=0, ignore_eos=True,
                             reasoning_budget=2**31 - 1, reasoning_open=True, reasoning_end="END")
    chunks = [next(iter(request))]
    asked = request.end_reasoning()
    chunks += list(request)
    text = "".join(c.text for c in chunks)
    if asked:  # (False only when the 200 tokens were all made before the ask: then nothing was forced)
        assert "END" in text and plain.startswith(text[:text.index("END")].rstrip())
    else:
        assert text == plain


def test_end_reasoning_needs_a_thinking_budget(stories):
    request = stories.stream("Once upon a time", max_tokens=4, temperature=0)
    assert request.end_reasoning() is False
    assert list(request)
