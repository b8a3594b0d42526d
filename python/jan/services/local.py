"""Generation on a local engine's model: prompts, constraints, seeds, and the ``n`` interleaved requests.

Everything slow here (template rendering, tokenizing, grammar building, submitting with a
grammar, which llama.cpp parses) is called through :func:`off_loop`, so the event loop keeps
serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import json
import logging
import random
import re
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar

import jan
from jan.core import LocalModel
from jan.engine.params import engine_seed
from jan.engine.request import generation_error
from jan.engine.media import AudioClip
from jan.engine.results import TokenLogprob
from jan.services.abilities import (context_media_refusal, fan_out_refusal, no_projector_text, request_template,
                                    template_refusal)
from jan.services.types import (MEDIA_MARKER, ChatMessage, ChatRequest, ImagePart, AudioPart, MediaText,
                                NamedToolChoice, TextPart, place_item, thought_prefill)
from jan.services.errors import PrefillGrammarError, RequestError
from jan.errors import LARGER_CONTEXT, GrammarPrefixError
from jan.services.model_reasoning import model_reasoning, reasoning_budget
from jan.services.untrusted import (Piece, Placeholders, PromptText, TextWrites, UntrustedTextPart, control_ids,
                                    neutralized, prompt_tokens, spell_nothing, split_placeholders,
                                    tool_texts)
from jan.templates import (JSON_OBJECT_GRAMMAR, ChatTemplate, ChatTemplateRenderError, GrammarError, check_gbnf,
                           json_schema_to_grammar, template_variables)
from jan.templates.formats import ChatPlan, ReasoningRequest, format_for_template
from jan.templates.formats.grammars import parameters_error
from jan.templates.formats.call_start import call_start_tokens

T = TypeVar("T")

__all__ = ["ShownLogprobs", "ShownTokens", "chat_plan", "chat_prompt", "check_context", "continued_prompt", "render_chat",
           "render_prompt", "check_fan_out", "shown_bytes",
           "cancel_all", "constraint_grammar", "merged", "off_loop", "prompted_as", "seeds", "client_seed",
           "submits_on_loop",
           "template_messages", "template_tools", "asks_text_grammar", "check_text_grammars", "prefill_refused",
           "carries_schemas", "check_schemas"]


async def off_loop(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run blocking work in a worker thread."""
    return await asyncio.to_thread(fn, *args, **kw)


#: Completion prompts of at most this many characters in all (a token id counts as one) are tokenized and submitted
#: on the event loop (:func:`submits_on_loop`). Tokenizing 512 characters takes 0.2-0.4 ms (stories260K's and
#: Gemma 3's vocabularies, 2026-12-03), less than the hop to a worker thread and back that it saves: 0.5-1 ms of a
#: short request's time to first token on a 2-core machine whose other core decodes (the hop waits for a core).
SUBMIT_ON_LOOP_CHARS = 512


def submits_on_loop(prompts: Sequence[str | Sequence[int]], n: int, grammar: str | None,
                    logit_bias: Mapping[Any, Any] | None = None) -> bool:
    """Whether submitting ``n`` choices of each of ``prompts`` is light enough for the event loop: short prompts
    and few ``logit_bias`` entries (:data:`SUBMIT_ON_LOOP_CHARS` in all; each choice builds its own sampler chain),
    and no grammar (checking and parsing one grows with its size)."""
    size = (sum(len(p) for p in prompts) + len(logit_bias or ())) * max(n, 1)
    return not grammar and size <= SUBMIT_ON_LOOP_CHARS


# -- prompts ---------------------------------------------------------------------------
def template_messages(messages: Sequence[ChatMessage], media_marker: str | None = None,
                      untrusted: Callable[[UntrustedTextPart], str] | None = None, *,
                      model_id: str = "") -> list[dict[str, Any]]:
    """Typed messages in the shape chat templates expect (OpenAI's message dicts).

    With a ``media_marker`` (a model with a projector) every image/audio part becomes that
    marker, in place among the text parts; without one, media parts are a ``MediaError`` naming ``model_id``.
    ``untrusted``: what the template is given for an :class:`UntrustedTextPart` (a placeholder,
    :func:`render_prompt`); by default its text.
    """
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if media_marker is None and any(isinstance(p, (ImagePart, AudioPart)) for p in m.content):
            kinds = sorted({p.type for p in m.content if not isinstance(p, TextPart)})
            raise jan.MediaError(f"messages[{i}]: {no_projector_text(kinds, model_id)}", reason="no_projector",
                                 param="messages", message_index=i)
        texts = [media_marker if not isinstance(p, TextPart)
                 else untrusted(p) if untrusted is not None and isinstance(p, UntrustedTextPart) else p.text
                 for p in m.content]
        # an assistant turn may hold only tool calls; templates decide how to print None
        content = "\n".join(texts) if texts else (None if m.role == "assistant" else "")
        out.append(m.openai_dict(content))
    return out


def template_tools(request: ChatRequest) -> list[dict[str, Any]] | None:
    """The request's tools as OpenAI tool dicts (what templates print), or None. ``tool_choice`` does not decide
    them: ``"none"`` keeps the tools in the prompt (:func:`chat_plan`)."""
    if not request.tools:
        return None
    out = []
    for t in request.tools:
        # Both are optional in OpenAI's tools (and Ollama's), but real templates read them as if always there
        # (Hermes, Seed-OSS and Command-R7B print the parameters, gpt-oss, Apertus and functionary the description):
        # they get what an omitted one means, an empty parameter list (OpenAI's rule, which the call grammar
        # follows too: jan.templates.grammar.tool_parameters_schema) and no description.
        fn: dict[str, Any] = {"name": t.name, "description": t.description or ""}
        fn["parameters"] = json.loads(json.dumps(t.parameters)) if t.parameters is not None else \
            {"type": "object", "properties": {}}
        out.append({"type": "function", "function": fn})
    return out


def prompted_as(local: LocalModel, request: ChatRequest) -> LocalModel:
    """``local`` with the chat template ``request`` is prompted in (:func:`jan.services.abilities.request_template`:
    the model's own, or Ollama's default for a model without one when the request asks), and none of ChatML's
    end-of-turn stop strings where Ollama's default stands in."""
    template = request_template(local.template, request)
    if template is not local.template:
        return replace(local, template=template, end_of_turn=())
    return local


@contextlib.contextmanager
def given_back_unless_begun(local: LocalModel) -> Iterator[LocalModel]:
    """The stretch from a model's hand-out (``acquire``, which claimed it for this request) to the request's begin
    (``local.hold()``: its template rendered, its prompt tokenized, its images encoded, a worker waited for): however
    it ends — a refusal, or a cancel (its client gone) before the hold began — a claim not begun is given back at
    once (:meth:`LocalModel.give_back`), not held for nobody for the pool's claim grace, during which a load waiting
    for room (and a ``keep_alive`` 0) waited. A claim its request began is left alone."""
    try:
        yield local
    finally:
        local.give_back()


def chat_plan(local: LocalModel, request: ChatRequest, settings: Any = None) -> ChatPlan:
    """The chat format's part of a request (:mod:`jan.templates.formats`): how the template turns
    thinking on/off, the thinking budget, the tool-call grammar and the output parser.

    ``settings``: the model.json ``settings`` (``reasoning_budget``, ``reasoning_format``,
    ``reasoning_effort`` defaults). Raises ValueError for bad reasoning options.
    """
    return template_plan(local.template, request, settings, local.model.id,
                         lambda text: local.model.tokenize(text, add_special=False, parse_special=True))


def template_plan(template: ChatTemplate, request: ChatRequest, settings: Any, model_id: str,
                  tokenize: Callable[[str], list[int]] | None) -> ChatPlan:
    """:func:`chat_plan` of a model by its chat ``template`` (and id), loaded or not: without a ``tokenize`` (no
    vocabulary at hand) a ``tool_choice: "none"`` bans no call-opening token."""
    tools = template_tools(request)
    r = request.reasoning
    defaults = model_reasoning(settings)  # RequestError naming settings.<key> for a bad stored value
    reasoning = ReasoningRequest(
        effort=r.effort if r and r.effort is not None else defaults.effort,
        enabled=r.enabled if r else None,
        format=r.format if r and r.format is not None else defaults.format,
        budget_tokens=reasoning_budget(r.budget_tokens) if r and r.budget_tokens is not None else defaults.budget_tokens,
    )
    choice: Any = request.tool_choice or "auto"
    if isinstance(choice, NamedToolChoice):
        choice = {"type": "function", "function": {"name": choice.name}}
    fmt = request.response_format
    chat_format = format_for_template(template, bool(tools))
    banned: tuple[int, ...] = ()
    if choice == "none" and tools and tokenize is not None:
        # "none" keeps the tools in the prompt, as OpenAI and llama-server do: they are the conversation's, and
        # the turn that asks an agent for its final answer then reuses the KV cache of its auto turns. It reads
        # no call out of the output (ChatPlan.parser) and forces none. Where every opening of a call is one token
        # (Qwen's <tool_call>, Mistral's [TOOL_CALLS]) that token is banned as well; where a call opens with text
        # (Llama 3's JSON, gpt-oss's to=functions.x), a call the model writes anyway is its content, as written.
        banned = call_start_tokens(chat_format, tokenize) or ()
    # what the request insists on that the template cannot do (the model service refuses it before a load where
    # the file's header tells; said here again, in the same words, where only the loaded model could)
    refusal = template_refusal(template, request, model_id)
    if refusal is not None:
        raise refusal
    return ChatPlan(
        chat_format,
        reasoning,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=request.parallel_tool_calls is not False,
        # may not re-set messages/tools/add_generation_prompt: a 400 naming the key, not a TypeError
        chat_template_kwargs=template_variables(request.chat_template_kwargs),
        constrained=bool(request.grammar) or (fmt is not None and fmt.type in ("json_schema", "json_object")),
        whole_grammar=bool(request.grammar),
        continued=_continued(request),
        banned_tokens=banned,
        text_grammars={t.name: {t.text_grammar.argument: t.text_grammar.definition}
                       for t in request.tools if t.text_grammar is not None},
    )


def _continued(request: ChatRequest) -> str:
    """The reply text a continuing request's prompt ends in (the final message's text, as
    :func:`chat_prompt` writes it last), else "". Media parts are left out: where a marker written
    for one makes this text not the prompt's end, the plan ignores it (the template's tail decides)."""
    if not request.continues:
        return ""
    # a thinking-only final turn: the prompt ends in its thought (:func:`_thought_prompt`), which the plan finds open
    return ("\n".join(p.text for p in request.messages[-1].content if isinstance(p, TextPart)).strip()
            or thought_prefill(request.messages))


def has_media(request: ChatRequest) -> bool:
    """Whether any message carries an image or audio part."""
    return any(isinstance(p, (ImagePart, AudioPart)) for m in request.messages for p in m.content)


def chat_prompt(local: LocalModel, request: ChatRequest, plan: ChatPlan | None = None) -> tuple[str, Any]:
    """Blocking: render the chat template and tokenize the result; returns (text, token ids).

    A request with image/audio parts (a model with a projector) gets a ``MediaPrompt`` instead
    of token ids: the media decoded (slow) and tokenized, each at its place in the conversation, but not yet
    run through the vision/audio encoder (:meth:`jan.Model.encode_media`, once the prompt is known to fit).
    Raises :class:`jan.MediaError` for bad or unsupported media.

    ``plan`` (default: :func:`chat_plan` without model settings) adds the format's template
    variables (thinking switches) under the request's own ``chat_template_kwargs``. The
    template writes BOS itself where the model wants it; one is added only when the model
    wants BOS and the template did not write it. A request's ``context`` comes first, as
    :func:`continued_prompt` joins it (the text returned is the rendered template's alone).
    Untrusted text (a document's, a tool's output: :class:`UntrustedTextPart`) is tokenized without
    special tokens (:func:`render_prompt`), so it cannot spell the template's control tokens.
    """
    model = local.model
    plan = plan or chat_plan(local, request)
    marker = model.media_marker if has_media(request) else None
    prompt = render_prompt(local, request, plan, marker)
    if marker is not None:
        # libmtmd tokenizes the text between media whole, special tokens parsed: untrusted text goes in with
        # its control tokens' text (and the media marker) broken instead (jan.services.untrusted.neutralized)
        text = "".join(neutralized(model, p.text, (marker,)) if p.untrusted else p.text for p in prompt.pieces)
        return prompt.text, _media_prompt(model, request, text, marker)
    return prompt.text, continued_prompt(model, request.context, prompt_tokens(model, prompt))


def continued_prompt(model: jan.Model, context: Sequence[int], tokens: list[int]) -> list[int]:
    """A prompt's ``tokens`` (tokenized without special tokens of their own, but for a BOS its template
    may write) after ``context``, the token ids of an earlier exchange (Ollama's ``context``), with a
    BOS first where the model wants one. :class:`RequestError` (``param="context"``) for an id outside
    the vocabulary.

    Ollama detokenizes the context and puts the text before the prompt; joining the ids themselves says
    the same, but evaluates again exactly what the model saw and wrote: no re-tokenizing that could
    merge differently at the seam, and a slot whose KV cache still holds that exchange reuses it. The
    prompt's own BOS is dropped after a context: a second one mid-prompt would tell the model a new
    document starts.
    """
    bos = model.info.special_tokens.get("bos")
    if context:
        check_context(model, context)
        if tokens and tokens[0] == bos:
            tokens = tokens[1:]
        tokens = [*context, *tokens]
    if bos is not None and model.add_bos and (not tokens or tokens[0] != bos):
        tokens = [bos, *tokens]
    return tokens


def check_context(model: jan.Model, context: Sequence[int], n_media: int = 0) -> None:
    """:class:`RequestError` (``param="context[i]"``) for an image's place whose item the request does not send
    (:func:`context_media_refusal`; ``n_media``: the items its messages send) or a token id that is not in
    ``model``'s vocabulary."""
    problem = context_media_refusal(context, n_media)
    if problem is not None:
        raise problem
    n_vocab = model.info.n_vocab
    for i, token in enumerate(context):
        if token >= n_vocab:  # (a negative one is a place, bound above)
            raise RequestError(f"context[{i}]: token id {token} is outside the model's vocabulary (0..{n_vocab - 1})",
                               param=f"context[{i}]", code="invalid_value")


def shown_bytes(raw: bytes, text: str) -> int:
    """How many bytes of ``raw`` (generated tokens' bytes, in order) the engine's ``text`` shows: its UTF-8 length,
    but where the tokens made bytes that are no UTF-8 (a byte token of a small or random-weight model, a lone
    continuation byte): the engine decodes its text with "replace", one U+FFFD (three bytes) for each bad run of one
    to three bytes. Counted as the text's own UTF-8, a token after such bytes was placed bytes too late (a
    completion's logprobs spelled "" at offset 0, differently streamed and whole; a stop string's tokens miscounted).
    Each chunk's bytes are decoded on their own, and a torn character is held until it is whole, so the text's bytes
    are the longest run of ``raw`` that decodes to it; bytes that do not are counted as the text's own."""
    encoded = text.encode("utf-8", "surrogatepass")
    bad = text.count("\ufffd")
    if not bad or raw.startswith(encoded):  # (a U+FFFD the model wrote itself is its three bytes)
        return len(encoded)
    # each U+FFFD stands for one to three bytes
    for end in range(min(len(encoded), len(raw)), max(0, len(encoded) - 2 * bad) - 1, -1):
        if raw[:end].decode("utf-8", "replace") == text:
            return end
    return len(encoded)


def single_tokens(tokenized: Iterable[Sequence[int]]) -> tuple[int, ...]:
    """llama-server's rule for ``preserved_tokens``: of each text's token ids (special tokens parsed, no BOS), the
    one id of a text the vocabulary spells as a single token; a text of several tokens (or none) names no token.
    The one rule for the service (:func:`preserved_ids`) and a route that tells them (``generation_settings``)."""
    return tuple(dict.fromkeys(ids[0] for ids in tokenized if len(ids) == 1))


def preserved_ids(model: "jan.Model", texts: Sequence[str]) -> tuple[int, ...]:
    """Blocking (the tokenizer): a request's ``preserved_tokens`` texts as the token ids whose text its output
    shows (:func:`single_tokens`)."""
    return single_tokens(model.tokenize(t, add_special=False, parse_special=True) for t in texts)


def shown_special(options: Mapping[str, Any], preserved: Collection[int]) -> "bool | frozenset[int]":
    """Which control tokens' text an engine request with ``options`` shows, for :class:`ShownTokens` and
    :class:`ShownLogprobs` to count as the engine does: all (``render_special``), else the preserved ones."""
    return True if options.get("render_special") else frozenset(preserved)


def shows_text(special: "bool | Collection[int]", token: int) -> bool:
    """Whether a control token's text is shown, under :func:`shown_special`'s answer ``special``."""
    return special if isinstance(special, bool) else token in special


def trigger_patterns(model: "jan.Model", patterns: Sequence[str], tokens: Sequence[int]) -> list[str]:
    """Blocking: a lazy grammar's triggers as the engine takes them, regular expressions over the text: a trigger
    token is its text (special tokens' spelled out, as the grammar reads them), searched as written."""
    return list(patterns) + [re.escape(model.token_to_piece(t, special=True)) for t in tokens]


class _ShownGate(Generic[T]):
    """What one choice's generated tokens carry (ids, logprobs), each let out once all the text its token makes
    has been shown (:class:`ShownTokens`, :class:`ShownLogprobs`).

    The engine tells every token as it samples it, but holds back text that may be the start of a stop string
    (and a torn UTF-8 character); a stop string that matches is cut, with whatever follows it, and never shown.
    """

    def __init__(self, model: "jan.Model | jan.Vocabulary", render_special: "bool | Collection[int]" = False):
        self._model = model  # (a Vocabulary: usable to the end of a request that outlives its model's close)
        # as the engine renders control tokens' text: all of them (the chat format asks), or those of the
        # request's preserved tokens (:func:`shown_special`)
        self._special = render_special
        self._held: list[tuple[T, bytes]] = []  # sampled, their text not all shown yet; oldest first
        self._shown = 0  # bytes of the held tokens' text already shown (of the first one's, in part)

    def _shows(self, token: int) -> bool:
        return shows_text(self._special, token)

    def _let_out(self, text: str, items: Sequence[tuple[T, int]]) -> tuple[list[tuple[T, bytes]], bytes]:
        """A chunk's shown ``text`` and its sampled tokens' items (with their ids): the items whose token's text
        has now all been shown, in order (with that text), and the tokens' bytes ``text`` shows."""
        self._held += [(item, self._model.token_to_bytes(t, self._shows(t))) for item, t in items]
        # the engine shows exactly the bytes of the pieces, in order
        raw = self._raw_text(text)
        self._shown += len(raw)
        out = []
        while self._held and len(self._held[0][1]) <= self._shown:
            item, piece = self._held.pop(0)
            self._shown -= len(piece)
            out.append((item, piece))
        return out, raw

    def _raw_text(self, text: str) -> bytes:
        """The held tokens' bytes that a chunk's ``text`` shows (:func:`shown_bytes`)."""
        if "\ufffd" not in text:
            return text.encode("utf-8")
        pending = b"".join(piece for _, piece in self._held)[self._shown:]
        return pending[:shown_bytes(pending, text)]

    def _rest(self) -> tuple[list[tuple[T, bytes]], int]:
        """The end of the choice: the items still held (with their tokens' text) and how many bytes of the first
        one's text were shown."""
        held, shown = self._held, self._shown
        self._held, self._shown = [], 0
        return held, shown


class ShownTokens(_ShownGate[int]):
    """One choice's generated token ids, each let out once all the text it makes has been shown.

    A matched stop string's tokens are left out (:meth:`finish`), so the ids a reply tells
    (:attr:`~jan.services.types.ChatDelta.token_ids`) are the text the client saw: what Ollama's ``context``
    holds (the prompt, then the response as returned) and what a next turn sent with it continues from.
    A generation that ends otherwise (an end-of-generation token, ``length``) lets every token out.
    """

    def add(self, text: str, token_ids: Sequence[int]) -> list[int]:
        """A chunk's shown ``text`` and sampled ids: the ids whose text has now all been shown, in order."""
        return [t for t, _ in self._let_out(text, [(t, t) for t in token_ids])[0]]

    def finish(self, stop: str | None) -> list[int]:
        """The end of the choice (after its last chunk's :meth:`add`); ``stop``: the stop string that ended it
        (the chunk's ``stop``), None for any other end. The ids still held: all of them, or after a stop string,
        none but the shown part of the one token that straddles the cut."""
        held, shown = self._rest()
        if not stop:
            return [t for t, _ in held]
        if not held or shown <= 0:
            return []  # the cut fell between tokens: each held one's text lies within the stop string
        # Only the first held token can be partly shown (the others' text all lies within the cut). Its sampled
        # id would hold text the client never saw, and leaving it out would lose text it did see: its shown
        # part is tokenized again instead, and kept only where those ids spell exactly that text (no exact
        # tokenization, it is left out: the context ends a few characters early, never beyond the reply).
        return self._respelled(held[0][1][:shown])

    def _respelled(self, raw: bytes) -> list[int]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # the cut fell inside a character this token only finished
            return []
        model = self._model
        ids = model.tokenize(text, add_special=False, parse_special=False)
        candidates = [ids]
        # SentencePiece tokenizers write a space before the text they start with ("," -> " ,"): without the
        # token of that space alone, or with the text's own leading space left to it
        if ids and model.token_to_bytes(ids[0], self._shows(ids[0])) == b" ":
            candidates.append(ids[1:])
        if text.startswith(" "):
            candidates.append(model.tokenize(text[1:], add_special=False, parse_special=False))
        for ids in candidates:
            if b"".join(model.token_to_bytes(t, self._shows(t)) for t in ids) == raw:
                return list(ids)
        return []


class ShownLogprobs(_ShownGate[TokenLogprob]):
    """One choice's generated tokens' log-probabilities and its text, told together token by token: each piece
    of text goes out with the tokens that make it (as :class:`ShownTokens` lets ids out), so a delta's logprobs
    are exactly the tokens of its text and a client that lays them over the text (OpenAI's ``text_offset``) finds
    each where its text is. The text the engine showed of a token it has not shown all of waits for the rest
    (the start of what may be a stop string). A matched stop string's tokens are left out, as its text is; the
    one token the cut falls inside goes out with the part of its text that was kept (it was sampled as it is:
    its log-probability is that token's)."""

    def __init__(self, model: jan.Model, render_special: bool = False):
        super().__init__(model, render_special)
        self._text = b""  # shown by the engine, not told yet: the start of the first held token's text
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode

    def add(self, text: str, logprobs: Sequence[TokenLogprob]) -> tuple[str, list[TokenLogprob]]:
        """A chunk's shown ``text`` and its sampled tokens' logprobs: the text to tell now and its tokens."""
        out, raw = self._let_out(text, [(lp, lp.token_id) for lp in logprobs])
        self._text += raw
        told = sum(len(piece) for _, piece in out)
        told, self._text = self._text[:told], self._text[told:]
        return self._decode(told), [lp for lp, _ in out]

    def finish(self, stop: str | None) -> tuple[str, list[TokenLogprob]]:
        """The end of the choice (after its last chunk's :meth:`add`; ``stop`` as :meth:`ShownTokens.finish`'s):
        the text not told yet, and the logprobs still held — all of them, or after a stop string the one whose
        text the cut falls inside."""
        held, shown = self._rest()
        text, self._text = self._decode(self._text, True), b""
        if not stop:
            return text, [lp for lp, _ in held]
        return text, [held[0][0]] if held and shown > 0 else []


log = logging.getLogger("jan.llamacpp")  # (the stand-in warning is the engine's, as it always was)

#: The stand-in templates (ChatML, compiled once per load of a model without a template of its own) whose first
#: chat was told of: once per load, not per request (:func:`_tell_stand_in`).
_TOLD_STAND_INS: "weakref.WeakSet[ChatTemplate]" = weakref.WeakSet()
_TOLD_LOCK = threading.Lock()


def _tell_stand_in(local: LocalModel) -> None:
    """Log, at the first chat a load renders with ChatML standing in for the model's own template, why its replies
    may be poor. Here, where a chat renders, not where a model is lent: completions, Ollama's generate and chat (their
    own stand-in, :func:`prompted_as`), embeddings and status reads borrow the model too and render no ChatML."""
    template = local.template
    if not template.fallback or template.name != "chatml" or template in _TOLD_STAND_INS:
        return
    with _TOLD_LOCK:  # chats render on worker threads at once
        if template in _TOLD_STAND_INS:
            return
        _TOLD_STAND_INS.add(template)
    log.warning("model '%s': %s; chatting with it uses ChatML, which it was not trained on (expect poor replies; set "
                "settings.chat_template, or use /v1/completions; Ollama's /api/chat and /api/generate give it the text "
                "as it is, as Ollama does)", local.model.id, template.fallback)


def render_chat(local: LocalModel, request: ChatRequest, plan: ChatPlan, marker: str | None) -> str:
    """Blocking: the chat template rendered for ``request`` (the prompt's text; each image/audio part
    as ``marker``), ending in the assistant turn to write, or inside the final message when the
    request continues it. :func:`render_prompt` tells which of it is untrusted text."""
    return _render(local, request, plan, marker)


def render_prompt(local: LocalModel, request: ChatRequest, plan: ChatPlan, marker: str | None) -> PromptText:
    """Blocking: :func:`render_chat`'s text, in the pieces it is tokenized in: the template's own text and each
    untrusted text, which is tokenized without special tokens (:func:`jan.services.untrusted.prompt_tokens`): an
    :class:`UntrustedTextPart` (a document's, a tool's output) and a tool spec's strings. A request whose untrusted
    texts are none but tool specs that make no control token is one piece, its prompt tokenized as it always was."""
    model, also = local.model, (marker,) if marker else ()
    # Tool specs are untrusted whoever sends them, as a tool's output is: an MCP server's descriptions and schemas,
    # and a client's `tools`, which it mostly passes on from MCP servers and plugins it loaded rather than writes.
    # Nothing legitimate in a spec spells a control token; a client's own messages stay its own
    # (jan.services.untrusted.tool_texts).
    if not any(isinstance(p, UntrustedTextPart) for m in request.messages for p in m.content) and (
            not plan.tools or spell_nothing(model, _tool_strings(plan.tools), also)):
        # the common case: no document or tool output, and tool strings that cannot make a control token (a
        # quick look at their text): the placeholders' render would give this one render's prompt, at twice the cost
        return PromptText(_render(local, request, plan, marker))
    holds = Placeholders(lambda word: neutralized(model, word, also))
    shown = _render(local, request, plan, marker, holds.writes)
    if not holds.texts and not holds.broken:
        return PromptText(shown)
    text = _render(local, request, plan, marker)
    pieces = None if holds.broken else split_placeholders(shown, holds.texts, text)
    if pieces is not None:
        tools = holds.tool_indices
        # Tool strings joined to the template's text where that makes no control token but the template's own (nor
        # a media marker): an ordinary tool list keeps the tokens (and the KV cache) it always had.
        inline = split_placeholders(shown, holds.texts, text, inline=tools) if tools else None
        if inline is not None and not any(marker and marker in holds.texts[i] for i in tools):
            ids = prompt_tokens(model, PromptText(text, inline))
            own = model.tokenize("".join(p.text for p in pieces if not p.untrusted), add_special=False,
                                 parse_special=True)
            if control_ids(model, ids) == control_ids(model, own):
                return PromptText(text, inline, tuple(ids))
        return PromptText(text, pieces)
    # The template wrote the texts other than as they are (trimmed at an edge, cut, sorted by, tested: output that
    # depends on the text), a tool's name or schema word spells a control token, or a client's text holds the
    # placeholders' characters: the pieces are not the prompt. The prompt is then the template's output with each
    # untrusted text's control tokens' text (and a media marker) broken, one piece with special tokens parsed: none
    # of them can be the text's.
    safe = _render(local, request, plan, marker, TextWrites.each(lambda t: neutralized(model, t, also)))
    return PromptText(text, (Piece(safe),))


def _tool_strings(tools: Sequence[Any]) -> list[str]:
    """Every string of the tool specs that :func:`~jan.services.untrusted.tool_texts` writes: texts and words."""
    strings: list[str] = []

    def keep(text: str) -> str:
        strings.append(text)
        return text

    tool_texts(tools, TextWrites.each(keep))
    return strings


def _render(local: LocalModel, request: ChatRequest, plan: ChatPlan, marker: str | None,
            writes: TextWrites | None = None) -> str:
    """The template's output, with each third-party text (untrusted parts, tool specs' strings) as ``writes``
    writes it (by default as it is)."""
    _tell_stand_in(local)
    return render_template(local.template, request, plan, marker, writes, model_id=local.model.id)


def render_template(template: ChatTemplate, request: ChatRequest, plan: ChatPlan, marker: str | None,
                    writes: TextWrites | None = None, *, model_id: str = "") -> str:
    """:func:`_render` by the chat ``template`` alone, loaded model or not (:func:`check_render`). A template that
    breaks in its own code (:class:`ChatTemplateRenderError`) is said to be ``model_id``'s, with how to replace it."""
    try:
        return _render_template(template, request, plan, marker, writes, model_id)
    except ChatTemplateRenderError as exc:
        if not model_id:
            raise
        raise exc.naming(model_id) from None


def _render_template(template: ChatTemplate, request: ChatRequest, plan: ChatPlan, marker: str | None,
                     writes: TextWrites | None, model_id: str = "") -> str:
    untrusted = None
    if writes is not None:
        untrusted = lambda part: writes.part(part.text)  # noqa: E731
        plan = replace(plan, tools=tool_texts(plan.tools, writes))  # (template_kwargs read them too: firefunction)
    messages = plan.messages(template_messages(request.messages, marker, untrusted, model_id=model_id))
    kwargs = plan.template_kwargs()
    text = None
    final = messages[-1] if messages else {}
    thought = thought_prefill(request.messages) if request.continues else ""
    if thought:
        return _thought_prompt(template, messages, plan, kwargs, thought)
    if request.continues and template.continues_replies and isinstance(final.get("content") or "", str):
        # Continue the last assistant message (a resumed reply, a client's prefill): render it as the end of
        # the conversation and cut whatever the template writes after its text (the end-of-turn marks).
        partial = (final.get("content") or "").strip()
        if partial:
            whole = template.render(messages, tools=plan.tools, add_generation_prompt=False, **kwargs)
            at = whole.rfind(partial)
            if at >= 0:
                text = whole[:at + len(partial)]
        if text is None:
            # Empty, or rewritten by the template beyond recognition: a new assistant turn opened and the text
            # written after it, as llama-server prefills (the reply still continues that text).
            text = template.render(messages[:-1], tools=plan.tools, add_generation_prompt=True,
                                         **kwargs) + partial
    if text is None:
        text = template.render(messages, tools=plan.tools, add_generation_prompt=request.generation_prompt, **kwargs)
    return text


#: Stands for the answer of a thinking-only final turn while it is rendered: the template writes the turn's thought
#: before its answer, and the prompt is cut after the thought. (A private-use character: no text a client sends.)
_ANSWER_STAND_IN = "\ue001"


def _thought_prompt(template: ChatTemplate, messages: list[dict[str, Any]], plan: ChatPlan, kwargs: dict[str, Any],
                    thought: str) -> str:
    """The prompt of a conversation whose final assistant turn is only a ``thought`` (stripped): it ends inside the
    open thinking block, after the thought, so the model goes on thinking it (the output's reasoning continues it).
    Where the template writes a final turn's thinking, the turn is rendered with a stand-in answer and cut after its
    thought; where it leaves that thinking out (R1 distills drop it), the thought follows a fresh generation prompt
    that opened the block, or the block's start marker jan writes there. A format that marks no thinking, a
    generation prompt that closed the block (thinking switched off in the template), or Harmony's channels cannot
    hold an open thought: a ``RequestError`` (400) says so, never a prompt that dropped the thought."""
    fmt = plan.fmt
    final = messages[-1]
    if template.continues_replies and isinstance(final.get("content") or "", str):
        whole = template.render([*messages[:-1], {**final, "content": _ANSWER_STAND_IN}], tools=plan.tools,
                                add_generation_prompt=False, **kwargs)
        answer = whole.rfind(_ANSWER_STAND_IN)
        at = whole.rfind(thought, 0, answer if answer >= 0 else len(whole))
        if at >= 0 and fmt.starts_in_reasoning(whole[:at + len(thought)], thought):
            return whole[:at + len(thought)]
    opened = template.render(messages[:-1], tools=plan.tools, add_generation_prompt=True, **kwargs)
    if fmt.starts_in_reasoning(opened + thought, thought):
        return opened + thought
    tail = fmt.thought_state(opened)
    if fmt.reasoning is not None and not fmt.channels and tail is None:
        # (the model opens a block itself here: the thought is written as it would write it)
        return f"{opened}{fmt.reasoning.start}\n{thought}"
    why = ("marks no thinking" if fmt.reasoning is None and not fmt.channels else
           "closes the thinking block in its generation prompt (thinking is off: turn it on)"
           if tail == "closed" and not fmt.channels else "cannot end its prompt inside a thought")
    raise RequestError(f"messages: the final assistant message holds only reasoning, to be continued as the model's "
                       f"thinking, but this model's chat template {why}; send it with some answer text to continue "
                       "the answer, or leave it out", param="messages", code="thinking_prefill_not_supported")


def _media_prompt(model: "jan.Model", request: ChatRequest, text: str, marker: str):
    # each media part with its place in the conversation (message i, part j): what an error about it names
    places = [(i, j) for i, m in enumerate(request.messages) for j, p in enumerate(m.content)
              if isinstance(p, (ImagePart, AudioPart))]
    items = [p.data if isinstance(p, ImagePart) else AudioClip(p.data)
             for m in request.messages for p in m.content if isinstance(p, (ImagePart, AudioPart))]
    if text.count(marker) != len(items):
        raise _marker_error(request, marker)
    with _said_of_its_part(places):
        media = model.prepare_media(items)
    bos = model.info.special_tokens.get("bos")
    if request.context:  # as continued_prompt: the template's own BOS (written as text) is dropped after a context
        check_context(model, request.context, len(items))
        if bos is not None:
            text = text.removeprefix(model.token_to_piece(bos, special=True))
    # not encoded yet: the caller fits the prompt to the context first (chat._start_held encodes the one it submits)
    with _said_of_its_part(places):  # (libmtmd decodes the audio here: a clip its decoder cannot read fails here)
        prompt = model.media_prompt(text, media, add_special=False, encode=False)
        pieces = _context_pieces(model, request.context, media, marker)
    for piece in reversed(pieces):  # (a MediaPrompt takes what comes before it one piece at a time)
        if isinstance(piece, int):
            prompt.prepend(piece)
        else:
            prompt.prepend_slice(*piece)
    if bos is not None and model.add_bos and (not prompt.tokens or prompt.tokens[0] != bos):
        prompt.prepend(bos)
    return prompt


def _context_pieces(model: "jan.Model", context: Sequence[int], media: list, marker: str) -> list:
    """``context``'s token ids, and at each image's place (:func:`~jan.services.types.media_place`) the request's item
    it names (``media``: the request's prepared items) as ``(source, begin, end)`` for
    :meth:`~jan.engine.MediaPrompt.prepend_slice`: Ollama binds a context's ``[img-n]`` to the request's image ``n``,
    so an image sent again stands both where it was in the exchange and in the new turn. The item is tokenized
    alone and its chunks taken (from its first to its last: the text between the tiles of an image cut in tiles is
    in it); the context holds that text after the place (a place is one id, the item's text tokens are kept), so
    those ids are skipped as far as they match it. The text the projector writes around an item is in the context
    already, before and after its place."""
    pieces: list = []
    i = 0
    while i < len(context):
        item = place_item(context[i])
        i += 1
        if item is None:
            pieces.append(context[i - 1])
            continue
        source = model.media_prompt(marker, [media[item]], add_special=False, encode=False)
        spans = source.media
        begin, end = spans[0][0], spans[-1][0] + spans[-1][1]
        pieces.append((source, begin, end))
        between = [token for token in source.tokens[begin:end] if token >= 0]
        for token in between:
            if i >= len(context) or context[i] != token:
                break
            i += 1
    return pieces


def completion_media_prompts(local: LocalModel, prompts: Sequence[Any], *, embedding: bool = False,
                             prompt_name: Callable[[int], str] | None = None) -> dict[int, Any]:
    """Blocking (decoding, the vision/audio encoder): each completion prompt with images and audio
    (:class:`MediaText`, by its index in ``prompts``) as the engine takes it, tokenized as llama-server tokenizes its
    prompt objects (BOS added, special tokens parsed), sized to the context before the encoder runs
    (:class:`jan.ContextOverflowError`), then encoded. The media limits hold for the request's media together, as
    for a chat's (:attr:`jan.Model.media_limits`: a list of prompts is one request).

    A :class:`jan.MediaError` about one says which prompt (``message_index``) and which of its items
    (``part_index``) where one is at fault, for a front end to name its field; a model without a projector is
    ``no_projector``, said of the first prompt with media; one over the request's limits, of ``prompt``.

    ``embedding``: the prompts are an embedding request's inputs (llama-server's ``/embedding`` takes the same
    objects), sized to the embedding context, where no position is kept free to generate."""
    model = local.model
    owners = [(i, j) for i, p in enumerate(prompts) if isinstance(p, MediaText) for j in range(len(p.media))]
    first = next(i for i, p in enumerate(prompts) if isinstance(p, MediaText))
    marker = model.media_marker
    if marker is None:
        raise jan.MediaError(f"model '{model.id}' does not support multimodal requests (it has no projector, "
                             "mmproj)", reason="no_projector", message_index=first)
    try:
        media = model.prepare_media([p.data if isinstance(p, ImagePart) else AudioClip(p.data)
                                     for q in prompts if isinstance(q, MediaText) for p in q.media])
    except jan.MediaError as exc:
        if exc.item_index is None:  # over the request's limits: its media together
            raise jan.MediaError(f"prompt: {exc}", reason=exc.reason, param="prompt") from None
        exc.message_index, exc.part_index = owners[exc.item_index]
        raise
    made: dict[int, Any] = {}
    start = 0
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, MediaText):
            continue
        # (libmtmd's marker is the default one for every projector jan loads, llama-server's too: the wire's
        # marker is the model's; should a projector have its own, the wire's still stands for the media)
        text = prompt.text if marker == MEDIA_MARKER else prompt.text.replace(MEDIA_MARKER, marker)
        try:  # (libmtmd decodes the audio here: a clip its decoder cannot read fails here)
            tokens = model.media_prompt(text, media[start:start + len(prompt.media)], add_special=True,
                                        encode=False)
        except jan.MediaError as exc:
            exc.message_index, exc.part_index = i, exc.item_index
            raise
        start += len(prompt.media)
        if embedding and tokens.n_tokens > model.n_ctx_embed:
            where = prompt_name(i) if prompt_name is not None else f"input[{i}]"  # (the body's field, as sent)
            raise jan.ContextOverflowError(
                f"{where} has {tokens.n_tokens} tokens but the embedding context holds {model.n_ctx_embed}; its "
                f"images and audio take {tokens.n_media_tokens} of them", tokens.n_tokens, model.n_ctx_embed,
                param=where)
        if not embedding and tokens.n_tokens + 1 > model.n_ctx:  # (one position stays free to generate: the
            # scheduler's rule)
            raise jan.ContextOverflowError("", tokens.n_tokens, model.n_ctx,
                                           param=prompt_name(i) if prompt_name is not None else None).advise(
                f"the prompt has {tokens.n_tokens} tokens but the context holds {model.n_ctx} (one more is needed "
                "to generate)", LARGER_CONTEXT, f"; its images and audio take {tokens.n_media_tokens} of them")
        made[i] = tokens
    for i, tokens in made.items():  # encoded once every prompt is known to fit
        try:
            model.encode_media(tokens)
        except jan.MediaError as exc:
            exc.message_index = i
            raise
    return made


@contextlib.contextmanager
def _said_of_its_part(places: list[tuple[int, int]]) -> Iterator[None]:
    """A MediaError about one of the request's media items (an image that does not decode, a clip libmtmd's decoder
    cannot read: its ``item_index``) said of the part that sent it, ``messages[i].content[j]`` (``places``: each
    item's message and part, in prompt order)."""
    try:
        yield
    except jan.MediaError as exc:
        if exc.item_index is None or exc.item_index >= len(places):
            raise
        i, j = places[exc.item_index]
        where = f"messages[{i}].content[{j}]"
        _, sep, why = str(exc).partition(": ")  # (the engine's "image 2: ...": its place among the media)
        raise jan.MediaError(f"{where}: {why if sep else exc}", reason=exc.reason, param=where, message_index=i,
                             part_index=j) from None


def _marker_error(request: ChatRequest, marker: str) -> jan.MediaError:
    """The conversation's text holds the projector's media marker itself (it would stand for media nobody sent):
    said of the text part holding it (``messages[i].content[j]``), else of the message (its reasoning or tool
    calls), else of the messages."""
    why = f"the text contains the media marker {marker!r} itself; remove it"
    for i, m in enumerate(request.messages):
        for j, p in enumerate(m.content):
            if isinstance(p, TextPart) and not isinstance(p, UntrustedTextPart) and marker in p.text:
                where = f"messages[{i}].content[{j}]"
                return jan.MediaError(f"{where}: {why}", reason="unsupported_format", param=where, message_index=i,
                                      part_index=j)
    for i, m in enumerate(request.messages):
        if marker in (m.reasoning or "") or any(marker in c.arguments for c in m.tool_calls):
            return jan.MediaError(f"messages[{i}]: {why}", reason="unsupported_format", param=f"messages[{i}]",
                                  message_index=i)
    return jan.MediaError(f"messages: the conversation's text contains the media marker {marker!r} itself, or its "
                          "template left out media it was sent; remove the marker", reason="unsupported_format",
                          param="messages")


# -- constraints -----------------------------------------------------------------------
def constraint_grammar(request: ChatRequest, plan: ChatPlan, prompt: str) -> dict[str, Any]:
    """Blocking: the grammar options (``grammar``, ``grammar_triggers``) that enforce tool_choice in the
    chat format's own call syntax and response_format / an explicit grammar on the answer. The format is
    the answer's, never a call's (OpenAI's and Anthropic's rule): a forced call ignores it, ``auto`` allows
    a call or a formatted answer, ``none`` the answer alone (:meth:`ChatPlan.grammar_options`). A client's raw
    GBNF ``grammar`` (llama.cpp's extra) is the whole output's, as llama-server takes it: its writer spells out any
    thinking and call markup it wants (which the output parser still reads as such), so tools add nothing to it.
    Every schema the request carries is checked first (:func:`check_schemas`: a tool's with ``tool_choice``
    ``"none"`` too, which adds nothing to the grammar)."""
    check_schemas(request)
    answer = _explicit_grammar(request)
    if answer is not None and answer is request.grammar:
        return {"grammar": answer}
    try:
        options = plan.grammar_options(prompt, answer=answer)
    except GrammarError as exc:  # a tool's parameters schema over a bound (said of it), or the tools' grammar
        if exc.param:
            raise
        # (the calls' grammar of them all over a bound, no one tool's schema: its message names no field yet)
        raise exc.said_of("tools") from None
    if options.get("grammar"):
        # the grammar the tools and the format make together, checked as the engine will check it, but said of
        # the fields it was made of, not of ``grammar``, a field the client did not send
        check_gbnf(options["grammar"], param="tools" if asks_tool_grammar(request) else _format_param(request))
    return options


def prefill_refused(request: ChatRequest, plan: ChatPlan, prefix: str, exc: GrammarPrefixError) -> PrefillGrammarError:
    """The engine's refusal of a continued reply's text (``prefix``, the ``grammar_prefix`` that
    :meth:`ChatPlan.grammar_options` gave it) as the client's error: its prefill cannot start what the grammar holds,
    said by kind -- the call a ``tool_choice`` forces, a response format's answer (or a call, with tools on
    ``auto``), a call the prefill started (tools on ``auto``: the grammar holds a call once its start is written)."""
    at = len(prefix.encode("utf-8")[:exc.offset].decode("utf-8", errors="ignore"))  # the engine counts bytes
    fmt = request.response_format
    formatted = fmt is not None and fmt.type in ("json_schema", "json_object")
    if plan.forced_call:
        constraint = "the tool call tool_choice forces"
    elif formatted and plan.tools and plan.tool_choice != "none":
        constraint = "a reply in the format {format} asks for, nor a tool call"
    elif formatted:
        constraint = "the JSON {format} asks for"
    else:
        constraint = "the tool call it starts"
    return PrefillGrammarError(prefix, at, constraint)


def asks_grammar(request: Any) -> bool:
    """Whether a chat or completion request constrains its answer itself (``grammar``, a JSON ``response_format``)."""
    fmt = getattr(request, "response_format", None)
    return bool(getattr(request, "grammar", None)) or (fmt is not None and fmt.type in ("json_schema", "json_object"))


def check_grammar(request: Any, template: ChatTemplate | None = None, settings: Any = None, model_id: str = "") -> None:
    """Blocking: refuse (GrammarError naming the field) a chat or completion request's own constraint that no model
    could use -- a JSON schema that does not compile, a GBNF ``grammar`` that does not parse -- as building it for
    the engine would, but before a model is loaded for it (:meth:`jan.services.models.ModelService.require_able`).
    With the chat ``template`` the model will chat in, also the tools' grammar (a tool's ``parameters`` schema that
    does not compile), built as :func:`constraint_grammar` builds it; only a tool's fault is said from it here (the
    rest of that grammar depends on the prompt, which is made after the load)."""
    check_schemas(request)
    answer = _explicit_grammar(request) if isinstance(request, ChatRequest) else request.grammar
    if template is None or not asks_tool_grammar(request) or (answer is not None and answer is request.grammar):
        return
    try:
        options = template_plan(template, request, settings, model_id, None).grammar_options("", answer=answer)
    except GrammarError as exc:
        if (exc.param or "").startswith("tools"):
            raise
        return
    if options.get("grammar"):
        # the calls' grammar of all the tools together held to llama.cpp's bounds, as constraint_grammar holds it
        # after the load: three tools of 3,500 consts each, each within them, loaded the model to be refused then
        try:
            check_gbnf(options["grammar"], param="tools")
        except GrammarError as exc:
            if exc.code == "grammar_too_complex":  # (anything else may be the empty prompt's: left to the load)
                raise


#: The text an image/audio part is rendered as when no projector is loaded to say its own (libmtmd's default
#: marker): a template sees it as any text.
_UNLOADED_MEDIA_MARKER = "<__media__>"


def check_render(request: ChatRequest, template: ChatTemplate, settings: Any = None, model_id: str = "") -> None:
    """Blocking: refuse a chat that the chat ``template`` (the one the model will chat in: the file's or the
    model.json's, as :func:`jan.services.abilities.model_abilities` resolves it) refuses itself -- its own
    ``raise_exception`` ("Conversation roles must alternate user/assistant/...", a system message where it takes
    none, a tool result without a call) -- as rendering it after the load would (:func:`render_chat`), but before a
    model is loaded for it (:meth:`jan.services.models.ModelService.require_able`): loading gigabytes to refuse a
    conversation is waste. Raises :class:`jan.templates.TemplateError`, or the plan's own refusals
    (:func:`template_plan`). The BOS/EOS text and the tokenizer play no part in such a refusal; what only a load can
    tell (media, a prompt's size in tokens) is left to the checks after it."""
    plan = template_plan(template, request, settings, model_id, None)
    render_template(template, request, plan, _UNLOADED_MEDIA_MARKER if has_media(request) else None,
                    model_id=model_id)


def asks_text_grammar(request: Any) -> bool:
    """Whether a chat request has a tool whose text follows a grammar (:class:`TextGrammar`), called or not."""
    return isinstance(request, ChatRequest) and any(t.text_grammar is not None for t in request.tools or ())


def check_text_grammars(request: ChatRequest) -> None:
    """Blocking (Lark loads each grammar once: :func:`jan.templates.lark_gbnf.lark_to_gbnf`, cached): refuse a tool
    whose text grammar no call grammar can hold (Lark refuses it, or it uses what GBNF cannot express) with a
    :class:`GrammarError` naming ``tools[i].function.parameters``, the field a dialect renames as its own (the
    Responses API's ``tools[i].format.definition``). Checked whatever ``tool_choice`` is: a grammar that cannot be
    held is the client's error before anything is generated, not only once a call is forced."""
    for i, tool in enumerate(request.tools or ()):
        if tool.text_grammar is None:
            continue
        # (imported here, by the requests that have such a tool: Lark's translator is ~0.4 MiB that a server would
        # hold for nothing from its first chat on, which every chat request reaches through here — issue 16)
        from jan.templates.lark_gbnf import lark_to_gbnf

        try:
            lark_to_gbnf(tool.text_grammar.definition, "json")
        except GrammarError as exc:
            err = GrammarError(f"tool {tool.name!r}: {exc}", code=exc.code or "invalid_grammar")
            raise err.said_of(f"tools[{i}].function.parameters") from None


def carries_schemas(request: Any) -> bool:
    """Whether a chat or completion request carries a schema or grammar of its own (:func:`check_schemas` has
    something to check): a constraint on its answer, or tools (whatever ``tool_choice`` says)."""
    return asks_grammar(request) or (isinstance(request, ChatRequest) and bool(request.tools))


def check_schemas(request: Any) -> None:
    """Blocking, pure Python (no model, no vocabulary, no chat template): refuse every schema or grammar a chat or
    completion request carries that no model could use, each alone, with the :class:`GrammarError` naming its field
    and the place in it (:meth:`GrammarError.said_of`) -- a tool's ``parameters`` (``tools[i].function.parameters``)
    whatever ``tool_choice`` says, its text grammar, the response format's schema, a raw ``grammar``.

    The one check of a request's schemas for every path that reads the request, generating or not: ``tool_choice:
    "none"`` builds no call grammar, and counting or rendering a prompt builds none at all, yet OpenAI and
    Anthropic refuse an invalid function schema whatever the request does with it. Each schema is converted once
    (kept per schema text), never compiled against a vocabulary; the call grammar the tools make together in a
    template's format is built by the paths that generate (:func:`check_grammar`, :func:`constraint_grammar`)."""
    if isinstance(request, ChatRequest):
        check_text_grammars(request)
        for i, tool in enumerate(request.tools or ()):
            if tool.text_grammar is not None:
                continue  # (its parameters are jan's own wrapping of the text grammar checked above)
            err = parameters_error(tool.parameters)
            if err is not None:
                raise err.said_of(f"tools[{i}].function.parameters")
        fmt = request.response_format
        if fmt is not None and fmt.type in ("json_schema", "json_object") and fmt.schema:
            _schema_grammar(fmt.schema, _format_param(request))
            return
    grammar = getattr(request, "grammar", None)
    if grammar:
        check_gbnf(grammar)


def _schema_grammar(schema: Mapping[str, Any], param: str) -> str:
    """:func:`json_schema_to_grammar` of a response format's ``schema``, said of ``param``; kept per schema text (in
    its own key order, which the grammar follows): a checked request converts it again to generate."""
    try:
        key = json.dumps(schema, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json_schema_to_grammar(dict(schema), param=param)
    return _cached_schema_grammar(key, param)


@functools.lru_cache(maxsize=128)
def _cached_schema_grammar(schema_json: str, param: str) -> str:
    return json_schema_to_grammar(json.loads(schema_json), param=param)


def asks_tool_grammar(request: Any) -> bool:
    """Whether a chat request's tools make a grammar (any ``tool_choice`` but ``"none"``)."""
    return isinstance(request, ChatRequest) and bool(request.tools) and request.tool_choice != "none"


def _explicit_grammar(request: ChatRequest) -> str | None:
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_schema", "json_object"):
        return _schema_grammar(fmt.schema, _format_param(request)) if fmt.schema else JSON_OBJECT_GRAMMAR
    return request.grammar or None


def _format_param(request: ChatRequest) -> str:
    """The field a chat request's answer grammar was made of: its response format's schema, else ``grammar``."""
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_schema", "json_object"):
        return "response_format.json_schema.schema" if fmt.type == "json_schema" else "response_format.schema"
    return "grammar"


# -- capacity ----------------------------------------------------------------------------
def check_fan_out(model: jan.Model, count: int, *, param: str) -> None:
    """A request needing more generations at once than the model has slots plus queue can never
    be served, even on an idle server: the request's fault (RequestError, HTTP 400), not a 503."""
    refusal = fan_out_refusal(count, model.n_parallel, model.max_queue, param)
    if refusal is not None:
        raise refusal


# -- n choices ---------------------------------------------------------------------------
def seeds(seed: int | None, n: int) -> list[int]:
    """One 32-bit seed per choice: consecutive from the request's seed (reproducible), else fresh ones.
    ``seed`` is folded by :func:`jan.engine.params.engine_seed` first, so the choices of seed ``2**32 + 1``
    are not those of seed ``1``. Raises BadRequestError (``param="seed"``) for a seed outside int64."""
    base = engine_seed(seed)
    if base is None:
        base = random.randrange(2**32 - 1)  # never 2**32 - 1: llama.cpp's "random" seed, not replayable
    return [(base + i) & 0xFFFFFFFF for i in range(n)]


def client_seed(options: dict[str, Any]) -> int | None:
    """Takes the request's ``seed`` out of ``options`` (engine options, before :func:`seeds` gives
    every choice one), folded to the engine's 32 bits (:func:`jan.engine.params.engine_seed`: ``-1`` is
    None, "no seed"), and sets ``options["reproducible"]`` to whether the client chose one: a seed
    picked by :func:`seeds` lets a request be replayed, but promises no load-independent output
    (jan.Model's ``adaptive_threads``). Raises BadRequestError (``param="seed"``) for a seed outside int64."""
    seed = engine_seed(options.pop("seed", None))
    options["reproducible"] = seed is not None
    return seed


def cancel_all(requests: list[jan.Request] | None) -> None:
    """Cancel engine requests nobody will read (none: the queue was full, nothing was submitted)."""
    for request in requests or ():
        request.cancel()


async def merged(requests: list[jan.Request]) -> AsyncIterator[tuple[int, jan.Chunk]]:
    """Yield ``(choice_index, chunk)`` as each request produces them; an ``error`` chunk raises
    ``EngineError``.

    Closing this generator (a client that went away) cancels every request, so their slots
    are free at the engine's next step.
    """
    if len(requests) == 1:
        try:
            async for chunk in requests[0]:
                _check(chunk)
                yield 0, chunk
        finally:
            requests[0].cancel()
        return

    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(index: int, request: jan.Request) -> None:
        try:
            async for chunk in request:
                queue.put_nowait((index, chunk))
        except asyncio.CancelledError:
            # Cancelled by the consumer as it ends (its client gone): nobody is left to tell. Queued, the error and
            # this frame held each other (its traceback the frame, the frame the queue), and with them the
            # request's handle, its native state and event descriptor, until a full garbage collection.
            raise
        except Exception as exc:  # forwarded to the consumer, which re-raises
            queue.put_nowait((index, exc))
        finally:
            queue.put_nowait((index, done))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    remaining = len(tasks)
    try:
        while remaining:
            index, item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                try:
                    raise item
                finally:
                    item = None  # (its traceback holds this frame: the local would hold them both, a cycle)
            else:
                _check(item)
                yield index, item
    finally:
        for request in requests:
            request.cancel()
        for task in tasks:
            task.cancel()


def _check(chunk: jan.Chunk) -> None:
    if chunk.finish_reason == "error":
        raise generation_error(chunk.error)
