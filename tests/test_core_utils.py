"""Core helpers: API version matching, the data-folder file system, chunk aggregation."""

from __future__ import annotations

import asyncio
import os

import pytest

from jan.core.chunks import aggregate_chat_chunks, aggregate_completion_chunks, collect_chat_completion
from jan.core.exceptions import PathOutsideDataFolderError
from jan.core.fs import LocalFileSystem, atomic_write_text
from jan.core.version import API_VERSION, InvalidSpecifier, check_api, version_matches


@pytest.mark.parametrize(
    "spec, version, expected",
    [
        (">=1,<2", "1.0", True),
        (">=1,<2", "2.0", False),
        (">=1, <2", "1.9.3", True),
        ("~=1.0", "1.7", True),
        ("~=1.0", "2.0", False),
        ("~=1.2.0", "1.3", False),
        ("==1.*", "1.4", True),
        ("==1.*", "10.0", False),
        ("!=1.0", "1.0", False),
        ("==1", "1.0.0", True),
        (">1.0", "1.0", False),
        ("", "3.0", True),
    ],
)
def test_version_specifiers(spec, version, expected):
    assert version_matches(spec, version) is expected


def test_check_api_reasons():
    assert check_api(None) is None and check_api(">=1,<2") is None
    assert API_VERSION == "1.0"
    assert "provides API 1.0" in check_api(">=2")
    with pytest.raises(InvalidSpecifier):
        version_matches(">=1.x", "1.0")
    assert "not a valid version specifier" in check_api(">=1.x")
    assert "not a valid" in check_api("~=1")


def test_filesystem_refuses_paths_outside_the_root(tmp_path):
    fs = LocalFileSystem(tmp_path)
    for bad in ("../x", "a/../../x", "/etc/passwd", "a/../b", "a\\..\\b", "nul\x00byte"):
        with pytest.raises(PathOutsideDataFolderError):
            fs.resolve(bad)
    assert fs.resolve("threads/t1/thread.json") == tmp_path.resolve() / "threads" / "t1" / "thread.json"
    assert fs.resolve("./a//b") == tmp_path.resolve() / "a" / "b"
    with pytest.raises(PathOutsideDataFolderError):
        fs.remove(".")


def test_filesystem_atomic_json_roundtrip(tmp_path):
    fs = LocalFileSystem(tmp_path)
    assert fs.read_json("a/b.json", default={"d": 1}) == {"d": 1}
    with pytest.raises(FileNotFoundError):
        fs.read_json("a/b.json")
    fs.write_json("a/b.json", {"héllo": [1, 2]})
    assert fs.read_json("a/b.json") == {"héllo": [1, 2]}
    assert "héllo" in (tmp_path / "a" / "b.json").read_text(encoding="utf-8")
    assert fs.listdir("a") == ["b.json"] and fs.listdir("missing") == []
    fs.write_text("a/b.json", "{bad")
    with pytest.raises(ValueError):
        fs.read_json("a/b.json")
    assert fs.remove("a") and not fs.exists("a") and not fs.remove("a")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # temp file cleaned up


def test_aggregate_chat_chunks_merges_content_tool_calls_and_usage():
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "lo"}, "logprobs": {"content": [{"token": "lo", "logprob": -0.1}]}}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}}]}}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}},
    ]
    result = aggregate_chat_chunks(chunks)
    assert result["object"] == "chat.completion" and result["id"] == "chatcmpl-1" and result["model"] == "m"
    choice = result["choices"][0]
    assert choice["message"]["content"] == "Hello"
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["logprobs"] == {"content": [{"token": "lo", "logprob": -0.1}]}
    assert result["usage"]["total_tokens"] == 8


def test_aggregate_completion_chunks_with_several_choices():
    chunks = [
        {"id": "c", "object": "text_completion", "created": 1, "model": "m", "choices": [{"index": 1, "text": "B"}]},
        {"id": "c", "choices": [{"index": 0, "text": "A", "logprobs": {"tokens": ["A"], "token_logprobs": [-1.0]}}]},
        {"id": "c", "choices": [{"index": 0, "text": "a", "finish_reason": "length"}, {"index": 1, "text": "b", "finish_reason": "stop"}]},
    ]
    result = aggregate_completion_chunks(chunks)
    assert [(c["index"], c["text"], c["finish_reason"]) for c in result["choices"]] == [(0, "Aa", "length"), (1, "Bb", "stop")]
    assert result["choices"][0]["logprobs"] == {"tokens": ["A"], "token_logprobs": [-1.0]}


async def test_collect_chat_completion_closes_the_stream_even_on_error():
    closed = []

    async def stream(fail: bool):
        try:
            yield {"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
            if fail:
                raise RuntimeError("engine died")
            yield {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        finally:
            closed.append(fail)

    result = await collect_chat_completion(stream(False))
    assert result["choices"][0]["message"]["content"] == "hi" and closed == [False]
    with pytest.raises(RuntimeError):
        await collect_chat_completion(stream(True))
    assert closed == [False, True]

    gate = asyncio.Event()

    async def slow():
        try:
            yield {"id": "x", "choices": []}
            await gate.wait()
            yield {"id": "x", "choices": []}  # pragma: no cover
        finally:
            closed.append("cancelled")

    task = asyncio.create_task(collect_chat_completion(slow()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed[-1] == "cancelled"
