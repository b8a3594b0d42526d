"""`jan chat` keeps what the user saw of a turn whose answer broke off (the server killed mid-answer, a stream ended
without its final event, the in-process engine failing mid-answer, a later tool step's connection refused): the
user's message and the part of the answer that came, ``stopped`` as a Ctrl-C leaves it. It kept nothing.
(The real server killed mid-answer: tests/test_cli.py.)"""

from __future__ import annotations

import pytest

from jan.cli.chat import ChatSession
from jan.cli.common import CLIError


class _Generation:
    """Yields ``pieces`` (a ``("thought", text)`` pair is thinking), then raises ``error`` (or ends), as a stream
    that broke off does; ``calls``: the tool calls it made, when it ends whole."""

    finish_reason = None

    def __init__(self, pieces, error=None, calls=()):
        self._pieces, self._error = pieces, error
        self.tool_calls = list(calls)

    def __iter__(self):
        from jan.cli.inference import Piece

        for piece in self._pieces:
            yield Piece.thought(piece[1]) if isinstance(piece, tuple) else Piece(piece)
        if self._error is not None:
            raise self._error
        self.finish_reason = "tool_calls" if self.tool_calls else "stop"

    def cancel(self):
        pass


class _Threads:
    """What the session writes, by thread."""

    def __init__(self):
        self.saved: list[tuple[str, object, str, dict]] = []

    def create(self, title, assistants, metadata):
        return "thread_1"

    def add(self, thread_id, role, text, *, status="ready", metadata=None):
        self.saved.append((role, text, status, metadata or {}))

    def path(self, thread_id):
        return thread_id


def _session(*generations, tools=None):
    turns = list(generations)

    class Backend:
        model_id = "m"

        def chat(self, messages, options, **_):
            return turns.pop(0)

    session = ChatSession(None, Backend(), options={}, system=None, autosave=True, load_kwargs={})
    session._threads = _Threads()
    if tools is not None:
        session.tools, session.confirm = tools, lambda prompt: "y"
    return session


CUT = CLIError("the connection to the jan server at http://x ended before its answer was complete")


@pytest.mark.parametrize("pieces, text, thought", [
    (["Once upon", " a time"], "Once upon a time", None),
    ([("thought", "Let me think")], "", "Let me think"),  # cut while it was still thinking
])
def test_an_answer_that_broke_off_is_kept_stopped_with_the_users_message(capsys, pieces, text, thought):
    session = _session(_Generation(pieces, CUT))
    with pytest.raises(CLIError, match="ended before its answer was complete"):
        session.ask("Tell me a story")
    saved = session.threads.saved
    assert [(role, status) for role, _, status, _ in saved] == [("user", "ready"), ("assistant", "stopped")]
    assert saved[0][1] == "Tell me a story" and saved[1][3]["stop_reason"] == "interrupted"
    content = saved[1][1]
    if thought is None:
        assert content == text
    else:
        assert content[0] == {"type": "reasoning", "text": {"value": thought, "annotations": []}}
    # (a note: on stderr, stdout being no terminal here; only answers go to a piped stdout)
    assert "[answer cut off]" in capsys.readouterr().err
    # the next turn sends it, as a resumed thread does
    assert session.messages[-1]["content"] == text and session.statuses == ["ready", "stopped"]


def test_a_request_refused_before_any_answer_keeps_nothing():
    session = _session(_Generation([], CLIError("server: no model 'x' (HTTP 404)")))
    with pytest.raises(CLIError):
        session.ask("hi")
    assert session.threads.saved == [] and session.messages == []  # to be sent again as it is


def test_a_later_tool_step_refused_keeps_the_turns_before_it():
    call = {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

    class Tools:
        specs = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

        def call(self, name, arguments):
            return "sunny", False, 1

    session = _session(_Generation([], calls=[call]),
                       _Generation([], CLIError("cannot reach the jan server at http://x: [Errno 111] Connection refused")),
                       tools=Tools())
    with pytest.raises(CLIError, match="cannot reach"):
        session.ask("Weather?")
    assert [(role, status) for role, _, status, _ in session.threads.saved] == [
        ("user", "ready"), ("assistant", "ready"), ("tool", "ready")]


def test_a_server_gone_mid_chat_saves_to_its_data_folder():
    """ServerThreads: once the server refuses connections, the writes go to the fallback (the data folder it
    worked on), from then on; with none known, the error is said."""
    from jan.cli.client import ServerUnreachableError
    from jan.cli.conversation import ServerThreads

    class Gone:
        base_url = "http://x"

        def post(self, path, body=None, timeout=None):
            raise ServerUnreachableError("cannot reach the jan server at http://x: [Errno 111] Connection refused")

    class Local(_Threads):
        where = "data folder"

        class runtime:  # noqa: N801 - the attribute the warning reads
            class manager:  # noqa: N801
                data_folder = "/data"

    local = Local()
    threads = ServerThreads(Gone(), fallback=lambda: local)
    assert threads.create("t", [], {}) == "thread_1"
    threads.add("thread_1", "user", "hi")
    assert local.saved == [("user", "hi", "ready", {})] and threads.where == "data folder"
    with pytest.raises(ServerUnreachableError):
        ServerThreads(Gone(), fallback=lambda: None).add("thread_1", "user", "hi")


class _Watched(_Generation):
    """A :class:`_Generation` that notes what the thread held once its first piece was shown."""

    def __init__(self, threads_of, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._threads_of, self.saved_at_start = threads_of, None

    def __iter__(self):
        for piece in super().__iter__():
            yield piece
            if self.saved_at_start is None:  # (resumed: the session has shown the first piece)
                self.saved_at_start = [(role, status) for role, _, status, _ in self._threads_of().saved]


def test_each_step_keeps_the_turns_before_it_as_its_answer_begins():
    """The user's message (and a tool step's call and results) were written only when the whole turn ended: a
    process killed mid-answer (kill -9, a crash) lost them. Now they are in the thread before the answer shows."""
    call = {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

    class Tools:
        specs = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

        def call(self, name, arguments):
            calling.append([(role, status) for role, _, status, _ in holder["s"].threads.saved])
            return "sunny", False, 1

    holder, calling = {}, []
    first = _Watched(lambda: holder["s"].threads, ["Let me look"], calls=[call])
    second = _Watched(lambda: holder["s"].threads, ["Sunny"])
    session = holder["s"] = _session(first, second, tools=Tools())
    session.ask("Weather?")
    assert first.saved_at_start == [("user", "ready")]
    assert calling == [[("user", "ready"), ("assistant", "ready")]]  # the calling turn, before its call ran
    assert second.saved_at_start == [("user", "ready"), ("assistant", "ready"), ("tool", "ready")]
    assert [(role, status) for role, _, status, _ in session.threads.saved] == [
        ("user", "ready"), ("assistant", "ready"), ("tool", "ready"), ("assistant", "ready")]


def test_a_stop_signal_during_the_early_save_stops_the_answer_as_ctrl_c_does(capsys):
    """SIGTERM/SIGHUP arriving while the user's message is written (held off by the save, not raised) stops the
    answer there, kept ``stopped`` as Ctrl-C keeps one, the message saved once."""
    import signal

    from jan.cli.inference import StopSignals

    session = _session(_Generation(["Once", " upon"]))
    session.stops = StopSignals()  # (not entered: no handlers installed; the signal is noted by hand)
    add = session.threads.add

    def add_then_signal(*args, **kwargs):
        add(*args, **kwargs)
        session.stops.signum = signal.SIGTERM  # as the handler notes one that came during a held save

    session.threads.add = add_then_signal
    session.ask("Tell me a story")
    assert [(role, text, status) for role, text, status, _ in session.threads.saved] == [
        ("user", "Tell me a story", "ready"), ("assistant", "", "stopped")]
    assert "[answer stopped]" in capsys.readouterr().err  # (a note: stderr, stdout being no terminal)


def test_a_save_refused_part_way_is_finished_later_without_a_message_twice(capsys):
    """A save of several turns (a tool-calling turn, its results) that the disk refused after the first was written
    counted none of them written: the next save wrote the first again, in the thread twice."""
    import errno

    session = _session()
    refusals = [None, OSError(errno.ENOSPC, "No space left on device", "/data/threads/thread_1/.x.tmp")]
    add = session.threads.add

    def add_or_refuse(thread_id, role, text, **kwargs):
        refused = refusals.pop(0) if refusals else None
        if refused is not None:
            raise refused
        add(thread_id, role, text, **kwargs)

    session.threads.add = add_or_refuse
    for role, text in (("user", "one"), ("assistant", "two"), ("user", "three")):
        session.messages.append({"role": role, "content": text})
        session.statuses.append("ready")
        session.meta.append({})
    session.save_quietly()
    assert session.unsaved and "could not save the conversation" in capsys.readouterr().err
    assert [text for _, text, _, _ in session.threads.saved] == ["one"]
    session.save_quietly()  # the disk has room again
    assert not session.unsaved
    assert [text for _, text, _, _ in session.threads.saved] == ["one", "two", "three"]
