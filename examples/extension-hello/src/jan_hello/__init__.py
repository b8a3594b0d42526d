"""jan_hello: a small, complete jan extension.

* adds ``GET /v1/hello`` (a greeting from the settings, plus what it has seen);
* subscribes to events: counts every event by Jan's name and remembers the
  latest few (e.g. ``OnModelReady`` when a model loads, ``OnInferenceStopped``
  when a client disconnects, ``OnMessageSent`` from the threads API);
* declares validated settings (``PATCH /v1/extensions/hello/settings``).

Install it with ``pip install ./examples/extension-hello``; jan discovers it
through the ``jan.extensions`` entry point at its next start.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from pydantic import BaseModel, Field

from jan.core import Event, Extension

__version__ = "0.1.0"
__all__ = ["HelloExtension", "HelloSettings"]


class HelloSettings(BaseModel):
    """Every setting has a default; jan validates values before storing them."""

    greeting: str = Field("Hello", min_length=1, max_length=100, description="How /v1/hello greets")
    recent_events: int = Field(20, ge=1, le=1000, description="How many recent events /v1/hello lists")


class HelloExtension(Extension):
    """Greets on ``GET /v1/hello`` and reports the events it received."""

    name = "hello"
    version = __version__
    description = "Example extension: GET /v1/hello, event counts, settings"
    requires_api = ">=1,<2"
    settings_schema = HelloSettings

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=HelloSettings().recent_events)

    async def on_load(self, ctx) -> None:
        """Register the route, the event handler and a settings callback (all undone at unload)."""
        self.recent = deque(self.recent, maxlen=ctx.settings.get("recent_events"))
        ctx.subscribe(Event, self.on_event)  # the base class: every event
        ctx.add_route("GET", "/v1/hello", self.hello)
        ctx.on_settings_change(self.settings_changed)
        ctx.logger.info("hello extension loaded (greeting %r)", ctx.settings.get("greeting"))

    async def on_unload(self) -> None:
        """Nothing to close: the route and the subscription are removed by jan."""

    def on_event(self, event: Event) -> None:
        """A plain (synchronous) handler; it runs on the server's event loop, so keep it quick."""
        self.counts[event.event_name] += 1  # Jan's name, e.g. "OnModelReady"
        summary = {"event": event.event_name}
        for key in ("model_id", "engine", "name", "thread_id"):  # what the different event types carry
            if getattr(event, key, None) is not None:
                summary[key] = getattr(event, key)
        self.recent.append(summary)

    def settings_changed(self, changes: dict[str, Any]) -> None:
        """Called by jan after a valid settings change, with the values that changed."""
        if "recent_events" in changes:
            self.recent = deque(self.recent, maxlen=changes["recent_events"])

    async def hello(self, request):
        """``GET /v1/hello[?name=...]``: the greeting and the events seen so far."""
        from aiohttp import web  # imported when serving, so importing the package stays cheap

        who = request.query.get("name", "world")
        return web.json_response({
            "message": f"{self.ctx.settings.get('greeting')}, {who}!",
            "extension": self.name,
            "version": self.version,
            "events": dict(self.counts),
            "recent_events": list(self.recent),
        })
