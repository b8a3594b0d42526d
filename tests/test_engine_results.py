"""Issue 11: native results cross into Python as read-only bound classes, not positional tuples."""

from __future__ import annotations

import pytest

import jan
from jan import _engine


def test_events_usage_and_metrics_are_read_only_bound_classes(stories):
    request = stories.stream("Once upon a time", max_tokens=6, temperature=0)
    events = []
    while not events or not events[-1].final:
        events += request._native.wait(5.0)
    assert all(isinstance(e, _engine.Event) for e in events)
    last = events[-1]
    assert last.finish_reason == _engine.FinishReason.length and last.finish_reason.name == "length"
    assert all(e.finish_reason is None and e.usage is None for e in events[:-1])
    assert sum(len(e.token_ids) for e in events) == 6 and last.logprobs is None and last.error is None
    usage = last.usage
    assert isinstance(usage, jan.Usage) and jan.Usage is _engine.Usage  # the one Usage type
    assert usage.completion_tokens == 6 and usage.total_tokens == usage.prompt_tokens + 6
    with pytest.raises(AttributeError):
        usage.completion_tokens = 1
    with pytest.raises(AttributeError):
        last.text = "x"
    metrics = stories._scheduler.metrics()
    assert isinstance(metrics, _engine.SchedulerMetrics) and metrics.requests_total >= 1
    assert metrics.to_dict()["requests_total"] == metrics.requests_total
    assert jan.Usage(prompt_tokens=2, completion_tokens=3).total_tokens == 5
