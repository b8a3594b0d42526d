"""Chat prompts from a model's Hugging Face Jinja chat template.

A GGUF model carries its chat template as ``tokenizer.chat_template``. jan
renders it the way Hugging Face ``apply_chat_template`` does — an
``ImmutableSandboxedEnvironment`` with ``trim_blocks``/``lstrip_blocks``, the
``loopcontrols`` extension, HF's ``tojson`` filter and the
``raise_exception`` / ``strftime_now`` globals — so prompts match what the
model was trained on.

Templates differ in what they can express, so each :class:`ChatTemplate` is
probed once when it is built (a few tiny renders) and ``render`` smooths the
gaps over, unless called with ``polyfill=False`` (pure HF behaviour):

* a template that drops or rejects ``system`` messages gets the system text
  prepended to the first user message;
* ``tools`` given to a template that ignores them are described in the system
  text, Hermes style (``<tool_call>`` JSON), which
  :mod:`jan.templates.tool_calls` parses back; earlier tool calls and tool
  results in the conversation are written out in the same format;
* ``arguments`` of earlier tool calls are passed as objects (most templates
  apply ``tojson`` to them) or as JSON strings, whichever the template needs;
* content given as a list of parts is flattened to a string.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from jan.json_text import loads_json
# (THINKING_SWITCHES: the switches templates read as booleans, one list for jan.reasoning_fields and the templates)
from jan.reasoning_fields import THINKING_SWITCHES, thinking_switch_fault
from ..errors import JanError
from .formats.reasoning import THOUGHT_NAMES, joined_thoughts

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "RESERVED_TEMPLATE_VARIABLES",
    "RenderBudget",
    "TemplateBudgetError",
    "ChatTemplateRenderError",
    "TemplateError",
    "jan_prompt_template_to_jinja",
    "normalize_messages",
    "resolve_template",
    "template_supports_tools",
    "template_variables",
]

log = logging.getLogger(__name__)

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


class TemplateError(JanError, ValueError):
    """A chat template refused the conversation or could not be compiled/rendered.

    Raised for the template's own ``raise_exception(...)`` (for example
    "Conversation roles must alternate user/assistant"), which is the
    caller's fault, so it is a ``ValueError`` and the server answers HTTP 400
    (naming ``param`` when set).
    """

    param: str | None = None
    code: str | None = None


# --------------------------------------------------------------------------
# The Jinja environment
# --------------------------------------------------------------------------


class ChatTemplateRenderError(TemplateError):
    """A chat template broke while it rendered (an undefined name, a type error in its own code): the model's
    template at fault, not the conversation, which the template's own ``raise_exception`` refuses instead (a plain
    :class:`TemplateError`). Answered as a 400 naming ``model`` with code ``chat_template_error``, as a model's
    damaged weights are (``invalid_model_file``): what to fix is the model's configuration."""

    param = "model"
    code = "chat_template_error"

    def naming(self, model_id: str) -> ChatTemplateRenderError:
        """This error with the model named and what overrides its template (a new error: the same type)."""
        return ChatTemplateRenderError(
            f"model {model_id!r}: its {self}; the template is the model's (its GGUF's, or settings.chat_template / "
            "prompt_template in its model.json), not the request's: give the model a working one with "
            f"settings.chat_template (a built-in name such as chatml, or Jinja source), e.g. PATCH "
            f"/v1/models/{model_id} {{\"settings\": {{\"chat_template\": \"chatml\"}}}}")


class TemplateBudgetError(TemplateError):
    """A chat template ran past its :class:`RenderBudget` (time or output size).

    Templates come from GGUF files and model.json, so a hostile or broken one
    (a loop of 100,000 iterations, 100 M characters of output, endless macro
    recursion) must end in a clear error, not stall the server.
    """


@dataclass(frozen=True)
class RenderBudget:
    """What one render may cost: ``seconds`` of wall time, ``max_chars`` of output
    (and of any one string it builds). Checked inside the template (every
    attribute/item access, call, filter, ``range`` step and output piece)."""

    seconds: float = 5.0
    max_chars: int = 16 << 20


#: A render's default budget; probes (a few tiny renders at construction) get less.
DEFAULT_BUDGET = RenderBudget()
PROBE_BUDGET = RenderBudget(seconds=1.0, max_chars=1 << 20)
#: A conversation this long that overruns the render budget is told to send fewer messages (a shorter one
#: that overruns it points at the template instead).
MANY_MESSAGES = 1000
#: Longest template source accepted (real ones are a few KiB; Jinja's parser recurses on nesting).
MAX_TEMPLATE_CHARS = 1 << 20


# --------------------------------------------------------------------------
# Built-in templates
# --------------------------------------------------------------------------

# The Hermes-style tool instructions. Used by the ChatML template and, as a
# polyfill, for any template that ignores `tools`, so that models always see
# the format jan.templates.tool_calls parses.
_TOOLS_PREAMBLE = (
    "{{- '# Tools\\n\\nYou can call functions to help with the request. Their signatures are listed below, one JSON object per line, inside <tools></tools>:\\n<tools>\\n' -}}"
    "{%- for tool in tools -%}{{- tool | tojson -}}{{- '\\n' -}}{%- endfor -%}"
    "{{- '</tools>\\n\\nTo call a function, reply with a JSON object holding its \"name\" and its \"arguments\", enclosed in <tool_call></tool_call> tags, one pair of tags per call:\\n<tool_call>\\n{\"name\": \"<function name>\", \"arguments\": {<arguments as JSON>}}\\n</tool_call>' -}}"
)

_TOOL_CALL_TEXT = (
    "{%- set fn = call['function'] if call['function'] is defined else call -%}"
    "{{- '<tool_call>\\n{\"name\": ' + (fn['name'] | tojson) + ', \"arguments\": ' -}}"
    "{{- fn['arguments'] if fn['arguments'] is string else (fn['arguments'] | tojson) -}}"
    "{{- '}\\n</tool_call>' -}}"
)

CHATML_TEMPLATE = (
    "{%- set system = namespace(text='', first=false) -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system.text = messages[0]['content'] -%}{%- set system.first = true -%}"
    "{%- endif -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}{%- if system.text -%}{{- system.text + '\\n\\n' -}}{%- endif -%}"
    + _TOOLS_PREAMBLE
    + "{{- '<|im_end|>\\n' -}}"
    "{%- elif system.first -%}{{- '<|im_start|>system\\n' + system.text + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and system.first -%}"
    "{%- elif message['role'] == 'tool' -%}"
    "{%- if loop.previtem is not defined or loop.previtem['role'] != 'tool' -%}{{- '<|im_start|>user\\n' -}}{%- else -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_response>\\n' + message['content'] + '\\n</tool_response>' -}}"
    "{%- if loop.nextitem is not defined or loop.nextitem['role'] != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- elif message['role'] == 'assistant' and message['tool_calls'] -%}"
    "{{- '<|im_start|>assistant\\n' + (message['content'] or '') -}}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- if message['content'] or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    + _TOOL_CALL_TEXT
    + "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

LLAMA3_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

PHI3_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)

# Gemma and Mistral have no system role; the polyfill merges system text into
# the first user turn, which is how those models are usually prompted.
GEMMA_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{- raise_exception('System role not supported') -}}{%- endif -%}"
    "{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' + message['content'] | trim + '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

MISTRAL_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- '[INST] ' + message['content'] | trim + ' [/INST]' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- message['content'] | trim + eos_token -}}"
    "{%- else -%}{{- raise_exception('Only user and assistant roles are supported') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# Ollama's default template, ``{{ .Prompt }}``, which a model without a template of its own is prompted with on
# Ollama's API, as Ollama renders it over a conversation (``template.Execute``'s legacy path): consecutive messages
# of one role are joined with a blank line; the template runs once per turn with that turn's ``.Prompt`` and
# ``.Response``, and prints only the prompt, so each user turn's text is written as it is, with nothing around or
# between them, and the assistant replies are not written at all (nor is a final one continued: the last run cuts
# the template at ``.Response``, which this one does not have). System messages are left out (the template has no
# ``.System``), and so are tool messages; a user turn that no reply follows is replaced by the next one unless a
# system message comes between them (Ollama writes the pending turn out only then).
OLLAMA_DEFAULT_TEMPLATE = (
    "{%- set ns = namespace(out='', prompt='', response='', role='') -%}"
    "{%- for message in messages -%}"
    "{%- set content = message['content'] if message['content'] is string else '' -%}"
    "{%- set role = message['role'] -%}"
    "{%- if role == ns.role and role in ('user', 'assistant') -%}"
    "{%- if role == 'user' -%}{%- set ns.prompt = ns.prompt + '\\n\\n' + content -%}"
    "{%- else -%}{%- set ns.response = ns.response + '\\n\\n' + content -%}{%- endif -%}"
    "{%- elif role == 'system' -%}"
    "{%- set ns.out = ns.out + ns.prompt -%}{%- set ns.prompt = '' -%}{%- set ns.response = '' -%}"
    "{%- elif role == 'user' -%}"
    "{%- if ns.response -%}"
    "{%- set ns.out = ns.out + ns.prompt -%}{%- set ns.response = '' -%}"
    "{%- endif -%}"
    "{%- set ns.prompt = content -%}"
    "{%- elif role == 'assistant' -%}{%- set ns.response = content -%}"
    "{%- endif -%}"
    "{%- set ns.role = role -%}"
    "{%- endfor -%}"
    "{{- ns.out + ns.prompt -}}"
)

#: Templates selectable by name (``resolve_template(..., override="llama3")``).
BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": CHATML_TEMPLATE,
    "llama3": LLAMA3_TEMPLATE,
    "phi3": PHI3_TEMPLATE,
    "gemma": GEMMA_TEMPLATE,
    "mistral": MISTRAL_TEMPLATE,
}


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------

_TEXT_PART_TYPES = ("text", "input_text", "output_text")


def _part_text(part: Any) -> str | None:
    """Text of a content part, or None when it is not a text part."""
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping) or part.get("type", "text") not in _TEXT_PART_TYPES:
        return None
    text = part.get("text", "")
    if isinstance(text, Mapping):  # Jan's thread messages: {"value": ..., "annotations": [...]}
        text = text.get("value", "")
    return "" if text is None else str(text)


def _plain(obj: Any) -> Any:
    """Deep-copy into plain dicts/lists (accepts pydantic models), so templates can't touch caller data."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(exclude_none=True)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def normalize_messages(
    messages: Iterable[Any],
    *,
    keep_parts: bool = False,
    object_arguments: bool = True,
    null_content: bool = True,
) -> list[dict[str, Any]]:
    """Plain-dict copies of OpenAI chat messages, in the shape templates expect.

    * ``content`` lists of text parts become one string (parts joined with
      ``"\\n"``); with ``keep_parts`` a list holding non-text parts is kept
      as a list, otherwise non-text parts raise :class:`TemplateError`;
    * a missing ``content`` is ``None`` for assistant turns that hold tool
      calls (OpenAI's shape, which some templates test for) when
      ``null_content``, else ``""`` — a turn without calls is empty text, as
      templates that concatenate ``content`` need;
    * role ``developer`` becomes ``system``;
    * tool call ``arguments`` become objects (``object_arguments``) or JSON
      strings, whichever the template wants.
    """
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(messages):
        msg = _plain(raw)
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise TemplateError(f"messages[{i}] must be an object with a string 'role'")
        if msg["role"] == "developer":
            msg["role"] = "system"
        content = msg.get("content")
        if content is None:
            # None only where the probes saw the template take it: beside tool calls (a plain empty
            # assistant turn, e.g. Anthropic's `content: []`, would reach a `+ content` otherwise)
            msg["content"] = None if null_content and msg["role"] == "assistant" and msg.get("tool_calls") else ""
        elif isinstance(content, list):
            texts = [_part_text(p) for p in content]
            if all(t is not None for t in texts):
                msg["content"] = "\n".join(t for t in texts if t is not None)
            elif not keep_parts:
                kinds = sorted({str(p.get("type")) for p, t in zip(content, texts) if t is None and isinstance(p, Mapping)})
                raise TemplateError(
                    f"messages[{i}]: content parts of type {', '.join(kinds) or 'unknown'} are not supported by this model"
                )
        elif isinstance(content, Mapping) and msg["role"] == "assistant":
            pass  # structured content a chat plan gave the template (Apertus's thinking blocks), as it is
        elif not isinstance(content, str):
            msg["content"] = str(content)
        calls = msg.get("tool_calls")
        if calls:
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    continue
                args = fn.get("arguments")
                if object_arguments and isinstance(args, str):
                    try:
                        parsed = loads_json(args) if args.strip() else {}
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict):
                        fn["arguments"] = parsed
                elif not object_arguments and not isinstance(args, str):
                    fn["arguments"] = json.dumps(args if args is not None else {}, ensure_ascii=False)
        elif "tool_calls" in msg:
            del msg["tool_calls"]  # `[]`/None: templates test `if message.tool_calls`, some `is defined`
        out.append(msg)
    return out


# --------------------------------------------------------------------------
# ChatTemplate
# --------------------------------------------------------------------------

_PROBE_SYSTEM = "\u2063jan-probe-system\u2063"
_PROBE_SYSTEM2 = "\u2063jan-probe-second-system\u2063"
_PROBE_USER = "\u2063jan-probe-user\u2063"
_PROBE_PART = "\u2063jan-probe-part\u2063"
_PROBE_TOOL = "jan_probe_tool_fn"
_PROBE_CALL = "jan_probe_call_fn"
_PROBE_ARG = "jan_probe_arg"
_PROBE_RESULT = "\u2063jan-probe-result\u2063"
# Mistral's templates insist on 9-character alphanumeric call ids.
_PROBE_CALL_ID = "call12345"
_PROBE_LONG_CALL_ID = "call_janprobe0123456789abcdef"


def template_supports_tools(source: str) -> bool:
    """Cheap check: does the template source refer to a ``tools`` variable at all?"""
    return re.search(r"\btools\b", source) is not None


#: Template variables a request's ``chat_template_kwargs`` may not set: the request itself says them.
RESERVED_TEMPLATE_VARIABLES = frozenset({"messages", "tools", "add_generation_prompt", "polyfill", "budget"})


def template_variables(kwargs: Mapping[str, Any] | None, *, param: str = "chat_template_kwargs") -> dict[str, Any]:
    """Extra template variables from a request (OpenAI-compatible servers' ``chat_template_kwargs``).

    The conversation, the tools and ``add_generation_prompt`` come from the
    request's own fields; naming them here is ambiguous, so it raises
    :class:`TemplateError` (HTTP 400) naming ``param.<key>`` rather than
    picking one silently.
    """
    if not kwargs:
        return {}
    if not isinstance(kwargs, Mapping):
        err = TemplateError(f"{param}: expected an object of template variables")
        err.param = param
        raise err
    clash = sorted(k for k in kwargs if k in RESERVED_TEMPLATE_VARIABLES)
    if clash:
        err = TemplateError(f"{param}.{clash[0]}: set by the request itself (its messages, tools and "
                            f"add_generation_prompt); {param} may not override it")
        err.param = f"{param}.{clash[0]}"
        err.code = "invalid_value"
        raise err
    bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        err = TemplateError(f"{param}: {bad[0]!r} is not a valid template variable name")
        err.param = param
        raise err
    fault = thinking_switch_fault(kwargs)
    if fault is not None:  # (what a template makes of a string switch depends on the template: refused)
        key, value = fault
        err = TemplateError(f"{param}.{key}: expected a boolean (true or false), got {value!r}")
        err.param, err.code = f"{param}.{key}", "invalid_type"
        raise err
    # (null: the template's default, as though it were not given, not a variable that is "defined")
    return {k: v for k, v in kwargs.items() if not (k in THINKING_SWITCHES and v is None)}


class ChatTemplate:
    """A compiled chat template; ``render`` turns messages into a prompt string.

    ``ChatTemplate(source, bos_token, eos_token)`` compiles ``source`` (a
    Jinja chat template) and probes what it supports; raises
    :class:`TemplateError` when it does not compile. Instances are immutable
    and ``render`` is safe to call from several threads at once.

    Attributes set by the probes:

    ``supports_system_role``
        system messages appear in the prompt;
    ``supports_tools``
        the ``tools`` list appears in the prompt;
    ``renders_tools``
        a request's tools reach the prompt through the template: ``tools``, a variable its family fills from
        them (firefunction-v2's ``functions``) or its ``tool_use`` variant;
    ``supports_tool_calls``
        earlier assistant tool calls and tool results appear in the prompt;
    ``object_arguments``
        tool call ``arguments`` are rendered from objects (else JSON strings);
    ``null_content``
        an assistant turn with ``content: None`` renders (else ``""`` is passed);
    ``supports_content_parts``
        content given as a list of parts is understood (multimodal templates);
    ``gathers_system``
        the template refuses or drops system messages beyond a leading one: render() gathers their texts into it.
    ``user_first``
        the template refuses a conversation that opens with an assistant turn: render() puts an empty user turn
        before it.
    ``call_ids``
        the shape of call ids the template demands (Mistral's 9 alphanumerics) or its model was trained on (Solar
        Open's 10 lowercase letters and digits), None for any: render() maps other ids to it (``short_call_ids``:
        it has one).

    ``continues_replies`` (a class attribute): a final assistant message is continued (a prefill, a resumed
    reply), its text the end of the prompt; False for a template that writes no replies (Ollama's default).
    """

    continues_replies = True

    def __init__(
        self,
        source: str,
        bos_token: str = "",
        eos_token: str = "",
        *,
        name: str | None = None,
        tool_use: "ChatTemplate | None" = None,
    ):
        if not isinstance(source, str) or not source.strip():
            raise TemplateError("chat template is empty")
        self.source = source
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""
        self.name = name
        #: Why this template stands in for the model's own (None: it is the model's, or was chosen).
        self.fallback: str | None = None
        #: A variant used instead when ``tools`` are given (GGUF ``tokenizer.chat_template.tool_use``).
        self.tool_use = tool_use
        from .jinja_env import compile_template  # Jinja loads with the first template (jinja_env.py)

        self._template = compile_template(source)
        self._probe()

    @classmethod
    def chatml(cls, bos_token: str = "", eos_token: str = "<|im_end|>") -> "ChatTemplate":
        """The built-in ChatML template (``<|im_start|>role\\n...<|im_end|>\\n``), Hermes-style tools."""
        return cls(CHATML_TEMPLATE, bos_token, eos_token, name="chatml")

    @classmethod
    def ollama_default(cls) -> "ChatTemplate":
        """Ollama's default template ``{{ .Prompt }}`` (:data:`OLLAMA_DEFAULT_TEMPLATE`): the conversation's
        text as it is, what Ollama prompts a model without a template of its own with."""
        return _OllamaDefaultTemplate(OLLAMA_DEFAULT_TEMPLATE, name="ollama-default")

    @classmethod
    def builtin(cls, name: str, bos_token: str = "", eos_token: str = "") -> "ChatTemplate":
        """A template from :data:`BUILTIN_TEMPLATES` by name."""
        try:
            source = BUILTIN_TEMPLATES[name]
        except KeyError:
            raise TemplateError(f"unknown chat template {name!r}; built-in: {', '.join(BUILTIN_TEMPLATES)}") from None
        return cls(source, bos_token, eos_token, name=name)

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, tools={self.supports_tools}, system={self.supports_system_role})"

    # -- probing ----------------------------------------------------------------

    def _try(self, messages: list[dict[str, Any]], **kw: Any) -> str | None:
        try:
            return self._render_raw(messages, tools=kw.pop("tools", None), add_generation_prompt=True,
                                    budget=PROBE_BUDGET, **kw)
        except TemplateBudgetError as exc:  # not "unsupported": the template is unusable
            raise TemplateBudgetError(f"{exc} while rendering a two-message probe") from None
        except Exception:  # noqa: BLE001 - a probe failing just means "unsupported"
            return None

    def _probe(self) -> None:
        user = {"role": "user", "content": _PROBE_USER}
        # HF passes tools=None, but some templates test `tools is defined` and
        # then iterate; those work only when tools is left undefined.
        self._omit_missing_tools = False
        if self._try([user]) is None:
            self._omit_missing_tools = True
            if self._try([user]) is None:
                self._omit_missing_tools = False
        out = self._try([{"role": "system", "content": _PROBE_SYSTEM}, user])
        self.supports_system_role = out is not None and _PROBE_SYSTEM in out

        self.supports_tools = False
        if template_supports_tools(self.source):
            tool = {
                "type": "function",
                "function": {
                    "name": _PROBE_TOOL,
                    "description": "probe",
                    "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
                },
            }
            out = self._try([user], tools=[tool])
            self.supports_tools = out is not None and _PROBE_TOOL in out

        def conversation(arguments: Any, content: str | None, call_id: str = _PROBE_CALL_ID) -> list[dict[str, Any]]:
            call = {"id": call_id, "type": "function", "function": {"name": _PROBE_CALL, "arguments": arguments}}
            return [
                user,
                {"role": "assistant", "content": content, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call_id, "name": _PROBE_CALL, "content": _PROBE_RESULT},
            ]

        # OpenAI clients send `content: null` next to tool calls; some templates
        # test for none, others concatenate and need a string.
        self.object_arguments = True
        self.null_content = True
        self.supports_tool_calls = False
        for object_args, content in ((True, None), (True, ""), (False, None), (False, "")):
            args: Any = {_PROBE_ARG: 1} if object_args else json.dumps({_PROBE_ARG: 1})
            out = self._try(conversation(args, content))
            # `{{ content }}` prints None as "None": that template wants ""
            if content is None and out is not None and "None" in out:
                continue
            if out is not None and _PROBE_CALL in out and _PROBE_ARG in out and _PROBE_RESULT in out:
                self.supports_tool_calls = True
                self.object_arguments = object_args
                self.null_content = content is None
                break
        # Mistral's templates raise on call ids other than 9 alphanumerics, and jan's own (and other APIs')
        # ids are longer: when the 9-character probe id renders but a long one does not, render() maps ids. Solar
        # Open's renders any, but its model writes (and reads back in tool results) 10 lowercase letters and digits:
        # its format says so, and render() maps ids to that shape.
        self.call_ids = None
        if self.supports_tool_calls:
            args = {_PROBE_ARG: 1} if self.object_arguments else json.dumps({_PROBE_ARG: 1})
            content = None if self.null_content else ""
            if self._try(conversation(args, content, _PROBE_LONG_CALL_ID)) is None:
                from .tool_calls import MISTRAL_CALL_IDS

                self.call_ids = MISTRAL_CALL_IDS
            else:
                from .formats.detect import detect_format

                self.call_ids = detect_format(self.source).call_ids
        self.short_call_ids = self.call_ids is not None
        # Mistral's templates leave tool rounds out of their user/assistant alternation check, so a user turn right
        # after tool results reads as a second user turn in a row, and they raise. OpenAI's and Anthropic's APIs
        # take such a turn (Anthropic's tool results come with text in the same user turn: Claude Code's every
        # turn), so where the template renders it with a reply between, render() gives it an empty one (what a
        # run's history does: jan.services.runs.renderable).
        self.reply_after_tools = False
        if self.supports_tool_calls:
            args = {_PROBE_ARG: 1} if self.object_arguments else json.dumps({_PROBE_ARG: 1})
            content = None if self.null_content else ""
            if self._try([*conversation(args, content), user]) is None:
                self.reply_after_tools = self._try(
                    [*conversation(args, content), {"role": "assistant", "content": ""}, user]) is not None
        # Gemma's, Mistral's and Llama 2's templates raise on two user (or assistant) turns in a row, which OpenAI's
        # and Ollama's APIs answer (Ollama joins them with a blank line, as Anthropic's API combines them): where
        # the template refuses them, render() joins them so.
        self.joins_turns = self._try([user, user]) is None and self._try([user]) is not None
        # Gemma's and Mistral's templates also raise on a conversation that opens with the assistant's turn (a
        # greeting a client seeds the chat with, an agent's scripted opener), which OpenAI's, Anthropic's and
        # Ollama's APIs answer: where an empty user turn before it renders, render() gives it one -- the user said
        # nothing yet, as the client sent it (the reply_after_tools rule, one turn earlier).
        opener = {"role": "assistant", "content": "a"}
        self._refuses_opener = self._try([opener, user]) is None and self._try([user]) is not None
        self.user_first = self._refuses_opener and self._try(
            [{"role": "user", "content": ""}, opener, user]) is not None
        # Mistral's templates (and Qwen 3.5's, Apertus') raise on a system message anywhere but first, and others
        # leave all but one out (gpt-oss's, MiniMax's, SmolLM3's keep the first, DeepSeek R1's the last): system
        # messages OpenAI's API takes (a developer message after the system prompt, the Responses API's
        # instructions with a developer item, context an agent adds mid-conversation) and Ollama's gathers into its
        # one .System. Where the template refuses or drops them, render() gives it every system text as its one
        # leading system message.
        first, second = {"role": "system", "content": _PROBE_SYSTEM}, {"role": "system", "content": _PROBE_SYSTEM2}

        def keeps(messages: list[dict[str, Any]]) -> bool:
            out = self._try(messages)
            return out is not None and _PROBE_SYSTEM in out and _PROBE_SYSTEM2 in out

        self.gathers_system = self.supports_system_role and not (
            keeps([first, second, user]) and keeps([first, user, {"role": "assistant", "content": "a"}, second, user]))
        if not self.supports_tool_calls:
            # history gets written as text, but a null content may still reach it
            out = self._try([user, {"role": "assistant", "content": None}, user])
            self.null_content = out is not None and "None" not in out

        out = self._try([{"role": "user", "content": [{"type": "text", "text": _PROBE_PART}]}])
        self.supports_content_parts = out is not None and _PROBE_PART in out and "'type'" not in out

        # Whether a request's tools reach the prompt through the template itself, as render() is given them: its
        # `tools` (supports_tools), a variable its family's format fills from them (firefunction-v2's `functions`
        # JSON: ChatFormat.template_kwargs) or the GGUF's tool_use variant, which a request with tools renders in.
        # A model in such a template is a tool model (its listed ability, Ollama's check), not only one whose
        # template reads `tools`. (Probed here, where a template compiles, off the event loop.)
        self.renders_tools = self.supports_tools or (self.tool_use is not None and self.tool_use.renders_tools)
        if not self.renders_tools:
            from .formats.detect import detect_format

            tool = {"type": "function", "function": {
                "name": _PROBE_TOOL, "description": "probe",
                "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}}
            extra = detect_format(self.source).template_kwargs(tools=[tool])
            if extra:  # (nothing beyond `tools`: the probe of supports_tools said it already)
                out = self._try([user], tools=[tool], **extra)
                self.renders_tools = out is not None and _PROBE_TOOL in out

    # -- rendering --------------------------------------------------------------

    @functools.cached_property
    def llama_caps(self) -> dict[str, bool]:
        """What llama-server's ``/props`` tells of the template as ``chat_template_caps`` (llama.cpp's names), from
        jan's probes, with two llama.cpp probes jan's rendering has no use for: whether a second parallel tool call
        reaches the prompt, and whether an earlier turn's reasoning does (with thinking on and kept). The more
        expressive ``tool_use`` variant's where the GGUF has one, as llama-server tells it. Renders the template
        (slow, the first time): call it off the event loop."""
        if self.tool_use is not None:
            return self.tool_use.llama_caps
        from .formats.detect import detect_format

        def rendered(messages: list[dict[str, Any]], **kw: Any) -> str | None:
            try:
                return self._try(messages, **kw)
            except TemplateBudgetError:  # (a report, not a render: a probe past the budget tells "no")
                return None

        user = {"role": "user", "content": _PROBE_USER}
        parallel = False
        if self.supports_tool_calls:
            args: Any = {_PROBE_ARG: 1} if self.object_arguments else json.dumps({_PROBE_ARG: 1})
            second = _PROBE_CALL + "_second"
            calls = [{"id": f"{_PROBE_CALL_ID[:-1]}{i}", "type": "function",
                      "function": {"name": name, "arguments": args}} for i, name in enumerate((_PROBE_CALL, second))]
            reply = {"role": "assistant", "content": None if self.null_content else "", "tool_calls": calls}
            out = rendered([user, reply, *({"role": "tool", "tool_call_id": c["id"], "name": c["function"]["name"],
                                             "content": _PROBE_RESULT} for c in calls)])
            parallel = out is not None and second in out
        earlier = "\u2063jan-probe-earlier-thought\u2063"
        out = rendered([user, {"role": "assistant", "content": "a", "reasoning_content": earlier}, user,
                         {"role": "assistant", "content": "a", "reasoning_content": "b"}, user],
                        enable_thinking=True, preserve_thinking=True, clear_thinking=False,
                        truncate_history_thinking=False, drop_thinking=False)
        return {
            "supports_object_arguments": self.supports_tool_calls and self.object_arguments,
            "supports_parallel_tool_calls": parallel,
            "supports_preserve_reasoning": out is not None and earlier in out,
            "supports_reasoning_effort": "reasoning_effort" in detect_format(self.source).switches,
            "supports_string_content": rendered([user]) is not None,
            "supports_system_role": self.supports_system_role,
            "supports_tool_calls": self.supports_tool_calls,
            "supports_tools": self.supports_tools,
            "supports_typed_content": self.supports_content_parts,
        }

    def _render_raw(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None,
        add_generation_prompt: bool,
        budget: RenderBudget = DEFAULT_BUDGET,
        **extra: Any,
    ) -> str:
        context = {"bos_token": self.bos_token, "eos_token": self.eos_token}
        context.update(extra)
        context.update(messages=messages, add_generation_prompt=add_generation_prompt)
        if tools is not None or not self._omit_missing_tools:
            context["tools"] = tools
        from .jinja_env import JinjaError, render_budgeted

        try:
            return render_budgeted(self._template, context, budget)
        except TemplateError:
            raise
        except (JinjaError, TypeError, ValueError, KeyError, IndexError, AttributeError,
                OverflowError, MemoryError) as exc:
            raise ChatTemplateRenderError(f"chat template failed: {type(exc).__name__}: {exc}") from None

    def render(
        self,
        messages: Iterable[Any],
        *,
        tools: Sequence[Any] | None = None,
        add_generation_prompt: bool = True,
        polyfill: bool = True,
        budget: RenderBudget | None = None,
        **extra: Any,
    ) -> str:
        """Render ``messages`` (OpenAI chat format) into the prompt text.

        ``tools`` is the OpenAI ``tools`` list (or None); ``extra`` keyword
        arguments become template variables (for example ``documents``,
        ``enable_thinking``, ``date_string``). With ``polyfill=False`` the
        messages go to the template as given (content parts still flattened),
        like HF ``apply_chat_template``. ``budget`` bounds the render's time
        and output (default :data:`DEFAULT_BUDGET`). Raises
        :class:`TemplateError` when the template rejects the conversation,
        :class:`TemplateBudgetError` past the budget.
        """
        budget = budget or DEFAULT_BUDGET
        tools_list = [_plain(t) for t in tools] if tools else None
        if tools_list and self.tool_use is not None and not self.supports_tools:
            return self.tool_use.render(
                messages, tools=tools_list, add_generation_prompt=add_generation_prompt, polyfill=polyfill,
                budget=budget, **extra
            )
        msgs = normalize_messages(
            messages,
            keep_parts=self.supports_content_parts,
            object_arguments=self.object_arguments,
            null_content=self.null_content,
        )
        if self.call_ids is not None:
            msgs = _shorten_call_ids(msgs, self.call_ids)
        if self.reply_after_tools:
            msgs = _replies_after_tools(msgs)
        opens_with_assistant = _opens_with_assistant(msgs)
        if self.user_first:  # (before the polyfill: a system prompt it writes into the first user turn goes there)
            msgs = _user_first(msgs)
        if polyfill:
            msgs, tools_list = self._polyfill(msgs, tools_list, extra)
        if self.gathers_system:  # (after the polyfill, which may put a system message of its own first)
            msgs = _gathered_system(msgs)
        if self.joins_turns:  # (after the polyfill: tool results written as user text are turns too)
            msgs = _joined_turns(msgs)
        try:
            return self._render_raw(msgs, tools=tools_list, add_generation_prompt=add_generation_prompt,
                                    budget=budget, **extra)
        except TemplateBudgetError as exc:  # what to change: a huge conversation is the client's to shorten
            many = len(msgs) >= MANY_MESSAGES
            raise TemplateBudgetError(f"{exc} rendering {len(msgs):,} messages"
                                      + ("; send fewer (drop the oldest turns) or shorter ones" if many else "")
                                      ) from None
        except TemplateError as exc:
            # the template's own words ("roles must alternate") say nothing of which turn broke its rule: where it
            # refuses any conversation that opens with the assistant's turn and this one does (and no empty user
            # turn could be put first: user_first), say so, in terms every dialect's client can find
            if type(exc) is TemplateError and opens_with_assistant and self._refuses_opener and not self.user_first:
                raise TemplateError(f"{exc} (this model's chat template requires a user message first, and the "
                                    "conversation's first message after the system prompt is the assistant's: "
                                    "send a user message before it)") from None
            raise

    @property
    def native_tool_format(self) -> str:
        """The call syntax this template's family writes (the ``call_grammar`` key of
        :func:`jan.templates.formats.detect_format`), ``"hermes"`` when unknown: what the tool polyfill asks
        a template that does not render ``tools`` for, since that is what the model was trained to write and
        what its parser reads."""
        fmt = getattr(self, "_native_tool_format", None)
        if fmt is None:
            from .formats.detect import detect_format

            d = detect_format(self.source)
            # only families with a parser of their own; the generic parser reads Hermes and the rest
            fmt = d.tool_grammar if (d.tool_calls is not None or d.whole_output is not None) else "hermes"
            self._native_tool_format = fmt
        return fmt

    def _polyfill(
        self, msgs: list[dict[str, Any]], tools: list[Any] | None, extra: Mapping[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], list[Any] | None]:
        native = self.native_tool_format
        if tools and not self.supports_tools and native == "firefunction" and (extra or {}).get("functions"):
            tools = None  # firefunction-v2 describes them itself, from its own `functions` variable
        if tools and not self.supports_tools:
            preamble = _render_tools_preamble(tools, native)
            if msgs and msgs[0]["role"] == "system" and isinstance(msgs[0]["content"], str):
                text = msgs[0]["content"]
                msgs[0]["content"] = f"{text}\n\n{preamble}" if text else preamble
            else:
                msgs.insert(0, {"role": "system", "content": preamble})
            tools = None  # described already; don't let the template print them a second time

        if not self.supports_tool_calls and any(m.get("tool_calls") or m["role"] == "tool" for m in msgs):
            msgs = _tool_history_as_text(msgs, native)

        if not self.supports_system_role and any(m["role"] == "system" for m in msgs):
            msgs = _merge_system(msgs)
        return msgs, tools


class _OllamaDefaultTemplate(ChatTemplate):
    """Ollama's default template. Its rules leave system and tool messages out (as Ollama does), so they are not
    written into the user turns first, as for a template that lacks a system role or tool calls; and it writes no
    reply, a final one included, so none is continued (:attr:`ChatTemplate.continues_replies`)."""

    continues_replies = False

    def _polyfill(self, msgs: list[dict[str, Any]], tools: list[Any] | None,
                  extra: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[Any] | None]:
        return msgs, None  # (a request that needs tools is refused before: Ollama's template has none)


# How each family writes a call, for the polyfilled tool instructions of templates that do not render `tools`
# themselves: the model is asked for its own syntax (which its parser reads), not for Hermes tags beside it.
_NATIVE_CALL_EXAMPLES = {
    "deepseek-r1": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜><function name>\n```json\n"
                   "{<arguments as JSON>}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "deepseek-v3.1": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜><function name><｜tool▁sep｜>{<arguments as JSON>}"
                     "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "kimi": "<|tool_calls_section_begin|><|tool_call_begin|>functions.<function name>:0<|tool_call_argument_begin|>"
            "{<arguments as JSON>}<|tool_call_end|><|tool_calls_section_end|>",
    "glm": "<tool_call><function name>\n<arg_key><argument name></arg_key>\n<arg_value><value></arg_value>\n</tool_call>",
    "qwen3-coder": "<tool_call>\n<function=<function name>>\n<parameter=<argument name>>\n<value>\n</parameter>\n"
                   "</function>\n</tool_call>",
    "seed-oss": "<seed:tool_call>\n<function=<function name>>\n<parameter=<argument name>>\n<value>\n</parameter>\n"
                "</function>\n</seed:tool_call>",
    "command-r7b": '<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "<function name>", "parameters": '
                   "{<arguments as JSON>}}]<|END_ACTION|>",
    "firefunction": ' functools[{"name": "<function name>", "arguments": {<arguments as JSON>}}]',
    "functionary-v3.2": "<function name>\n{<arguments as JSON>}",
    "apriel": '<tool_calls>[{"name": "<function name>", "arguments": {<arguments as JSON>}}]</tool_calls>',
    "apertus": '<|tools_prefix|>[{"<function name>": {<arguments as JSON>}}]<|tools_suffix|>',
}


def joined_turn(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two turns of one role (OpenAI message dicts) as one: their texts with a blank line between (as Ollama joins
    consecutive messages of one role), their parts (images) in order, their reasoning joined. For templates that
    refuse two turns of one role in a row (:attr:`ChatTemplate.joins_turns`) and a run's history."""
    out = {**a, "content": _joined_content(a.get("content"), b.get("content"))}
    for name in ("reasoning_content", *THOUGHT_NAMES):  # (each name a template may read the thinking by)
        thoughts = joined_thoughts([a.get(name), b.get(name)])
        if thoughts:
            out[name] = thoughts
    return out


def _joined_content(a: Any, b: Any) -> Any:
    if not isinstance(a, list) and not isinstance(b, list):
        return "\n\n".join(t for t in (a, b) if t)
    parts = [*_as_parts(a)]
    rest = [*_as_parts(b)]
    if any(p.get("type") == "text" for p in parts) and any(p.get("type") == "text" for p in rest):
        # a blank line between the two texts, in a text part of their own only between two images
        if parts[-1].get("type") == "text":
            parts[-1] = {**parts[-1], "text": parts[-1]["text"] + "\n\n"}
        else:
            parts.append({"type": "text", "text": "\n\n"})
        if rest[0].get("type") == "text" and _same_kind(parts[-1], rest[0]):
            parts[-1] = {**parts[-1], "text": parts[-1]["text"] + rest.pop(0)["text"]}
    return parts + rest


def _same_kind(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two text parts may be one: nothing but their text differs (a part marked as third-party text,
    jan.services.untrusted.text_part_dict, never takes in another's text, nor gives its mark to it)."""
    return {k: v for k, v in a.items() if k != "text"} == {k: v for k, v in b.items() if k != "text"}


def _as_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [dict(p) for p in content]
    return [{"type": "text", "text": content}] if content else []


def _joined_turns(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive user (or assistant) turns as one (:func:`joined_turn`), for a template that refuses them
    (:attr:`ChatTemplate.joins_turns`); a turn with tool calls is never joined."""
    out: list[dict[str, Any]] = []
    for message in msgs:
        before = out[-1] if out else None
        if before is not None and message["role"] == before["role"] and message["role"] in ("user", "assistant") \
                and not message.get("tool_calls") and not before.get("tool_calls"):
            out[-1] = joined_turn(before, message)
        else:
            out.append(message)
    return out


def _gathered_system(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every system message's text as one leading system message (joined with blank lines, in order), for a
    template that refuses a system message anywhere but first (:attr:`ChatTemplate.gathers_system`)."""
    systems = [m for m in msgs if m["role"] == "system"]
    if len(systems) < 2 and (not systems or msgs[0] is systems[0]):
        return msgs
    texts = []
    for m in systems:
        content = m.get("content")
        if isinstance(content, list):  # (parts a template that keeps them holds: their texts)
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
        if content:
            texts.append(content)
    rest = [m for m in msgs if m["role"] != "system"]
    return [{"role": "system", "content": "\n\n".join(texts)}, *rest] if texts else rest


def _opens_with_assistant(msgs: list[dict[str, Any]]) -> bool:
    """Whether the first message that is no system message is the assistant's."""
    return next((m.get("role") for m in msgs if m.get("role") != "system"), None) == "assistant"


def _user_first(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An empty user turn before a conversation's opening assistant turn (after its system messages), for a template
    that asks for a user turn first (:attr:`ChatTemplate.user_first`): the user said nothing yet."""
    if not _opens_with_assistant(msgs):
        return msgs
    first = next(i for i, m in enumerate(msgs) if m.get("role") != "system")
    return [*msgs[:first], {"role": "user", "content": ""}, *msgs[first:]]


def _replies_after_tools(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An empty assistant turn between tool results and a user turn right after them, for a template that asks
    for a reply there (:attr:`ChatTemplate.reply_after_tools`): the model wrote none, as the client sent it."""
    out: list[dict[str, Any]] = []
    for message in msgs:
        if message.get("role") == "user" and out and out[-1].get("role") == "tool":
            out.append({"role": "assistant", "content": ""})
        out.append(message)
    return out


def _shorten_call_ids(msgs: list[dict[str, Any]], shape: Any) -> list[dict[str, Any]]:
    """Give tool calls and results the ids of ``shape`` a template demands (Mistral's 9 alphanumerics) or its model
    was trained on (Solar Open's 10 lowercase letters and digits): :attr:`ChatTemplate.call_ids`, in place on
    ``normalize_messages``' copies.

    Clients send back whatever ids they were given (jan's ``call_`` + 24, Anthropic's ``toolu_...``) or
    none (Ollama): an id that fits already is kept; any other becomes one derived from its hash, so a
    call and its result get the same one and an id maps the same way in every render; one that would
    clash with a different id already used gets a rehash. A call without an id gets one from its place
    in the conversation, and a result without ``tool_call_id`` takes the earliest unanswered call's, as
    Ollama pairs them in order.
    """
    from .tool_calls import is_short_call_id, short_call_id

    mapping: dict[str, str] = {}
    used: set[str] = {str(v) for m in msgs for v in
                      [m.get("tool_call_id")] + [c.get("id") for c in m.get("tool_calls") or () if isinstance(c, dict)]
                      if is_short_call_id(v, shape)}

    def fit(original: str) -> str:
        if is_short_call_id(original, shape):
            return original
        if original not in mapping:
            new, salt = short_call_id(original, shape), 0
            while new in used:  # another id already has this one: keep the pairs apart
                salt += 1
                new = short_call_id(f"{salt}:{original}", shape)
            used.add(new)
            mapping[original] = new
        return mapping[original]

    pending: list[str] = []  # calls not answered yet, in order, for results that name none
    for i, msg in enumerate(msgs):
        calls = msg.get("tool_calls")
        if calls:
            for j, call in enumerate(calls):
                if not isinstance(call, dict):
                    continue
                cid = call.get("id")
                call["id"] = fit(cid) if isinstance(cid, str) and cid else fit(f"\0jan-call:{i}:{j}")
                pending.append(call["id"])
        if msg.get("role") == "tool":
            tid = msg.get("tool_call_id")
            if isinstance(tid, str) and tid:
                msg["tool_call_id"] = fit(tid)
            elif pending:
                msg["tool_call_id"] = pending[0]
            else:
                msg["tool_call_id"] = fit(f"\0jan-result:{i}")
            if msg["tool_call_id"] in pending:
                pending.remove(msg["tool_call_id"])
    return msgs


def _render_tools_preamble(tools: list[Any], native: str = "hermes") -> str:
    from .jinja_env import compile_template, render_budgeted

    text = render_budgeted(compile_template(_TOOLS_PREAMBLE), {"tools": tools}, DEFAULT_BUDGET)
    example = _NATIVE_CALL_EXAMPLES.get(native)
    if example is None:
        return text
    head = text[: text.rindex("</tools>") + len("</tools>")]  # the list, without the Hermes instructions
    return f"{head}\n\nTo call a function, reply with it in this form, one per call:\n{example}"


def _tool_call_json(call: Mapping[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False)
    return '<tool_call>\n{"name": ' + json.dumps(fn.get("name"), ensure_ascii=False) + ', "arguments": ' + args + "}\n</tool_call>"


def _tool_calls_text(calls: list[Any], native: str) -> list[str]:
    """Earlier calls as the model writes them: firefunction-v2's one `` functools[…]`` list, else Hermes tags."""
    calls = [c for c in calls if isinstance(c, Mapping)]
    if native == "firefunction" and calls:
        items = []
        for c in calls:
            fn = c.get("function", c)
            args = fn.get("arguments", {})
            if not isinstance(args, str):
                args = json.dumps(args, ensure_ascii=False)
            items.append('{"name": ' + json.dumps(fn.get("name"), ensure_ascii=False) + ', "arguments": ' + args + "}")
        return [" functools[" + ", ".join(items) + "]"]
    return [_tool_call_json(c) for c in calls]


def _tool_history_as_text(msgs: list[dict[str, Any]], native: str = "hermes") -> list[dict[str, Any]]:
    """Write tool calls and results as plain assistant/user text (Hermes tags, or the family's own calls)."""
    out: list[dict[str, Any]] = []
    for m in msgs:
        if m["role"] == "assistant" and m.get("tool_calls"):
            parts = [m["content"]] if m["content"] else []
            parts += _tool_calls_text(m["tool_calls"], native)
            m = {k: v for k, v in m.items() if k != "tool_calls"}
            m["content"] = "\n".join(parts)
            out.append(m)
        elif m["role"] == "tool":
            text = f"<tool_response>\n{m['content']}\n</tool_response>"
            if out and out[-1].get("_jan_tool_results"):
                out[-1]["content"] += "\n" + text
            else:
                out.append({"role": "user", "content": text, "_jan_tool_results": True})
        elif (
            m["role"] == "user"
            and out
            and out[-1].get("_jan_tool_results")
            and isinstance(m["content"], str)
        ):
            # keep user/assistant alternation, which strict templates enforce
            out[-1]["content"] += "\n\n" + m["content"]
        else:
            out.append(m)
    for m in out:
        m.pop("_jan_tool_results", None)
    return out


def _merge_system(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Move system text into the first user message (templates without a system role)."""
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system" and isinstance(m["content"], str))
    rest = [m for m in msgs if m["role"] != "system"]
    if not system:
        return rest
    for m in rest:
        if m["role"] == "user":
            if isinstance(m["content"], str):
                m["content"] = f"{system}\n\n{m['content']}" if m["content"] else system
            else:
                m["content"] = [{"type": "text", "text": system}, *m["content"]]
            return rest
    return [{"role": "user", "content": system}, *rest]


# --------------------------------------------------------------------------
# Choosing a model's template
# --------------------------------------------------------------------------


def _meta_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def jan_prompt_template_to_jinja(template: str) -> str:
    """Jinja source for a Jan ``prompt_template`` (``{system_message}`` / ``{prompt}`` placeholders).

    Jan's model.json describes prompts as one turn of text with placeholders,
    e.g. ``<|im_start|>system\n{system_message}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant``.
    As in Jan's engines, the text before ``{system_message}`` opens the
    prompt, the text between the placeholders precedes every user turn, and
    the text after ``{prompt}`` follows every user turn (it opens the
    assistant's reply); assistant replies are written as they are.
    """
    if "{prompt}" not in template:
        raise TemplateError("a Jan prompt_template needs a {prompt} placeholder")
    head, _, ai_prefix = template.partition("{prompt}")
    if "{system_message}" in head:
        system_prefix, _, user_prefix = head.partition("{system_message}")
    else:
        system_prefix, user_prefix = None, head

    def lit(text: str) -> str:
        # a Jinja string literal; Jinja decodes these escapes like Python does
        return json.dumps(text, ensure_ascii=False)

    parts = []
    if system_prefix is not None:
        parts.append(
            "{%- set system = namespace(text='') -%}"
            "{%- for m in messages if m['role'] == 'system' -%}"
            "{%- set system.text = system.text + ('\n\n' if system.text else '') + m['content'] -%}"
            "{%- endfor -%}"
            "{{- " + lit(system_prefix) + " + system.text -}}"
        )
    parts.append(
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'user' or m['role'] == 'tool' -%}"
        "{{- " + lit(user_prefix) + " + m['content'] + " + lit(ai_prefix) + " -}}"
        "{%- elif m['role'] == 'assistant' -%}{{- m['content'] or '' -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )
    return "".join(parts)


def _is_jan_prompt_template(text: str) -> bool:
    return "{prompt}" in text and "{{" not in text and "{%" not in text


def _named_or_source(
    text: str, metadata: Mapping[str, Any], bos_token: str, eos_token: str, what: str
) -> ChatTemplate:
    key = text.strip()
    if key in BUILTIN_TEMPLATES:
        return ChatTemplate(BUILTIN_TEMPLATES[key], bos_token, eos_token, name=key)
    variant = _meta_str(metadata.get(f"{CHAT_TEMPLATE_KEY}.{key}"))
    if variant:
        return ChatTemplate(variant, bos_token, eos_token, name=key)
    if _is_jan_prompt_template(text):
        return ChatTemplate(jan_prompt_template_to_jinja(text), bos_token, eos_token, name="prompt_template")
    if "{{" in text or "{%" in text:
        return ChatTemplate(text, bos_token, eos_token, name=what)
    known = list(BUILTIN_TEMPLATES) + [
        k[len(CHAT_TEMPLATE_KEY) + 1 :] for k in metadata if k.startswith(CHAT_TEMPLATE_KEY + ".")
    ]
    raise TemplateError(f"unknown chat template {text!r}; known names: {', '.join(known)}")


def resolve_template(
    metadata: Mapping[str, Any],
    override: str | None = None,
    *,
    bos_token: str = "",
    eos_token: str = "",
    fallback: str | None = None,
) -> ChatTemplate:
    """The chat template to use for a model.

    ``metadata`` holds the GGUF key/values (as strings); the model's template
    is ``tokenizer.chat_template``, and ``tokenizer.chat_template.<name>``
    keys are named variants (a ``tool_use`` variant is used for requests
    with tools). ``bos_token``/``eos_token`` are the tokens' text, from the
    vocabulary.

    ``override`` replaces the model's template; ``fallback`` is used only
    when the model has none (the right place for a Jan model.json
    ``prompt_template``, which every Jan model carries). Each is a built-in
    name (``chatml``, ``llama3``, ``phi3``, ``gemma``, ``mistral``), a variant
    name, Jinja template source, or a Jan ``prompt_template`` with
    ``{system_message}``/``{prompt}`` placeholders.

    Order: override, the model's template, fallback, ChatML. A model
    template that does not compile is skipped with a warning; a bad override
    or fallback raises :class:`TemplateError`. When ChatML stands in as the
    last resort, the template's ``fallback`` says why (the model was not
    trained on it, so chat output is likely poor).
    """
    if override is not None and override.strip():
        return _named_or_source(override, metadata, bos_token, eos_token, "override")

    source = _meta_str(metadata.get(CHAT_TEMPLATE_KEY))
    if source and source.strip():
        tool_use = None
        tool_source = _meta_str(metadata.get(f"{CHAT_TEMPLATE_KEY}.tool_use"))
        if tool_source:
            try:
                tool_use = ChatTemplate(tool_source, bos_token, eos_token, name="tool_use")
            except TemplateError as exc:
                log.warning("ignoring the model's tool_use chat template: %s", exc)
        try:
            return ChatTemplate(source, bos_token, eos_token, name="model", tool_use=tool_use)
        except TemplateError as exc:
            log.warning("the model's chat template is unusable (%s); using the fallback", exc)
            why = f"the model's chat template is unusable ({exc})"
    else:
        why = "the model has no chat template"
    if fallback is not None and fallback.strip():
        return _named_or_source(fallback, metadata, bos_token, eos_token, "fallback")
    template = ChatTemplate.chatml(bos_token, eos_token or "<|im_end|>")
    template.fallback = why
    return template

