"""A body's tagged object that fails names what is wrong in the alternative its tag chose.

A union of objects (a chat ``tool_choice``: ``{"type": "function", "function": {...}}`` or ``{"type":
"allowed_tools", ...}``) fails in each alternative, and the 400 says one of those failures. The alternative that
refused the body's ``type`` was said whenever its refusal was of a field the body has, so a chat tool_choice with
Responses' shape (``{"type": "function", "name": "f"}``, a common slip) was told "tool_choice.type: Input should be
'allowed_tools'" - as if ``function`` were not a kind of tool_choice - and ``{"type": "allowed_tools"}`` "'allowed_tools'
tools are not run by jan". The error now comes from the alternative whose tag took the body's (the function choice's
missing ``function``); where every object alternative refused the tag, the tag is the fault and is said as before.
And a field said missing that the body has is a tag read as a field of the same name: the Responses API's
``{"type": "function", "function": {"name": "f"}}`` (chat's shape) lacks ``tool_choice.name``, not the
``tool_choice.function.name`` it was told. Both in the error mapping every dialect's body goes through.
"""

from __future__ import annotations

import pydantic
import pytest

from jan.server.dialects.responses import ResponsesRequest
from jan.server.errors import from_validation_error
from jan.server.schemas import ChatCompletionRequest

CHAT_TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
RESPONSES_TOOLS = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]


def _said(model, body: dict) -> tuple[str, str | None]:
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(body)
    error = from_validation_error(caught.value, body, model)
    return error.message, error.param


def _chat(choice) -> tuple[str, str | None]:
    return _said(ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                         "tools": CHAT_TOOLS, "tool_choice": choice})


def _responses(choice) -> tuple[str, str | None]:
    return _said(ResponsesRequest, {"model": "m", "input": "x", "tools": RESPONSES_TOOLS, "tool_choice": choice})


@pytest.mark.parametrize("choice, said", [
    ({"type": "function", "name": "f"}, ("tool_choice.function: Field required", "tool_choice.function")),
    ({"type": "function"}, ("tool_choice.function: Field required", "tool_choice.function")),
    ({"type": "function", "function": {"name": "f"}, "extra": 1},
     ("Unrecognized request argument supplied: tool_choice.extra", "tool_choice.extra")),
    ({"type": "function", "function": "f"}, ("tool_choice.function: Input should be an object, not a string",
                                              "tool_choice.function")),
    ({"type": "allowed_tools"}, ("tool_choice.allowed_tools: Field required", "tool_choice.allowed_tools")),
])
def test_a_chat_tool_choice_is_told_in_the_alternative_its_tag_chose(choice, said):
    assert _chat(choice) == said


@pytest.mark.parametrize("choice, said", [
    ({"type": "function"}, ("tool_choice.name: Field required", "tool_choice.name")),
    ({"type": "allowed_tools"}, ("tool_choice.mode: Field required", "tool_choice.mode")),
    ({"type": "allowed_tools", "mode": "required"}, ("tool_choice.tools: Field required", "tool_choice.tools")),
    # chat's shape: its tag, "function", is a field's name there too; the name it lacks is tool_choice.name, not
    # the tool_choice.function.name it has
    ({"type": "function", "function": {"name": "f"}}, ("tool_choice.name: Field required", "tool_choice.name")),
])
def test_a_responses_tool_choice_is_told_in_the_alternative_its_tag_chose(choice, said):
    assert _responses(choice) == said


def test_a_tag_no_alternative_takes_is_itself_the_fault():
    message, param = _chat({"type": "any"})
    assert param == "tool_choice.type" and message.startswith("tool_choice.type: 'any' tools are not run by jan")
    message, param = _chat({"type": "allowed_tools", "allowed_tools": {"mode": "any", "tools": []}})
    assert param == "tool_choice.allowed_tools.mode"  # (the deeper failure of the alternative it chose, as before)
