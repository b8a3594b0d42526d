"""Audio from the command line, on the tiny Qwen2-Audio pair and a real speech clip: `jan run --audio`, in process
and through a running server, and its refusals (a file that is no clip, a model that hears nothing)."""

from __future__ import annotations

import re

import pytest

from server_helpers import start_server
from test_cli_helpers import cli_env, fails, jan, ok


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "jan")


def _prompt_tokens(stderr: str) -> int:
    found = re.search(r"prompt: (\d+) tokens", stderr)
    assert found, stderr
    return int(found.group(1))


ARGS = ("Transcribe audio to text", "-n", "4", "--temperature", "0", "--threads", "1", "-v")


def test_run_with_a_clip(env, audio_pair, test_audio_path):
    model, _mmproj = audio_pair  # mmproj-<name> beside the .gguf: picked up for a model given by path
    heard = ok(jan("run", model, *ARGS, "--audio", test_audio_path, env=env))
    again = ok(jan("run", model, *ARGS, "-a", test_audio_path, env=env))
    text_only = ok(jan("run", model, *ARGS, env=env))
    assert heard.stdout == again.stdout
    assert _prompt_tokens(heard.stderr) >= _prompt_tokens(text_only.stderr) + 750  # one 30 s window


def test_run_with_a_clip_through_the_server(env, tmp_path, audio_pair, test_audio_path):
    # the same answer from a running server (its input_audio part) as from the model loaded in this process
    srv = start_server(tmp_path / "srv", [audio_pair[0]], n_ctx=2048, n_parallel=1, n_threads=1)
    try:
        served = ok(jan("run", "audio-chat", *ARGS, "--audio", test_audio_path,
                        env=cli_env(tmp_path / "client", local=False, JAN_API_URL=srv.base_url)))
        local = ok(jan("run", audio_pair[0], *ARGS, "--audio", test_audio_path, "--local", env=env))
    finally:
        srv.stop()
    assert served.stdout == local.stdout
    assert _prompt_tokens(served.stderr) == _prompt_tokens(local.stderr)


def test_run_refuses_what_is_no_clip_and_models_that_hear_nothing(env, audio_pair, vision_pair, stories_path,
                                                                  tmp_path, test_audio_path):
    model, _mmproj = audio_pair
    notes = tmp_path / "notes.txt"
    notes.write_text("no sound here")
    fails(jan("run", model, "what is said", "--audio", notes, env=env), "not a WAV, MP3, FLAC clip", "ffmpeg")
    fails(jan("run", model, "what is said", "--audio", tmp_path / "missing.mp3", env=env), "cannot read audio")
    result = jan("run", model, "what is said", "--raw", "--audio", notes, env=env)
    assert result.returncode == 2 and "--audio applies to chat" in result.stderr
    # no projector: refused before the model loads
    fails(jan("run", stories_path, "what is said", "--audio", test_audio_path, env=env), "takes no audio", "mmproj")
    # a projector that sees but does not hear: the engine's own words, naming no request field the user never wrote
    said = fails(jan("run", vision_pair[0], "what is said", "--audio", test_audio_path, env=env), "audio")
    assert "messages[" not in said


def test_a_clip_that_does_not_decode_is_named_by_its_option_and_path(env, tmp_path, audio_pair, test_audio_path):
    # An MP3 header over frames that do not decode passes the format check and fails as the model reads it: the error
    # names the option and the file, not the request's "messages[0].content[1]" the user never wrote (in process and
    # from a server alike).
    model, _mmproj = audio_pair
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(test_audio_path.read_bytes()[:10] + b"\xff" * 5000)
    said = fails(jan("run", model, "what is said", "-n", "2", "--audio", broken, env=env), f"--audio '{broken}'",
                 "not a readable")
    assert "messages[" not in said
    srv = start_server(tmp_path / "srv", [model], n_ctx=2048, n_parallel=1, n_threads=1)
    try:
        said = fails(jan("run", "audio-chat", "what is said", "-n", "2", "--audio", test_audio_path, "-a", broken,
                         "--system", "Be brief.", env=cli_env(tmp_path / "client", local=False,
                                                               JAN_API_URL=srv.base_url)),
                     f"--audio '{broken}'", "not a readable")
    finally:
        srv.stop()
    assert "messages[" not in said
