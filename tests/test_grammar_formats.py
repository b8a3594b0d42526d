"""String ``format``s pydantic's own types declare get a grammar, so a structured output or a forced tool call writes a
value the type reads: ``timedelta`` ("duration"), ``HttpUrl``/``AnyUrl`` ("uri"), ``IPv4Address`` ("ipv4") and a
hostname. They were any string, which the SDK's ``parse`` then refused. Checked with llama.cpp's own grammar engine:
whatever the grammar accepts, pydantic reads (the grammar may write fewer spellings than the type reads, never
another); and for uuid, dates and times, which had grammars already, the same rule."""

from __future__ import annotations

import datetime
import ipaddress
import json
import uuid

import pytest
from pydantic import HttpUrl, TypeAdapter, ValidationError

from jan.templates.grammar import json_schema_to_grammar

CANDIDATES = {
    datetime.timedelta: ["P1D", "PT1H", "PT1H30M", "PT1H30M5S", "P1DT2H", "PT5S", "P3W", "P12DT0H0M0S", "P", "PT",
                         "P1DT", "1 day", "PT1.5S", "P-1D", "PT1S1M"],
    HttpUrl: ["http://a", "https://example.com/path/to-x_y~z.html", "https://a-b.c9/", "http://", "ftp://a",
              "http://a b", "https://a.b/c?d", "not a url", "https://xn--a.b/(x)", "https://a.b/(x)"],
    ipaddress.IPv4Address: ["0.0.0.0", "255.255.255.255", "10.0.0.1", "256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4.5"],
    uuid.UUID: ["123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000", "x"],
    datetime.date: ["2024-02-29", "2023-02-29", "2024-06-31"],
    datetime.time: ["12:30:00Z", "23:59:59.5+01:00", "24:00:00Z"],
}


def _reads(kind, text: str) -> bool:
    try:
        TypeAdapter(kind).validate_json(json.dumps(text))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("kind", list(CANDIDATES), ids=lambda k: getattr(k, "__name__", str(k)))
def test_what_the_grammar_accepts_the_type_reads(llama, kind):
    schema = TypeAdapter(kind).json_schema()
    grammar = json_schema_to_grammar(schema)
    accepted = [text for text in CANDIDATES[kind] if llama.accepts(grammar, json.dumps(text))]
    assert accepted, f"{schema} writes none of {CANDIDATES[kind]}"
    for text in accepted:
        assert _reads(kind, text), f"{text!r} accepted for {schema} but {kind} refuses it"


def test_new_formats_accept_the_plain_spellings(llama):
    def accepts(fmt, text):
        return llama.accepts(json_schema_to_grammar({"type": "string", "format": fmt}), json.dumps(text))

    assert all(accepts("duration", t) for t in ["P1D", "PT1H30M5S", "P1DT2H", "P3W"])
    assert not any(accepts("duration", t) for t in ["P", "PT", "P1DT", "PT1S1M", "1 day"])
    assert accepts("uri", "https://example.com/a/b") and not accepts("uri", "example.com")
    assert accepts("ipv4", "192.168.0.1") and not accepts("ipv4", "192.168.0.256")
    assert accepts("hostname", "api.example-1.org") and not accepts("hostname", "-bad.org")


def test_a_maps_member_count_bounds(llama):
    """pydantic's ``dict[str, int] = Field(min_length=1, max_length=2)`` is minProperties/maxProperties on a map: the
    grammar wrote ``{}`` or any number of members."""
    from pydantic import BaseModel, Field

    class Tally(BaseModel):
        counts: dict[str, int] = Field(min_length=1, max_length=2)

    grammar = json_schema_to_grammar(Tally.model_json_schema())
    for text, want in [('{"counts": {}}', False), ('{"counts": {"a": 1}}', True), ('{"counts": {"a": 1, "b": 2}}', True),
                       ('{"counts": {"a": 1, "b": 2, "c": 3}}', False)]:
        assert llama.accepts(grammar, text) == want, text
        if want:
            Tally.model_validate_json(text)
    free = json_schema_to_grammar({"type": "object"})
    assert llama.accepts(free, "{}") and llama.accepts(free, '{"a": 1, "b": [2], "c": null}')
