"""Audio through the native engine (libmtmd), on a real projector: the tiny random-weight Qwen2-Audio pair
(tests/conftest.py: audio_pair) and a real speech clip (../shared/media/test-2.mp3, 17 s).

The pair's output is gibberish, but it depends on every sample of the clip (through the log-mel spectrogram,
the whisper encoder and its projection), which is what these tests compare: against llama-cpp-python's own
multimodal path, across the file formats of the same samples, and across the engine's caches.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

import jan
from jan import _engine
from mtmd_reference import llama_cpp_mtmd_greedy

sf = pytest.importorskip("soundfile", reason="the soundfile package is not installed (test extra)")

#: Tokens of one 30 s window of the Qwen2-Audio encoder (3000 mel frames, halved by the stride-2 convolution and
#: by the average pool), and the markers around a clip (<|audio_bos|>, <|audio_eos|>: control tokens of the pair).
WINDOW_TOKENS = 750
MARKER_TOKENS = 2
N_GEN = 12


@pytest.fixture(scope="module")
def clip_samples(test_audio_path):
    """The speech clip's samples (mono float32) and rate, decoded once."""
    samples, rate = sf.read(str(test_audio_path), dtype="float32")
    return samples, rate


def _encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


@pytest.fixture(scope="module")
def alm(audio_pair):
    model_path, mmproj = audio_pair
    model = jan.Model(model_path, mmproj=mmproj, n_ctx=4096, n_parallel=2, n_threads=1, n_threads_batch=1)
    yield model
    model.close()


def _prompt(model: jan.Model, question: str = "What is said?") -> str:
    return f"<|im_start|>user\n{question}\n{model.media_marker}<|im_end|>\n<|im_start|>assistant\n"


def _text_tokens(model: jan.Model, prompt: str) -> int:
    """The prompt's text tokens as libmtmd tokenizes them: the text before the marker with BOS, the text after it
    on its own (special tokens parsed, as in a chat prompt)."""
    before, after = prompt.split(model.media_marker)
    return len(model.tokenize(before, True, True)) + len(model.tokenize(after, False, True))


def test_an_audio_projector_takes_audio_and_no_images(alm):
    assert alm.capabilities == {"vision": False, "audio": True}
    assert alm.media_marker
    with pytest.raises(jan.MediaError) as info:  # an image for an audio-only projector: said of that item
        alm.media_inputs(images=[np.zeros((8, 8, 3), np.uint8)])
    assert (info.value.reason, info.value.item_index) == ("no_projector", 0)


def test_greedy_tokens_of_the_mp3_equal_llama_cpp_python_mtmd(alm, audio_pair, test_audio_path):
    """The same clip through llama-cpp-python's libmtmd path (its decoder, encoder and evaluation) and jan's: the
    same greedy tokens, and the prompt's token count is its text's, the markers' and one window's exactly."""
    prompt = _prompt(alm)
    mp3 = test_audio_path.read_bytes()
    ref = llama_cpp_mtmd_greedy(*audio_pair, prompt, [mp3], N_GEN, n_ctx=2048)
    got = alm.generate(prompt, audio=[mp3], max_tokens=N_GEN, temperature=0, ignore_eos=True)
    assert got.token_ids == ref
    assert got.usage.prompt_tokens == _text_tokens(alm, prompt) + MARKER_TOKENS + WINDOW_TOKENS
    assert alm.generate(prompt, audio=[test_audio_path], max_tokens=N_GEN, temperature=0,
                        ignore_eos=True).token_ids == ref  # by path, too


def test_wav_and_flac_of_the_same_samples_answer_alike(alm, clip_samples):
    """WAV and FLAC (lossless) of the same 16-bit samples decode to the same audio: the same answer and size."""
    samples, rate = clip_samples
    prompt = _prompt(alm)
    answers = {fmt: alm.generate(prompt, audio=[_encoded(samples, rate, fmt)], max_tokens=N_GEN, temperature=0,
                                 ignore_eos=True) for fmt in ("WAV", "FLAC")}
    assert answers["WAV"].token_ids == answers["FLAC"].token_ids
    assert {a.usage.prompt_tokens for a in answers.values()} == {
        _text_tokens(alm, prompt) + MARKER_TOKENS + WINDOW_TOKENS}
    # a 32-bit float WAV at another rate (resampled to the encoder's 16 kHz by libmtmd) is taken too
    resampled = alm.generate(prompt, audio=[_encoded(samples[::2].copy(), rate // 2, "WAV", "FLOAT")], max_tokens=2,
                             temperature=0)
    assert resampled.usage.prompt_tokens == answers["WAV"].usage.prompt_tokens


def test_the_clip_changes_the_answer(alm, clip_samples):
    samples, rate = clip_samples
    prompt = _prompt(alm)
    speech = alm.generate(prompt, audio=[_encoded(samples, rate, "WAV")], max_tokens=N_GEN, temperature=0,
                          ignore_eos=True)
    silence = alm.generate(prompt, audio=[_encoded(np.zeros_like(samples), rate, "WAV")], max_tokens=N_GEN,
                           temperature=0, ignore_eos=True)
    assert speech.token_ids != silence.token_ids
    assert speech.usage.prompt_tokens == silence.usage.prompt_tokens


def test_a_long_clip_is_several_windows_each_counted(alm, audio_pair, clip_samples):
    """A 70 s clip is three 30 s windows for the whisper encoder (libmtmd pads the clip with 30 s of silence and
    keeps every whole window): 3 x 750 tokens, each window its own chunk, and the answer libmtmd's own path gives."""
    samples, rate = clip_samples
    long = np.concatenate([samples] * 4)  # 4 x 17.4 s
    assert 60 < len(long) / rate < 89
    flac = _encoded(long, rate, "FLAC")
    prompt = _prompt(alm)
    got = alm.generate(prompt, audio=[flac], max_tokens=4, temperature=0, ignore_eos=True)
    assert got.usage.prompt_tokens == _text_tokens(alm, prompt) + MARKER_TOKENS + 3 * WINDOW_TOKENS
    model_path, mmproj = audio_pair
    # The random pair's next-token distribution is nearly flat (its top logits ~0.005 apart after 2265 positions),
    # so flash attention's other rounding picks another first token: compared without it, as llama-cpp-python runs.
    with jan.Model(model_path, mmproj=mmproj, n_ctx=4096, n_threads=1, flash_attn=False) as exact:
        assert exact.generate(prompt, audio=[flac], max_tokens=4, temperature=0, ignore_eos=True).token_ids == \
            llama_cpp_mtmd_greedy(*audio_pair, prompt, [flac], 4, n_ctx=4096)
    # it does not fit a smaller context: refused before the encoder runs
    with jan.Model(model_path, mmproj=mmproj, n_ctx=2048, n_threads=1) as small:
        with pytest.raises(jan.ContextOverflowError):
            small.generate(prompt, audio=[flac], max_tokens=1)
        assert small.metrics()["media_encodes_total"] == 0


def test_a_repeated_clip_reuses_its_encoding_and_kv_cache(audio_pair, test_audio_path, clip_samples):
    """The same clip again: its embeddings come from the projector's cache (not encoded again) and, in the same
    slot, its KV from the prefix cache; a follow-up turn about it reuses the whole first turn. Another clip at the
    same place is evaluated again."""
    model_path, mmproj = audio_pair
    mp3 = test_audio_path.read_bytes()
    with jan.Model(model_path, mmproj=mmproj, n_ctx=4096, n_parallel=1, n_threads=1) as model:
        prompt = _prompt(model)
        first = model.generate(prompt, audio=[mp3], max_tokens=4, temperature=0, ignore_eos=True)
        assert first.usage.cached_tokens == 0
        again = model.generate(prompt, audio=[mp3], max_tokens=4, temperature=0, ignore_eos=True)
        assert again.usage.cached_tokens == again.usage.prompt_tokens - 1  # all but the last token, as for text
        assert again.token_ids == first.token_ids
        follow_up = prompt + first.text + "<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n"
        second = model.generate(follow_up, audio=[mp3], max_tokens=4, temperature=0, ignore_eos=True)
        assert second.usage.cached_tokens >= first.usage.prompt_tokens
        assert model.metrics()["media_encodes_total"] == 1
        # another clip at the same place: only the text before it is reused
        other = model.generate(prompt, audio=[_encoded(np.zeros_like(clip_samples[0]), clip_samples[1], "WAV")],
                               max_tokens=2, temperature=0)
        assert other.usage.cached_tokens < _text_tokens(model, prompt)
        assert model.metrics()["media_encodes_total"] == 2
        # and the first clip, sent once more after it, is still not encoded again (the projector's cache)
        model.generate(prompt, audio=[mp3], max_tokens=1, temperature=0)
        assert model.metrics()["media_encodes_total"] == 2


def test_the_prompt_cache_keeps_no_audio_prompt(audio_pair, test_audio_path):
    """cache_ram_mib keeps evicted text prompts in host memory; a prompt with audio is never kept (its KV stands
    for embeddings no token list can name)."""
    model_path, mmproj = audio_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=4096, n_parallel=1, n_threads=1, cache_ram_mib=64) as model:
        model.generate(_prompt(model), audio=[test_audio_path.read_bytes()], max_tokens=2, temperature=0)
        model.generate("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", max_tokens=2, temperature=0)
        assert model.metrics()["prompt_cache_prompts"] == 0  # the audio prompt the text one replaced: not kept
        model.generate("Something else entirely", max_tokens=2, temperature=0)
        assert model.metrics()["prompt_cache_prompts"] == 1  # (the text prompt it replaced is: the cache is on)


def test_audio_requests_in_parallel_slots_answer_as_alone(alm, test_audio_path, clip_samples):
    import threading

    prompt = _prompt(alm)
    clips = [test_audio_path.read_bytes(), _encoded(clip_samples[0][::-1].copy(), clip_samples[1], "WAV")]
    alone = [alm.generate(prompt, audio=[c], max_tokens=6, temperature=0, ignore_eos=True).token_ids for c in clips]
    results: dict[int, list[int]] = {}

    def run(i: int) -> None:
        results[i] = alm.generate(prompt, audio=[clips[i]], max_tokens=6, temperature=0, ignore_eos=True).token_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive()
    assert results == {0: alone[0], 1: alone[1]}


@pytest.mark.parametrize("data, reason", [
    (b"RIFF\x24\0\0\0WAVEfmt " + b"\0" * 40, "unsupported_format"),  # a WAV header and nothing that decodes
    (b"fLaC" + b"\0" * 64, "unsupported_format"),
    (b"ID3\x04\0\0\0\0\0\0" + b"\0" * 64, "unsupported_format"),
    (b"OggS" + b"\0" * 64, "unsupported_format"),  # a format jan does not take
    (b"hello", "unsupported_format"),
    (b"", "unsupported_format"),
])
def test_bad_audio_is_a_media_error_naming_the_clip(alm, data, reason, capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="jan.llama"):
        with pytest.raises(jan.MediaError) as info:
            alm.generate(_prompt(alm), audio=[data], max_tokens=1)
    assert info.value.reason == reason
    assert str(info.value).startswith("audio 1: "), str(info.value)
    assert info.value.item_index == 0
    # libmtmd's decoder says why in jan's log, not on the process's stderr; and as a detail (DEBUG), not an ERROR
    # of the server's: the caller's damaged clip is its MediaError
    jan.engine.logs.forward_native_logs()
    assert "Unable to read" not in capfd.readouterr().err
    assert not [r.getMessage() for r in caplog.records if r.name == "jan.llama" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("n_samples", [1, 2, 3])
def test_a_clip_of_a_sample_or_two_is_refused_or_heard_never_a_crash(alm, n_samples):
    """libmtmd asserts that a clip has more than one sample (GGML_ASSERT: it aborted the whole process, the server
    with it, for a one-sample WAV that decodes fine). One sample is the caller's MediaError naming the clip; two or
    more are padded by the encoder's preprocessing and heard."""
    clip = _encoded(np.full(n_samples, 0.25, dtype=np.float32), 16000, "WAV")
    if n_samples == 1:
        with pytest.raises(jan.MediaError) as info:
            alm.generate(_prompt(alm), audio=[clip], max_tokens=1)
        assert (info.value.reason, info.value.item_index) == ("unsupported_format", 0)
        assert str(info.value).startswith("audio 1: the audio is too short"), str(info.value)
    else:
        assert alm.generate(_prompt(alm), audio=[clip], max_tokens=1, temperature=0).usage.prompt_tokens > WINDOW_TOKENS


def _flac_claiming(total_samples: int) -> bytes:
    """A short FLAC whose STREAMINFO claims ``total_samples`` samples (the buffer libmtmd's decoder allocates)."""
    data = bytearray(_encoded(np.zeros(1600, dtype=np.float32), 16000, "FLAC"))
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = ((packed & ~((1 << 36) - 1)) | total_samples).to_bytes(8, "big")
    return bytes(data)


def _wav_at(rate: int, n_samples: int) -> bytes:
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\x10" * n_samples)
    return out.getvalue()


@pytest.mark.parametrize("clip", [
    # 600 million samples claimed by a 1 KB file: a 2.4 GB buffer (std::bad_alloc, or the process killed for memory)
    pytest.param(lambda: _flac_claiming(600_000_000), id="flac-claiming-10-hours"),
    # 40 KB at 1 Hz is 20,000 seconds: 320 million samples at 16 kHz (3 GB and minutes of work before the context
    # check could refuse it)
    pytest.param(lambda: _wav_at(1, 20_000), id="wav-at-1-hz"),
])
def test_a_clip_whose_header_says_it_is_too_long_is_refused_before_it_is_decoded(alm, clip):
    with pytest.raises(jan.MediaError) as info:
        alm.generate(_prompt(alm), audio=[clip()], max_tokens=1)
    assert (info.value.reason, info.value.item_index) == ("too_large", 0), str(info.value)
    assert str(info.value).startswith("audio 1: the clip is "), str(info.value)


def test_the_audio_length_limit_counts_an_mp3s_frames(audio_pair, test_audio_path):
    """An MP3 says its length nowhere: its frames are counted (the 17.4 s clip twice is 35 s)."""
    model_path, mmproj = audio_pair
    limits = jan.engine.media.MediaLimits(max_audio_seconds=30)
    clip = test_audio_path.read_bytes()
    with jan.Model(model_path, mmproj=mmproj, n_ctx=4096, n_threads=1, media_limits=limits) as model:
        assert model.generate(_prompt(model), audio=[clip], max_tokens=1).usage.prompt_tokens > WINDOW_TOKENS
        with pytest.raises(jan.MediaError) as info:
            model.generate(_prompt(model), audio=[clip + clip], max_tokens=1)
        assert info.value.reason == "too_large" and "at most 30 are accepted" in str(info.value), str(info.value)


def test_the_audio_length_limit_holds_for_a_requests_clips_together(audio_pair):
    """Each clip is decoded and held at once: clips each under the limit, together over it, are refused (a hundred
    1 KB FLACs claiming 59 minutes each held 23 GB), said of the clip that passed it."""
    model_path, mmproj = audio_pair
    limits = jan.engine.media.MediaLimits(max_total_audio_seconds=30)
    clip = _wav_at(16000, 16000 * 12)  # 12 s
    with jan.Model(model_path, mmproj=mmproj, n_ctx=4096, n_threads=1, media_limits=limits) as model:
        assert len(model.media_inputs(audio=[clip, clip])) == 2
        with pytest.raises(jan.MediaError) as info:
            model.media_inputs(audio=[clip, clip, clip])
    assert (info.value.reason, info.value.item_index) == ("too_large", 2), str(info.value)
    assert "longer than the 30 seconds accepted together" in str(info.value)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"), ("WAV", "ULAW"),
                                          ("WAV", "IMA_ADPCM"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24")])
def test_the_length_read_from_headers_is_the_clips(fmt, subtype):
    from jan.engine.media import audio_seconds

    data = _encoded(np.zeros(2 * 22050, dtype=np.float32), 22050, fmt, subtype)
    assert audio_seconds(data, fmt.lower()) == pytest.approx(2.0, rel=0.03)


# Each audio projector type's floor, read from libmtmd's preprocessors (mtmd-audio.cpp) with the frame sizes clip.cpp
# gives the type (a 160-sample hop at 16 kHz, 240 for mimo_audio's 24 kHz): below it a clip aborted the process
# (lfm2a's per-feature normalization asserts two frames; every type's one sample), made NaN features (parakeet's
# variance over fewer than two frames), no frame at all (granite_speech's pairs, dots3note_a's n / hop) or too few
# for a downsampling convolution (mimo_audio), or was refused with no reason (qwen3tts_spkenc's reflection padding).
AUDIO_FLOORS = [("qwen2a", 2), ("qwen2.5o", 2), ("ultravox", 2), ("voxtral", 2), ("glma", 2), ("meralion", 2),
                ("musicflamingo", 2), ("qwen3a", 2), ("gemma4a", 2), ("gemma4ua", 2), ("pockettts_spkenc", 2),
                ("lfm2a", 320), ("parakeet", 320), ("granite_speech", 160), ("dots3note_a", 160),
                ("mimo_audio", 480), ("qwen3tts_spkenc", 385), ("", 2), ("a type libmtmd may add", 2)]


@pytest.mark.parametrize("projector_type, floor", AUDIO_FLOORS)
def test_each_audio_preprocessors_floor_is_guarded(projector_type, floor):
    """The guard Projector::tokenize applies before libmtmd preprocesses a clip (a MediaError naming the clip, not an
    abort): the fewest samples at the encoder's rate that the projector type's preprocessing takes."""
    assert _engine.min_audio_samples(projector_type) == floor


def test_the_projector_reads_its_audio_type_and_floor(alm):
    """The test pair's projector is a Qwen2-Audio one (whisper's preprocessing): its type from the mmproj's header,
    and the floor of every clip (one sample refused:
    test_a_clip_of_a_sample_or_two_is_refused_or_heard_never_a_crash)."""
    projector = alm._projector
    assert (projector.audio_projector_type, projector.min_audio_samples) == ("qwen2a", 2)


def test_a_clip_the_decoder_refuses_is_named_among_the_media(alm, test_audio_path):
    """The second of two clips does not decode (libmtmd's decoder refuses it while tokenizing): the error names it,
    ``item_index`` 1, as the checks made before decoding do, so a caller can name the part that sent it."""
    with pytest.raises(jan.MediaError) as info:
        alm.generate(f"{alm.media_marker} {alm.media_marker}",
                     audio=[test_audio_path.read_bytes(), b"RIFF\x24\0\0\0WAVEfmt " + b"\0" * 40], max_tokens=1)
    assert (info.value.reason, info.value.item_index) == ("unsupported_format", 1)
    assert str(info.value).startswith("audio 2: ")


def test_audio_limits_and_unreadable_paths(audio_pair, tmp_path, test_audio_path):
    model_path, mmproj = audio_pair
    limits = jan.engine.media.MediaLimits(max_bytes=1000)
    with jan.Model(model_path, mmproj=mmproj, n_ctx=1024, n_threads=1, media_limits=limits) as small:
        with pytest.raises(jan.MediaError) as info:
            small.generate(_prompt(small), audio=[test_audio_path.read_bytes()], max_tokens=1)
        assert info.value.reason == "too_large"
        with pytest.raises(jan.MediaError) as info:
            small.generate(_prompt(small), audio=[tmp_path / "missing.mp3"], max_tokens=1)
        assert info.value.reason == "unreadable"


def test_free_format_mp3_frames_count_toward_the_length():
    """A free-format frame (bitrate index 0) says no length: it runs to the next header. Such frames went uncounted,
    a way around the length limit (a 24-byte frame is 26 ms at 44.1 kHz, so 20 MB of them are 6 hours)."""
    from jan.engine.media import audio_seconds

    frame = bytes([0xFF, 0xFB, 0x00, 0x00]) + bytes(20)  # MPEG-1 layer III, free format, 44.1 kHz
    assert audio_seconds(frame * 1200, "mp3") == pytest.approx(1200 * 1152 / 44100)
