"""Fill-in-the-middle prompts: the token ids that ask a code model for the text between a prefix and a suffix.

One builder for every entry that fills in: :meth:`jan.Model.generate`'s ``suffix`` (the library's, as
llama-cpp-python's ``create_completion(suffix=...)``), ``jan run --raw --suffix`` and the server's ``/infill`` and
``suffix`` fields (:func:`jan.services.infill.infill_prompt`, which adds an earlier exchange's ``context``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from jan.engine.params import engine_text, type_refusal
from jan.errors import BadRequestError

if TYPE_CHECKING:
    from jan.engine.model import Model

__all__ = ["FIM_TOKENS", "FileChunk", "fill_in_refusal", "fill_in_tokens", "has_fill_in"]

#: The special tokens a fill-in-the-middle prompt is made of (llama.cpp's ``llama_vocab_fim_pre/suf/mid``), as
#: :attr:`jan.ModelInfo.special_tokens` names them.
FIM_TOKENS = ("fim_pre", "fim_suf", "fim_mid")
#: GGUF keys of the repo-level FIM tokens (llama.cpp's ``llama_vocab_fim_rep/sep``), and the token texts llama.cpp
#: takes for them where a file has no such key (the native model tells only the prefix/suffix/middle ones).
_REPO_KEYS = {"fim_rep": "tokenizer.ggml.fim_rep_token_id", "fim_sep": "tokenizer.ggml.fim_sep_token_id"}
_REPO_TEXTS = {"fim_rep": ("<|repo_name|>", "<repo_name>", "<reponame>"), "fim_sep": ("<|file_sep|>",)}
#: What separates extra files for a model without a file-separator token (llama-server's, so its models read the
#: same prompt): the text ``\n\n--- snippet ---\n\n``.
_SNIPPET = "\n\n--- snippet ---\n\n"


class FileChunk(Protocol):
    """One other file of the project read before the gap (:class:`jan.services.types.InfillChunk`)."""

    text: str
    filename: str


def has_fill_in(model: Model) -> bool:
    """Whether ``model``'s vocabulary has the three FIM tokens (ModelClosedError once closed)."""
    special = model.info.special_tokens
    model._live()  # (info outlives a close; tokenizing for the prompt would not)
    return all(k in special for k in FIM_TOKENS)


def fill_in_refusal(model_id: str) -> BadRequestError:
    """The refusal of a ``suffix`` for a model without FIM tokens: ``param="suffix"``, ``code="not_supported"``."""
    return BadRequestError(f"suffix: the model '{model_id}' has no fill-in-the-middle tokens, so it cannot insert "
                           "text before a suffix", param="suffix", code="not_supported")


def fill_in_tokens(model: Model, prefix: str, suffix: str, *, extra: Sequence[FileChunk] = (),
                   max_tokens: int | None = None, fit: bool = False) -> list[int]:
    """Token ids ``<fim_pre> prefix <fim_suf> suffix <fim_mid>`` (prefix-suffix-middle order, as llama.cpp's server
    builds them) with no BOS: the caller adds one where the model wants it. ``prefix`` and ``suffix`` are read as
    plain text (the text of a control token in them stays text).

    ``extra`` (llama-server's ``input_extra``: other files of the project) comes before ``<fim_pre>`` in the
    repo-level layout llama-server uses (Qwen2.5-Coder's): ``<fim_rep>myproject\\n``, then per file
    ``<fim_sep>filename\\ntext``, then ``<fim_sep>filename\\n`` for the file being edited; a model without those
    tokens gets each file after a ``--- snippet ---`` line instead. The extra context is what gives way to a full
    context: only its last tokens that fit beside the FIM prompt and ``max_tokens`` (a quarter of the context when
    no limit is given) are kept, as llama-server keeps them. With ``fit`` (llama-server's ``/infill``) the
    repository framing is there also without ``extra``, and the prefix's start and the suffix's end give way too
    where they would not fit beside ``max_tokens``: the rest is kept 3:1, as llama-server shares a batch between
    them; without it a prompt too long is the :class:`~jan.ContextOverflowError` of its generation.

    Raises :class:`~jan.errors.BadRequestError` (``param="suffix"``, ``code="not_supported"``) for a model without
    FIM tokens, :class:`~jan.ModelClosedError` for a closed one, :class:`~jan.BadRequestTypeError` naming ``prefix`` or ``suffix`` for
    one that is not a string, and a BadRequestError naming either for text with a lone UTF-16 surrogate.
    """
    for name, value in (("prefix", prefix), ("suffix", suffix)):
        if not isinstance(value, str):
            raise type_refusal(name, f"{name}: expected a string (the code {'before' if name == 'prefix' else 'after'} "
                               f"the gap), got {type(value).__name__}")
        engine_text(name, value)  # (a lone surrogate named as this argument, not as tokenize's "text")
    if not has_fill_in(model):
        raise fill_in_refusal(model.id)
    special = model.info.special_tokens
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
    return tokens


def _repo_token(model: Model, name: str) -> int | None:
    """The model's ``fim_rep``/``fim_sep`` token: its GGUF key, else a token spelled as llama.cpp looks for it."""
    raw = model.metadata.get(_REPO_KEYS[name])
    if raw is not None and str(raw).lstrip("-").isdigit() and 0 <= int(raw) < model.info.n_vocab:
        return int(raw)
    for text in _REPO_TEXTS[name]:
        ids = model.tokenize(text, add_special=False, parse_special=True)
        if len(ids) == 1 and model.token_to_piece(ids[0], special=True) == text:
            return ids[0]
    return None


def _extra_tokens(model: Model, extra: Sequence[FileChunk], room: int) -> list[int]:
    """``extra`` framed as the files of a repository (see :func:`fill_in_tokens`), its last ``room`` tokens."""
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
