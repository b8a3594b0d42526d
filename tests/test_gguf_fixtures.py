"""Tests for jan.testing.gguf_models: the GGUF files written for tests/benchmarks.

Written models must load in llama.cpp (through llama-cpp-python), generate,
tokenize exactly like the vocab GGUF they were built from, and keep its chat
template; bad files must be refused. The 250M benchmark model is not written
here (too slow); its cache logic is tested with a stand-in writer.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
from pathlib import Path

import pytest

try:
    from jan.testing import gguf_models as gm
except ImportError:  # checkout without jan installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from jan.testing import gguf_models as gm

MODELS = gm.models_dir()
needs_models = pytest.mark.skipif(
    not (MODELS / "vocab").is_dir(),
    reason=f"shared test models not found at {MODELS} (set JAN_TEST_MODELS to the folder holding vocab/)",
)

N_GEN = 8
TEXTS = [
    "Hello world, how are you?",
    " leading space and  double  spaces\n\ttabs\n\n",
    "naïve café — 東京 🤖 1234567 x=y+2;",
    "<|user|>\nhi<|end|>\n<|assistant|>",
    "<s>not special</s>",
    "",
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
TOOL_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    {"role": "tool", "tool_call_id": "call_2", "content": '{"temp_c": 25}'},
]


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf():
    return pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")


def _vocab(name: str) -> Path:
    path = gm.vocab_path(name)
    if not path.is_file():
        pytest.skip(f"vocab file {path} not found (set JAN_TEST_MODELS)")
    return path


@pytest.fixture
def load(llama_cpp):
    """Load a model (small context, one thread, quiet); closed after the test."""
    opened = []

    def _load(path, **kw):
        kw.setdefault("n_ctx", 64)
        kw.setdefault("n_threads", 1)
        kw.setdefault("n_threads_batch", 1)
        kw.setdefault("verbose", False)
        llm = llama_cpp.Llama(model_path=str(path), **kw)
        opened.append(llm)
        return llm

    yield _load
    for llm in opened:
        llm.close()


@pytest.fixture(scope="module")
def phi3_model(tmp_path_factory, gguf):
    _vocab("phi-3")
    return gm.write_phi3_chat_model(tmp_path_factory.mktemp("phi3") / "phi3-chat.gguf")


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, gguf):
    _vocab("phi-3")
    return gm.write_tool_template_model(tmp_path_factory.mktemp("tools") / "chatml-tools.gguf")


def _generate(llm, text: bytes, n: int = N_GEN) -> list[int]:
    """Greedy-generate exactly ``n`` tokens (llama's generate() ignores EOS)."""
    tokens = llm.tokenize(text, add_bos=True, special=True)
    return list(itertools.islice(llm.generate(tokens, temp=0.0), n))


@functools.lru_cache(maxsize=None)
def _reader(path: Path):
    """gguf.GGUFReader (independent of the writer's own parser), cached: it is slow."""
    import gguf

    return gguf.GGUFReader(path)


def _fields(path) -> dict:
    """{key: (types, raw values)} of general.name and every tokenizer.* field."""
    out = {}
    for name, f in _reader(Path(path)).fields.items():
        if name.startswith("tokenizer.") or name == "general.name":
            out[name] = ([int(t) for t in f.types], [bytes(f.parts[i].tobytes()) for i in f.data])
    return out


# --------------------------------------------------------------------------
# locations
# --------------------------------------------------------------------------


def test_models_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("JAN_TEST_MODELS", str(tmp_path / "nowhere"))
    assert gm.models_dir() == tmp_path / "nowhere"  # returned even though missing
    assert gm.vocab_path("phi-3") == tmp_path / "nowhere" / "vocab" / "ggml-vocab-phi-3.gguf"


def test_models_dir_default(monkeypatch):
    monkeypatch.delenv("JAN_TEST_MODELS", raising=False)
    assert gm.models_dir() == gm.repo_root().parent / "shared" / "models"


# --------------------------------------------------------------------------
# write_llama_from_vocab
# --------------------------------------------------------------------------


@needs_models
@pytest.mark.parametrize(
    "vocab, dtype, n_head_kv",
    [("llama-spm", "f32", None), ("phi-3", "f16", 2), ("llama-spm", "f16", 1)],
)
def test_written_llama_loads_and_generates(gguf, load, tmp_path, vocab, dtype, n_head_kv):
    import numpy as np

    cfg = dict(n_embd=64, n_layer=2, n_head=4, n_head_kv=n_head_kv, n_ff=96)
    path = gm.write_llama_from_vocab(tmp_path / "m.gguf", _vocab(vocab), n_ctx=256, dtype=dtype, **cfg)

    reader = gguf.GGUFReader(path)
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    assert len(reader.tensors) == 3 + 9 * cfg["n_layer"]
    assert gm.gguf_param_count(path) == gm.llama_param_count(n_vocab, **cfg)
    want = gguf.GGMLQuantizationType.F16 if dtype == "f16" else gguf.GGMLQuantizationType.F32
    for t in reader.tensors:
        expected = gguf.GGMLQuantizationType.F32 if t.name.endswith("norm.weight") else want
        assert t.tensor_type == expected, t.name
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["llama.context_length"].contents() == 256
    assert reader.fields["general.file_type"].contents() == (1 if dtype == "f16" else 0)

    llm = load(path, logits_all=True)
    assert llm.n_vocab() == n_vocab
    out = _generate(llm, b"Once upon a time")
    assert len(out) == N_GEN and all(0 <= t < n_vocab for t in out)
    assert np.isfinite(llm.scores[: llm.n_tokens]).all(), "random weights produced NaN/inf logits"


@needs_models
@pytest.mark.parametrize("vocab", ["llama-spm", "phi-3", "gpt-2", "bert-bge"])
def test_tokenizer_matches_source_vocab(gguf, load, tmp_path, vocab):
    src = _vocab(vocab)
    path = gm.write_llama_from_vocab(tmp_path / "m.gguf", src, n_embd=32, n_layer=1, n_head=2, n_ff=64)

    # every tokenizer.* key is copied with identical type and bytes, and the
    # name too (llama.cpp applies phi-3's special-token quirks by model name)
    assert _fields(path) == _fields(src)

    a = load(src, vocab_only=True)
    b = load(path, vocab_only=True)
    assert (b.n_vocab(), b.token_bos(), b.token_eos()) == (a.n_vocab(), a.token_bos(), a.token_eos())
    for text in TEXTS:
        for special in (False, True):
            ta = a.tokenize(text.encode(), add_bos=True, special=special)
            assert b.tokenize(text.encode(), add_bos=True, special=special) == ta, (text, special)
            assert b.detokenize(ta) == a.detokenize(ta)


@needs_models
def test_extra_kv_and_chat_template_override(gguf, tmp_path):
    path = gm.write_llama_from_vocab(
        tmp_path / "m.gguf",
        _vocab("llama-spm"),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_ff=64,
        chat_template="{{ messages[0]['content'] }}",
        extra_kv={
            "tokenizer.ggml.add_bos_token": False,  # keeps its BOOL type
            "jan.test.answer": 42,
            "jan.test.names": ["a", "b"],
            "tokenizer.ggml.unknown_token_id": None,  # removed
        },
    )
    f = gguf.GGUFReader(path).fields
    assert f["tokenizer.chat_template"].contents() == "{{ messages[0]['content'] }}"
    assert f["tokenizer.ggml.add_bos_token"].contents() is False
    assert f["tokenizer.ggml.add_bos_token"].types == [gguf.GGUFValueType.BOOL]
    assert f["jan.test.answer"].contents() == 42
    assert f["jan.test.answer"].types == [gguf.GGUFValueType.UINT32]
    assert f["jan.test.names"].contents() == ["a", "b"]
    assert "tokenizer.ggml.unknown_token_id" not in f


@needs_models
def test_invalid_shapes_rejected(gguf, tmp_path):
    with pytest.raises(ValueError, match="multiple of n_head"):
        gm.write_llama_from_vocab(tmp_path / "a.gguf", _vocab("llama-spm"), n_embd=30, n_layer=1, n_head=4, n_ff=8)
    with pytest.raises(ValueError, match="dtype"):
        gm.write_llama_from_vocab(tmp_path / "b.gguf", _vocab("llama-spm"), n_embd=32, n_layer=1, n_head=4, n_ff=8, dtype="q4_0")
    assert not list(tmp_path.iterdir()), "a failed write must leave no file behind"


# --------------------------------------------------------------------------
# phi-3 chat model
# --------------------------------------------------------------------------


@needs_models
def test_phi3_chat_template_equals_source(gguf, load, phi3_model):
    src = _vocab("phi-3")
    src_tmpl = _reader(src).fields["tokenizer.chat_template"].contents()
    assert _reader(phi3_model).fields["tokenizer.chat_template"].contents() == src_tmpl
    assert _fields(phi3_model) == _fields(src)
    assert load(phi3_model, vocab_only=True).metadata["tokenizer.chat_template"] == src_tmpl


@needs_models
def test_phi3_chat_model_chat_completion(load, llama_cpp, phi3_model):
    llm = load(phi3_model, n_ctx=128)
    assert llm.chat_format == "chat_template.default"  # the template from the file is used
    fmt = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"], eos_token="<|endoftext|>", bos_token="<s>"
    )
    prompt = fmt(messages=[{"role": "user", "content": "Hi"}]).prompt
    assert prompt == "<s><|user|>\nHi<|end|>\n<|assistant|>\n"

    resp = llm.create_chat_completion(
        messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0.0, seed=1
    )
    # <s> <|user|> \n Hi <|end|> \n <|assistant|> \n, with the markers as single tokens
    expected = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    assert resp["usage"]["prompt_tokens"] == len(expected) and len(expected) <= 10
    assert resp["choices"][0]["message"]["role"] == "assistant"
    assert 1 <= resp["usage"]["completion_tokens"] <= 4


# --------------------------------------------------------------------------
# ChatML + tools model
# --------------------------------------------------------------------------


def _render_tools(template: str, *, llama_like: bool) -> str:
    """Render TOOL_CONVERSATION with jinja2, as llama-cpp-python does or plainly."""
    jinja2 = pytest.importorskip("jinja2")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    opts = dict(trim_blocks=True, lstrip_blocks=True) if llama_like else {}
    env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), **opts)
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    return env.from_string(template).render(
        messages=TOOL_CONVERSATION, tools=TOOLS, add_generation_prompt=True, bos_token="<s>", eos_token="<|im_end|>"
    )


def test_tool_template_renders_tools_calls_and_results():
    text = _render_tools(gm.CHATML_TOOL_TEMPLATE, llama_like=True)
    assert text == _render_tools(gm.CHATML_TOOL_TEMPLATE, llama_like=False)  # whitespace-control independent

    system, rest = text.split("<|im_end|>\n", 1)
    assert system.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n")
    tools_block = system.split("<tools>\n", 1)[1].split("</tools>", 1)[0]
    assert [json.loads(line) for line in tools_block.splitlines()] == TOOLS

    assert rest.startswith("<|im_start|>user\nWeather in Paris and Rome?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n")
    calls = [json.loads(c.split("</tool_call>")[0]) for c in rest.split("<tool_call>\n")[1:]]
    assert calls == [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_weather", "arguments": {"city": "Rome"}},
    ]
    assert "</tool_call>\n<tool_call>\n" in rest  # calls on separate lines
    assert (
        "<|im_start|>tool\n<tool_response>\n{\"temp_c\": 21}\n</tool_response><|im_end|>\n"
        "<|im_start|>tool\n<tool_response>\n{\"temp_c\": 25}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ) in rest
    assert text.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_tool_template_without_tools_is_plain_chatml():
    jinja2 = pytest.importorskip("jinja2")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    tmpl = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader()).from_string(gm.CHATML_TOOL_TEMPLATE)
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    assert tmpl.render(messages=msgs, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    )


@needs_models
def test_tool_model_tokenizer(gguf, load, tool_model):
    src = load(_vocab("phi-3"), vocab_only=True)
    llm = load(tool_model, vocab_only=True)
    n = src.n_vocab()
    assert llm.n_vocab() == n + 2
    assert llm.tokenize(b"<|im_start|>", add_bos=False, special=True) == [n]
    assert llm.tokenize(b"<|im_end|>", add_bos=False, special=True) == [n + 1]
    assert llm.token_eos() == n + 1
    assert llm.metadata["tokenizer.chat_template"] == gm.CHATML_TOOL_TEMPLATE
    for text in TEXTS:  # ordinary text tokenizes exactly like the phi-3 vocab
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == src.tokenize(
            text.encode(), add_bos=True, special=True
        )


@needs_models
def test_tool_model_chat_completion_with_tools(load, tool_model):
    llm = load(tool_model, n_ctx=512)
    assert llm.chat_format == "chat_template.default"
    resp = llm.create_chat_completion(
        messages=TOOL_CONVERSATION, tools=TOOLS, max_tokens=4, temperature=0.0, seed=1
    )
    # the prompt llama-cpp-python built from the file's template contains the tools
    prompt = _render_tools(llm.metadata["tokenizer.chat_template"], llama_like=True)
    expected = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    assert resp["usage"]["prompt_tokens"] == len(expected)
    assert expected.count(llm.tokenize(b"<|im_start|>", add_bos=False, special=True)[0]) == 6
    assert 1 <= resp["usage"]["completion_tokens"] <= 4
    assert len(_generate(llm, prompt.encode())) == N_GEN


# --------------------------------------------------------------------------
# bad files
# --------------------------------------------------------------------------


@needs_models
@pytest.mark.parametrize("fraction", [0.5, 0.02])
def test_truncated_copy_is_refused(load, phi3_model, tmp_path, fraction):
    dst = gm.write_truncated_copy(phi3_model, tmp_path / "trunc.gguf", fraction)
    assert dst.stat().st_size == int(phi3_model.stat().st_size * fraction)
    assert dst.read_bytes()[:4] == b"GGUF"
    with pytest.raises(ValueError):
        load(dst)


def test_truncated_copy_rejects_bad_fraction(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            gm.write_truncated_copy(src, tmp_path / "dst.bin", bad)
    assert not (tmp_path / "dst.bin").exists()


def test_not_gguf_is_refused(load, tmp_path):
    dst = gm.write_not_gguf(tmp_path / "plain.gguf")
    assert dst.stat().st_size == 4096 and dst.read_bytes()[:4] != b"GGUF"
    with pytest.raises(ValueError):
        load(dst)


# --------------------------------------------------------------------------
# benchmark model (the real 250M write is too slow for tests)
# --------------------------------------------------------------------------


def test_bench_config_is_about_250m_params():
    cfg = {k: gm.BENCH_LLAMA_CONFIG[k] for k in ("n_embd", "n_layer", "n_head", "n_head_kv", "n_ff")}
    n = gm.llama_param_count(32000, **cfg)
    assert 240e6 <= n <= 260e6, n
    assert gm.BENCH_LLAMA_CONFIG["dtype"] == "f16"


def test_bench_model_path_writes_once_and_atomically(monkeypatch, tmp_path):
    calls = []

    def fake_write(path, **kw):
        calls.append(Path(path))
        Path(path).write_bytes(b"GGUF" + b"\0" * 60)
        return Path(path)

    def failing_write(path, **kw):
        raise KeyboardInterrupt  # an interrupted write ...

    monkeypatch.setattr(gm, "write_bench_llama", failing_write)
    monkeypatch.setenv("JAN_BENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(KeyboardInterrupt):
        gm.bench_model_path()
    assert not list((tmp_path / "cache").glob("*.gguf"))  # ... leaves no model file

    monkeypatch.setattr(gm, "write_bench_llama", fake_write)
    first = gm.bench_model_path()
    assert first.parent == tmp_path / "cache" and first.suffix == ".gguf"
    assert gm.bench_model_path() == first == gm.bench_model_path(tmp_path / "cache")
    assert calls == [first]

    other = gm.bench_model_path(tmp_path / "elsewhere")  # explicit dir beats the env var
    assert other.parent == tmp_path / "elsewhere" and len(calls) == 2


@needs_models
def test_bench_writer_streams_without_broken_files(gguf, monkeypatch, tmp_path):
    """write_llama_from_vocab's temp file never survives a failure mid-write."""

    def boom(*a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gm, "_random_tensor", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        gm.write_llama_from_vocab(tmp_path / "m.gguf", _vocab("llama-spm"), n_embd=32, n_layer=1, n_head=2, n_ff=64)
    assert list(tmp_path.iterdir()) == []
