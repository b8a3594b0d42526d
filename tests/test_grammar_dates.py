"""``"format": "date"`` (and the date of ``date-time``) writes only real calendar days, checked with llama.cpp's own
grammar engine and Python's date parser as the judge: a random model under the old grammar wrote ``0960-11-31``,
which pydantic's ``datetime.date`` field (what the SDKs' ``parse`` helpers and agents' ``output_type`` validate with)
refuses."""

from __future__ import annotations

import calendar
import datetime
import random

from jan.templates.grammar import json_schema_to_grammar

DATE = json_schema_to_grammar({"type": "string", "format": "date"})


def _real(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def test_month_lengths_and_leap_years(llama):
    cases = ["2024-01-31", "2024-04-30", "2024-04-31", "2024-11-31", "2024-09-31", "2024-06-30", "2024-12-31",
             "2024-02-28", "2024-02-29", "2023-02-29", "2000-02-29", "1900-02-29", "2100-02-29", "2400-02-29",
             "0004-02-29", "0400-02-29", "0000-02-29", "0000-01-01", "0001-01-01", "9999-12-31", "2024-02-30",
             "2024-00-10", "2024-13-01", "2024-01-00", "2024-01-32", "1996-02-29", "1997-02-29", "2024-1-01"]
    for text in cases:
        assert llama.accepts(DATE, f'"{text}"') == _real(text), text


def test_every_day_of_a_leap_and_a_common_year_and_nothing_past_them(llama):
    rng = random.Random(3)
    for year in (2023, 2024):
        for month in range(1, 13):
            last = calendar.monthrange(year, month)[1]
            day = rng.randint(1, last)
            assert llama.accepts(DATE, f'"{year:04d}-{month:02d}-{day:02d}"')
            assert llama.accepts(DATE, f'"{year:04d}-{month:02d}-{last:02d}"')
            assert not llama.accepts(DATE, f'"{year:04d}-{month:02d}-{last + 1:02d}"')


def test_date_time_takes_the_same_days(llama):
    grammar = json_schema_to_grammar({"type": "string", "format": "date-time"})
    assert llama.accepts(grammar, '"2024-02-29T12:00:00Z"')
    assert not llama.accepts(grammar, '"2023-02-29T12:00:00Z"')
    assert not llama.accepts(grammar, '"2024-11-31T12:00:00+01:00"')
