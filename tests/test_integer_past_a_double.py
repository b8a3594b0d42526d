"""An integer past a double's range (a 400-digit one: valid JSON, which Python reads exactly) wherever a number is
taken as a real one: ``float()`` of it raises OverflowError, which no check of a bad number expected — an Ollama
``keep_alive`` or an assistant's ``tool_policy.timeout`` answered 500, a JSON schema's bound (an MCP server's tool
schema, a library caller's response_format) or a model's tool-call number ended the work with a traceback. Each place
now reads it as the infinity of its sign (:func:`jan.json_text.double_of`), as Python reads ``1e999``, and refuses or
takes it as it does that; the server's body reader refuses it outright (``tests/test_schema_keyword_kinds.py``).
"""

from __future__ import annotations

import math

import pytest

from jan.engine.model import tensor_shares
from jan.engine.params import check_seconds, check_sampling_options, lora_scale
from jan.errors import JanError
from jan.json_text import double_of, finite_number, json_number, sendable_arguments
from jan.server.dialects.llamacpp_extras import logit_bias_ids
from jan.server.dialects.ollama_schemas import parse_keep_alive
from jan.services.errors import RequestError
from jan.services.tool_checks import check_tool_policy
from jan.templates.grammar import GrammarError, json_schema_to_grammar

HUGE = 10 ** 400

#: (name, a call with the integer, the error it raises or None when it takes it): every place of the kind.
PLACES = [
    ("json_number", lambda n: json_number(str(n)), None),
    ("sendable_arguments", lambda n: sendable_arguments({"days": n}), None),
    ("schema minimum", lambda n: json_schema_to_grammar({"type": "integer", "minimum": n}, param="p"), GrammarError),
    ("schema maximum", lambda n: json_schema_to_grammar({"type": "number", "maximum": n}, param="p"), GrammarError),
    ("schema exclusiveMinimum", lambda n: json_schema_to_grammar({"type": "integer", "exclusiveMinimum": n},
                                                                 param="p"), GrammarError),
    ("schema maxLength", lambda n: json_schema_to_grammar({"type": "string", "maxLength": n}, param="p"),
     GrammarError),
    ("schema minItems", lambda n: json_schema_to_grammar({"type": "array", "minItems": n}, param="p"), GrammarError),
    ("sampling temperature", lambda n: check_sampling_options(temperature=n), ValueError),
    ("sampling top_p", lambda n: check_sampling_options(top_p=n), ValueError),
    ("lora scale", lambda n: lora_scale("lora[0].scale", n), JanError),
    ("tensor_split", lambda n: tensor_shares("tensor_split", [1, n]), ValueError),
    ("tool_policy.timeout", lambda n: check_tool_policy({"timeout": n}, param="tool_policy"), RequestError),
    ("logit_bias", lambda n: logit_bias_ids({"15": n}), ValueError),
    ("keep_alive (seconds)", lambda n: check_seconds("keep_alive", n, finite=True), ValueError),
]


@pytest.mark.parametrize("sign", [1, -1], ids=["positive", "negative"])
@pytest.mark.parametrize("name, call, error", PLACES, ids=[p[0] for p in PLACES])
def test_an_integer_past_a_double_is_refused_as_1e999_is_never_an_overflow(name, call, error, sign):
    number = sign * HUGE
    if error is None:
        assert call(number) is False
    else:
        with pytest.raises(error) as caught:
            call(number)
        if error is GrammarError:  # (it is a number: the message says which range it is past)
            assert "within a double's range" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("sign", [1, -1])
def test_durations_past_a_double_mean_what_an_infinity_does(sign):
    # Ollama's keep_alive: a negative one is "forever", as a huge positive one is; check_seconds without finite
    # takes +infinity as forever and refuses a negative duration
    assert parse_keep_alive(sign * HUGE) == math.inf
    if sign > 0:
        assert check_seconds("keep_alive", HUGE) == math.inf
    else:
        with pytest.raises(ValueError):
            check_seconds("keep_alive", -HUGE)


def test_double_of_and_finite_number():
    assert double_of(HUGE) == math.inf and double_of(-HUGE) == -math.inf and double_of(2) == 2.0
    assert finite_number(10 ** 300) and finite_number(1.5) and finite_number(-3)
    assert not finite_number(HUGE) and not finite_number(math.nan) and not finite_number(True)
    assert not finite_number("1")
