"""Fill-in-the-middle: the prompt that asks a code model for the text between a prefix and a suffix."""

from __future__ import annotations

import asyncio

from jan.core import LocalInferenceExtension
from jan.services.abilities import FIM_TOKENS, fill_in_refusal
from jan.services.errors import RequestError
from jan.services.local import continued_prompt, given_back_unless_begun
from jan.services.models import ModelService
from jan.services.types import InfillChunk

__all__ = ["infill_prompt"]

#: GGUF keys of the repo-level FIM tokens (llama.cpp's ``llama_vocab_fim_rep/sep``), and the token texts llama.cpp
#: takes for them where a file has no such key (the native model tells only the prefix/suffix/middle ones).
_REPO_KEYS = {"fim_rep": "tokenizer.ggml.fim_rep_token_id", "fim_sep": "tokenizer.ggml.fim_sep_token_id"}
_REPO_TEXTS = {"fim_rep": ("<|repo_name|>", "<repo_name>", "<reponame>"), "fim_sep": ("<|file_sep|>",)}
#: What separates extra files for a model without a file-separator token (llama-server's, so its models read the
#: same prompt): the text ``\n\n--- snippet ---\n\n``.
_SNIPPET = "\n\n--- snippet ---\n\n"


async def infill_prompt(models: ModelService, model_id: str, prefix: str, suffix: str,
                       context: tuple[int, ...] = (), extra: tuple[InfillChunk, ...] = (),
                       max_tokens: int | None = None, fit: bool = False) -> tuple[int, ...]:
    """Token ids ``[BOS] <fim_pre> prefix <fim_suf> suffix <fim_mid>`` (prefix-suffix-middle order,
    as llama.cpp's server builds them) for a :class:`~jan.services.types.CompletionRequest`; after
    ``context`` (an earlier exchange's token ids, Ollama's ``context``) when given, as
    :func:`~jan.services.local.continued_prompt` joins them.

    ``extra`` (llama-server's ``input_extra``: other files of the project) comes before ``<fim_pre>`` in the
    repo-level layout llama-server uses (Qwen2.5-Coder's): ``<fim_rep>myproject\n``, then per file
    ``<fim_sep>filename\ntext``, then ``<fim_sep>filename\n`` for the file being edited; a model without those
    tokens gets each file after a ``--- snippet ---`` line instead. The extra context is what gives way to a full
    context: only its last tokens that fit beside the FIM prompt and ``max_tokens`` (a quarter of the context when
    no limit is given) are kept, as llama-server keeps them. Without ``extra`` and ``fit`` the prompt is the plain
    one above. With ``fit`` (llama-server's ``/infill``, whose clients send more code than fits and leave the cut
    to it) the repository framing is there also without ``extra`` (``<fim_rep>myproject\n<fim_sep>filename\n``,
    as llama-server frames every infill for a model with those tokens, so that greedy output is the same), and the
    prefix's start and the suffix's end give way too, where they would not fit beside ``max_tokens``: the rest is
    kept 3:1, as llama-server shares a batch between them; without it such a prompt is the engine's 400.

    The FIM tokens are the model's own (``llama_vocab_fim_pre/suf/mid``). Raises :class:`RequestError`:
    ``param="suffix"`` for a model without them or one on a remote engine, ``param="context"`` for a
    context id outside the vocabulary.
    """
    target = await models.resolve_generating(model_id)
    if not isinstance(target.engine, LocalInferenceExtension):
        raise RequestError(f"suffix: the model '{target.id}' runs on the '{target.engine.engine_name}' engine, "
                           "which cannot fill in the middle", param="suffix", code="not_supported")
    await models.require_fill_in(target, context)  # no FIM tokens (or a bad context id): refused before a load
    local = await target.engine.acquire(target.model)
    model = local.model

    def build() -> tuple[int, ...]:
        # held: it ends the claim of this hand-out, which submits nothing (the completion that follows is handed
        # the model again), refused or not, so that a keep_alive 0 (which waits for claims) need not wait for it
        with local.hold():
            special = model.info.special_tokens
            if not all(k in special for k in FIM_TOKENS):  # (where the header could not tell)
                raise fill_in_refusal(target.id)
            pre, suf = model.tokenize(prefix, add_special=False), model.tokenize(suffix, add_special=False)
            reserve = max_tokens or model.n_ctx // 4  # (room to write the middle in)
            budget = model.n_ctx - 4 - reserve  # (4: a BOS and the three FIM tokens)
            if fit and len(pre) + len(suf) > budget > 0:
                keep_suffix = min(len(suf), max(budget // 4, budget - len(pre)))
                pre, suf = pre[len(pre) - (budget - keep_suffix):], suf[:keep_suffix]
            tokens = [special["fim_pre"], *pre, special["fim_suf"], *suf, special["fim_mid"]]
            if extra or fit:  # (llama-server's /infill frames the file as a repository's even without others)
                room = model.n_ctx - len(tokens) - 1 - reserve  # (1: a BOS)
                tokens = [*_extra_tokens(model, extra, max(0, room)), *tokens]
            return tuple(continued_prompt(model, context, tokens))

    with given_back_unless_begun(local):  # (its client gone before the thread began: not held)
        return await asyncio.to_thread(build)


def _repo_token(model, name: str) -> int | None:
    """The model's ``fim_rep``/``fim_sep`` token: its GGUF key, else a token spelled as llama.cpp looks for it."""
    raw = model.metadata.get(_REPO_KEYS[name])
    if raw is not None and str(raw).lstrip("-").isdigit() and 0 <= int(raw) < model.info.n_vocab:
        return int(raw)
    for text in _REPO_TEXTS[name]:
        ids = model.tokenize(text, add_special=False, parse_special=True)
        if len(ids) == 1 and model.token_to_piece(ids[0], special=True) == text:
            return ids[0]
    return None


def _extra_tokens(model, extra: tuple[InfillChunk, ...], room: int) -> list[int]:
    """``extra`` framed as the files of a repository (see :func:`infill_prompt`), its last ``room`` tokens."""
    rep, sep = _repo_token(model, "fim_rep"), _repo_token(model, "fim_sep")
    tokens: list[int] = [rep, *model.tokenize("myproject\n", add_special=False)] if rep is not None else []
    for chunk in extra:
        if sep is not None:
            tokens += [sep, *model.tokenize(chunk.filename + "\n", add_special=False)]
        else:
            tokens += model.tokenize(_SNIPPET, add_special=False)
        tokens += model.tokenize(chunk.text, add_special=False)
    if sep is not None:  # the file being edited (llama-server names it "filename": a client does not tell it)
        tokens += [sep, *model.tokenize("filename\n", add_special=False)]
    return tokens[len(tokens) - room:] if room < len(tokens) else tokens
