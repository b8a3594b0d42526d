"""Generation for ``jan run`` and ``jan chat``: through a running server, or in this process.

Both backends give a :class:`Generation`: iterate it for text pieces, ``cancel()`` it
(Ctrl-C), then read ``finish_reason`` and ``usage``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jan.errors import CTX_LEN
from jan.local_files import expand_home
from jan.cli.common import CLIError, Connection, check_flag_order, typed_flags



# --------------------------------------------------------------------------- signals


@contextlib.contextmanager
def interrupts_stay_on_this_thread():
    """Block SIGINT while the engine starts its threads, so they inherit the block.

    The kernel gives a Ctrl-C to any thread that does not block it; when an
    engine or OpenMP thread gets it, Python only notes it, and the main thread
    acts on it at its next wake-up instead of at once.
    """
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGTERM and SIGHUP too: `jan chat` handles them as it does Ctrl-C (StopSignals), on this thread.
    previous = mask(signal.SIG_BLOCK, {signal.SIGINT, *STOP_SIGNALS})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, previous)  # a Ctrl-C that came meanwhile is delivered now


#: What a terminal that closes (SIGHUP) or a service manager / `kill` (SIGTERM) sends a command.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


#: Seconds a command may go on after SIGTERM/SIGHUP (stopping, saving, letting go of the model) before it ends
#: itself (:class:`StopSignals`); systemd's own default before SIGKILL is 90.
STOP_DEADLINE_S = 30.0


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C's KeyboardInterrupt would be, so every place that stops a
    generation and keeps its partial reply for Ctrl-C does the same for them."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """SIGTERM and SIGHUP handled as Ctrl-C while a command that writes a conversation runs (``with
    StopSignals() as stops:``): the answer being written is stopped and saved as ``stopped`` with the user's
    message, instead of the process dying with the turn unsaved. The command checks :attr:`signum` and ends
    with :attr:`exit_code` (128 + the signal, as a shell reports one).

    Inside :meth:`held` (a save in progress), a signal is only noted: a save cut in half would lose what the
    signal handling is there to keep. A second signal is ignored for the same reason. On SIGHUP the terminal is
    gone: output goes to /dev/null from then on, or the first write (EIO) would end the command before the save.
    Installed only on the main thread (Python runs handlers there); elsewhere it does nothing.

    ``deadline_s`` (a command's process, never a library caller's): a signal is an order to end, which a service
    manager enforces with SIGKILL, losing the save. So from the signal on, the process ends itself after
    ``deadline_s`` seconds if stopping the answer, saving it and letting go of the model and extensions have not
    ended it by then — a save still in progress is waited for (as long again) — with 128 + the signal, all
    threads' stacks written to ``report`` (the data folder's log) to say where it stuck."""

    def __init__(self, *, deadline_s: float | None = None, report: Path | None = None) -> None:
        self.signum: int | None = None
        self._held = 0
        self._previous: dict[int, Any] = {}
        self._deadline_s = deadline_s
        self._idle = threading.Condition()  # notified when a save ends (the deadline waits for one in progress)
        self._report = report
        self._signalled = threading.Event()  # set by the handler: the deadline's clock starts

    def __enter__(self) -> "StopSignals":
        if self._deadline_s is not None:
            # started now, not by the handler: a handler starting a thread while the code it interrupted was
            # starting one (threading's own lock held) would wait on that lock forever
            threading.Thread(target=self._end_by_deadline, name="jan-stop-deadline", daemon=True).start()
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                with contextlib.suppress(OSError, ValueError):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(sig, handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return  # stopping already: let the save finish
        self.signum = signum
        self._signalled.set()
        if signum == getattr(signal, "SIGHUP", None):
            _silence_output()
        if not self._held:
            raise Terminated(signum)

    def _end_by_deadline(self) -> None:
        self._signalled.wait()  # (a daemon thread: a command that ends without a signal just leaves it)
        time.sleep(self._deadline_s)
        with self._idle:
            self._idle.wait_for(lambda: not self._held, timeout=self._deadline_s)
        _report_stacks(self._report, f"jan: still running {self._deadline_s:g} s after signal {self.signum}; "
                                     f"ended it (exit {self.exit_code})")
        os._exit(self.exit_code)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A block no stop signal interrupts (it is noted, and :attr:`signum` says so after)."""
        with self._idle:
            self._held += 1
        try:
            yield
        finally:
            with self._idle:
                self._held -= 1
                self._idle.notify_all()


def _report_stacks(report: Path | None, headline: str) -> None:
    """Write ``headline`` and every thread's Python stack to the file ``report`` (appended), if it can be."""
    import faulthandler

    if report is None:
        return
    with contextlib.suppress(OSError):
        report.parent.mkdir(parents=True, exist_ok=True)
        with open(report, "a", encoding="utf-8") as out:
            out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {headline}\n")
            out.flush()
            faulthandler.dump_traceback(out, all_threads=True)


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null (the terminal they wrote to is gone)."""
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


# --------------------------------------------------------------------------- which model


def _looks_like_path(spec: str) -> bool:
    return spec.lower().endswith(".gguf") or os.sep in spec or "/" in spec or spec.startswith(("~", "."))


def _missing_bare_file(spec: str) -> bool:
    """``stories260K.gguf`` given where no such file is here: a file name with no folder, more likely the id of a
    model with ``.gguf`` added (the server's "did you mean" names it) than a path that was meant."""
    return (spec.lower().endswith(".gguf") and os.sep not in spec and "/" not in spec
            and not spec.startswith(("~", ".")) and not os.path.lexists(spec))


def _names_a_file(spec: str) -> bool:
    """Whether MODEL ``spec`` is taken as a .gguf path (a file that is there, or a name only a path has), not as a
    model id of the data folder."""
    return expand_home(spec).is_file() or _looks_like_path(spec)


def _third_party_extensions() -> bool:
    """Whether an installed distribution other than jan registers an extension (``jan.extensions`` entry points):
    one may provide models that live in no data folder (jan's own built-ins read theirs from it)."""
    import importlib.metadata

    from jan.core import ENTRY_POINT_GROUP

    try:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # noqa: BLE001 - broken metadata on sys.path: the runtime's discovery says what is wrong
        return True
    return any(getattr(getattr(ep, "dist", None), "name", None) != "jan" for ep in points)


def _not_found(conn: Connection, spec: str, meant: str) -> CLIError:
    """The error for MODEL ``spec`` that is neither a model of the data folder nor a file; ``meant``: the
    "did you mean" of :func:`_meant`, or ""."""
    if conn.absent_note():  # a mistyped folder (made since, to save the chat in): that is what to mend
        return CLIError(f"model '{spec}' not found: {conn.absent_note()}: check the path, or name a .gguf file")
    return CLIError(f"model '{spec}' not found: it is not a model in {conn.data_folder}"
                    + (meant or " (see `jan models list`) nor a .gguf file"))


def _meant(runtime, spec: str) -> str:
    """``: did you mean 'ID'? (model ids are exact)`` when a model of the data folder differs from ``spec`` only in
    case, by ``.gguf`` or by a typo (the services' own guess, as the server's 404 says it), else ``""``."""
    with contextlib.suppress(Exception):  # a hint only
        meant = runtime.call(runtime.services.models.meant(spec))
        if meant:
            return f": did you mean {meant!r}? (model ids are exact)"
    return ""


def meant_in_store(conn: Connection, spec: str) -> str:
    """:func:`_meant` for a command working on the data folder's store (no services started)."""
    from jan.services.models import closest_model_id

    with contextlib.suppress(Exception):  # a hint only
        store = conn.store(create=False)  # (no folder: no model to guess, and none made to look)
        meant = closest_model_id(spec, [m.get("id") for m in store.models.list()]) if store else None
        if meant:
            return f": did you mean {meant!r}? (model ids are exact)"
    return ""


def meant_by_server(exc: Exception) -> str:
    """The server's own guess in its 404 (``: did you mean 'ID'? (model ids are exact)``), else ``""``."""
    _, found, meant = str(exc).partition(": did you mean ")
    return f": did you mean {meant.rpartition(' (HTTP')[0]}" if found else ""


def check_gguf_file(path: Path, label: str) -> None:
    """``path`` is a GGUF file, or a :class:`CLIError` that begins with ``label``, the parameter that named it
    (``""``: none, for a caller that says itself what was given: `jan chat`'s ``/model``)."""
    from jan.store import InvalidArgumentError
    from jan.store.models import check_gguf

    from jan.local_files import no_such_file, not_a_regular_file

    prefix = f"{label}: " if label else ""
    kind = not_a_regular_file(path)
    if kind is not None:
        raise CLIError(f"{prefix}{path} is {kind}, not a GGUF file")
    if not path.is_file():
        raise CLIError(f"{prefix}{no_such_file(path)}")
    try:
        check_gguf(path, "model file")  # (whole: a partial download is said so, with the bytes missing)
    except InvalidArgumentError as exc:
        raise CLIError(f"{prefix}{exc}") from None


def resolve_local_model(conn: Connection, spec: str) -> tuple[dict[str, Any], Path]:
    """MODEL as a model id of the data folder, or a path to a .gguf file -> (model.json, weights path)."""
    from jan.store import StoreError, is_valid_id

    if not _looks_like_path(spec) and is_valid_id(spec):
        store = conn.store(create=False)  # (only read: `jan bench MODEL_ID` made ~/jan to say it is not there)
        if store is not None and store.models.exists(spec):
            try:
                model = store.models.get(spec)
                path = store.models.model_file(spec)
            except StoreError as exc:
                raise CLIError(str(exc)) from None
            if path is None:
                raise CLIError(f"model '{spec}' has no weights file in {store.models.folder(spec)}; "
                               f"pull or import it again")
            return model, path
    path = expand_home(spec)
    if path.is_file() or _looks_like_path(spec):
        check_gguf_file(path, "MODEL")
        return {"id": path.stem, "settings": {}, "parameters": {}}, path.resolve()
    if is_valid_id(spec):
        from jan.store import NotFoundError

        try:
            store = conn.store(create=False)
            if store is not None:
                store.models.get(spec)
        except NotFoundError as exc:
            if exc.damaged:  # its model.json was set aside as damaged: that, not "not found", is the news
                raise CLIError(str(exc)) from None
        served = _served_by(conn, spec)
        if served:  # `jan models list` showed it (the server's): say why it is not found here
            raise CLIError(f"model '{spec}' is a model of the jan server at {served}, but this command loads models "
                           f"in this process from the data folder {conn.data_folder}, where it is not: give the "
                           f"server's data folder (--data-folder) or the model's .gguf path")
    if conn.absent_note():  # a mistyped folder: the folder, not the model, is what to mend
        raise CLIError(f"model '{spec}' not found: {conn.absent_note()}: check the path, or name a .gguf file")
    raise CLIError(f"model '{spec}' not found: it is not a model in {conn.data_folder}"
                   + (meant_in_store(conn, spec) or " (see `jan models list`) nor a .gguf file"))


def _served_by(conn: Connection, model_id: str) -> str | None:
    """The URL of the running jan server that has ``model_id``, if one does (the server keeps its data folder's
    paths to itself, so a command working in this process cannot load the model from there)."""
    from jan.cli.client import ServerError, path_part

    try:
        client = conn.server()
        if client is None:
            return None
        client.get(f"/v1/models/{path_part(model_id)}")
    except (ServerError, CLIError, OSError):
        return None
    return client.base_url


def generates_text(model: dict[str, Any]) -> bool:
    """Whether a model (a model.json, or an entry of ``/v1/models``) can be chatted with: not an embedding
    model, which the engine refuses to generate with (a 400 on every turn)."""
    settings = model.get("settings")
    if isinstance(settings, dict) and settings.get("embedding") is True:
        return False
    caps = model.get("capabilities")
    return not (isinstance(caps, list) and caps and all(c == "embedding" for c in caps))


def default_model(conn: Connection) -> str:
    """The model `jan chat` uses when none is named: the one loaded on the server that writes text, else the
    only such model there is. Several to choose from is a question for the user, with or without a server."""
    client = conn.server()
    if client is not None:
        page = client.get("/v1/models") or {}
        listed = [m for m in page.get("data", []) if isinstance(m, dict)]
        problems = page.get("problems") or []
        known = {m.get("id"): m for m in listed}
        # a loaded id the listing does not show (a race with a removal) is taken as one that writes text
        loaded = [i for i in (conn.health or {}).get("models") or [] if generates_text(known.get(i) or {})]
        if len(loaded) == 1:
            return loaded[0]
        if loaded:
            raise CLIError(f"which model? several are loaded: {', '.join(sorted(loaded))}")
        models = listed
    else:
        store = conn.store(create=False)
        models = list(store.models.list()) if store is not None else []
        problems = [p.to_dict() for p in store.problems if p.path.startswith("models/")] if store is not None else []
    ids = sorted(m["id"] for m in models if generates_text(m))
    if len(ids) == 1:
        return ids[0]
    if not ids:
        from jan.cli.common import damaged_model_ids, no_model_but_damaged

        embedders = sorted(m["id"] for m in models if not generates_text(m))
        damaged = damaged_model_ids(problems) - {m.get("id") for m in models}
        # a damaged model.json is a model still, left in place to mend: "no models yet" said there was none
        what = (f"no models that write text yet ({', '.join(embedders)} only make embeddings)" if embedders
                else f"no model can be used: {no_model_but_damaged(damaged)}" if damaged else "no models yet")
        raise CLIError(f"{what}: name a .gguf file, or add one with `jan models pull URL` "
                       f"or `jan models import PATH`")
    raise CLIError(f"which model? several are available: {', '.join(ids)}")


def refuse_embedding(backend) -> None:
    """CLIError when the backend's model only makes embeddings: said when it is chosen, not as a failure of
    every turn after it. The backend is closed first."""
    if getattr(backend, "embedding_only", False):
        backend.close()
        raise CLIError(f"model '{backend.model_id}' is an embedding model; it cannot generate text")


# --------------------------------------------------------------------------- generations


#: Chat options about thinking (a ChatRequest's ``reasoning``), not sampling.
REASONING_KEYS = ("reasoning_effort", "think", "reasoning_format", "reasoning_budget")


class Piece(str):
    """A piece of an answer's text; ``reasoning`` is true for the model's thinking (not the answer)."""

    reasoning = False

    @classmethod
    def thought(cls, text: str) -> "Piece":
        piece = cls(text)
        piece.reasoning = True
        return piece


class Generation:
    """Text pieces (:class:`Piece`) of one answer; ``finish_reason``/``usage``/``timings`` are set once it ends."""

    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    #: The calls the model made (OpenAI's message shape), once the generation has ended.
    tool_calls: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError


#: The settings an error advises changing (:class:`jan.errors.Advice`), by their canonical names, as the flags that
#: change them for a model loaded in this process.
SETTING_FLAGS = {CTX_LEN: "-c/--ctx-size"}


def _in_flags(exc: Exception) -> str:
    """``exc``'s message for a model loaded in this process, the settings it advises changing named as this
    process's flags (:data:`SETTING_FLAGS`): a prompt past the context names -c/--ctx-size, where the services name
    the model.json's ``ctx_len`` (a server's setting; `jan run` said "use a larger context (ctx_len)"). One past
    the context that advises nothing (the engine's own) gets the CLI's advice."""
    from jan.errors import LARGER_CONTEXT, ContextOverflowError, JanError

    if not isinstance(exc, JanError):
        return str(exc)
    if isinstance(exc, ContextOverflowError) and exc.advice is None:
        return f"{exc}; {LARGER_CONTEXT.said(SETTING_FLAGS)}"
    return exc.message(SETTING_FLAGS)


class LocalGeneration(Generation):
    """Deltas of the in-process services (chat or completion) as text pieces."""

    def __init__(self, stream):
        self._stream = stream
        self.tool_calls = []

    def __iter__(self) -> Iterator[str]:
        from jan.errors import JanError

        try:
            for delta in self._stream:
                if delta.usage is not None:
                    from jan.services.token_counts import token_counts

                    u = delta.usage
                    # the server's usage (OpenAI's names: a chat's tells its reasoning tokens, a completion's
                    # none) with the engine's times, as a server's answer carries them in its ``timings``
                    chat = hasattr(delta, "reasoning_tokens")
                    self.usage = {**token_counts(u, getattr(delta, "reasoning_tokens", 0)).openai_chat(reasoning=chat),
                                  "prompt_ms": u.prompt_ms, "generation_ms": u.generation_ms,
                                  "tokens_per_second": u.tokens_per_second}
                if delta.choice != 0:
                    continue
                for call in getattr(delta, "tool_calls", ()) or ():
                    _add_call(self.tool_calls, call.index, call.id, call.name, call.arguments)
                thought = getattr(delta, "reasoning", "")
                if thought:
                    yield Piece.thought(thought)
                text = getattr(delta, "content", None)
                text = delta.text if text is None else text
                if text:
                    yield Piece(text)
                if delta.finish_reason is not None:
                    self.finish_reason = delta.finish_reason
        except (JanError, ValueError) as exc:
            raise CLIError(_in_flags(exc)) from None
        finally:
            self._stream.close()

    def cancel(self) -> None:
        self._stream.close()
        self.finish_reason = "cancelled"


def _add_call(calls: list[dict[str, Any]], index: int, call_id: str | None, name: str | None, arguments: str | None) -> None:
    """Merge one streamed tool-call piece into ``calls`` (OpenAI's message shape)."""
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    slot = calls[index]
    slot["id"] = call_id or slot["id"]
    slot["function"]["name"] += name or ""
    slot["function"]["arguments"] += arguments or ""


class ServerGeneration(Generation):
    def __init__(self, events, chat: bool):
        self._events = events
        self._chat = chat
        self.tool_calls = []

    def __iter__(self) -> Iterator[str]:
        try:
            for event in self._events:
                if event.get("usage"):
                    self.usage = dict(event["usage"])
                    timings = event.get("timings") or {}
                    if timings:  # the engine's times, as a local generation's usage has them
                        self.usage.update(prompt_ms=timings.get("prompt_ms"), generation_ms=timings.get("predicted_ms"),
                                          tokens_per_second=timings.get("predicted_per_second"))
                for choice in event.get("choices") or []:
                    for call in (choice.get("delta") or {}).get("tool_calls") or []:
                        fn = call.get("function") or {}
                        _add_call(self.tool_calls, call.get("index", 0), call.get("id"), fn.get("name"),
                                  fn.get("arguments"))
                    thought = (choice.get("delta") or {}).get("reasoning_content") if self._chat else None
                    if thought:
                        yield Piece.thought(thought)
                    text = (choice.get("delta") or {}).get("content") if self._chat else choice.get("text")
                    if self._chat and text is None and "message" in choice:  # a non-streamed answer
                        text = (choice.get("message") or {}).get("content")
                    if text:
                        yield Piece(text)
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]
        finally:
            self._events.close()

    def cancel(self) -> None:
        self._events.close()
        self.finish_reason = "cancelled"


# --------------------------------------------------------------------------- backends


def _typed_parts(content: Any, *, untrusted: bool = False) -> tuple:
    """A chat message's content (a string, or OpenAI parts: text, ``data:`` URL images, and ``file`` parts whose
    ``file_data`` is a ``data:`` URL: a resumed thread's attached documents) as typed parts. ``untrusted``: a tool's
    output (the tool loop ran it here), tokenized without special tokens (:mod:`jan.services.untrusted`); so is a
    text part marked third-party text (a resumed thread's: :func:`jan.services.untrusted.text_part_dict`)."""
    import base64

    from jan.services.types import AudioPart, DocumentPart, ImagePart, TextPart
    from jan.services.untrusted import UntrustedTextPart, text_part_of

    if not content:
        return ()
    if isinstance(content, str):
        return (UntrustedTextPart(content, source="tool") if untrusted else TextPart(content),)
    parts = []
    for part in content:
        if part.get("type") == "text":
            parts.append(text_part_of(part["text"], part))
        elif part.get("type") == "image_url":
            head, _, data = part["image_url"]["url"].partition(",")
            parts.append(ImagePart(base64.b64decode(data), head[5:].split(";")[0]))
        elif part.get("type") == "input_audio":
            parts.append(AudioPart(base64.b64decode(part["input_audio"]["data"]), part["input_audio"]["format"]))
        elif part.get("type") == "file":
            head, _, data = part["file"]["file_data"].partition(",")
            parts.append(DocumentPart(base64.b64decode(data), head[5:].split(";")[0], title=part["file"].get("filename")))
    return tuple(parts)


#: The load options ``jan run``/``jan chat`` take as flags, for a model loaded in this process: option -> (the
#: model.json ``settings`` key it overrides, the flag).
LOAD_FLAGS: dict[str, tuple[str, str]] = {
    "n_ctx": ("ctx_len", "--ctx-size"),
    "n_threads": ("cpu_threads", "--threads"),
    "n_gpu_layers": ("ngl", "--gpu-layers"),
    "image_min_tokens": ("image_min_tokens", "--image-min-tokens"),
    "image_max_tokens": ("image_max_tokens", "--image-max-tokens"),
    # (path, scale) pairs (jan.cli.common.lora_flags), the model.json's {"path", "scale"} items
    "lora": ("lora", "--lora"),
    # the KV cache and speculative decoding (jan.cli.speed_flags, as jan serve takes them)
    "cache_type_k": ("cache_type_k", "--cache-type-k"),
    "cache_type_v": ("cache_type_v", "--cache-type-v"),
    "speculative": ("speculative", "--speculative"),
    "draft_model": ("draft_model", "--model-draft"),
    "draft_p_min": ("draft_p_min", "--draft-p-min"),
    "draft_max": ("draft_max", "--draft-max"),
    "draft_min": ("draft_min", "--draft-min"),
    "ngram": ("ngram", "--spec-ngram-size"),
}


def load_flag(name: str) -> str:
    """How the running command's flag for load option ``name`` is typed (``-c/--ctx-size``:
    :func:`~jan.cli.common.typed_flags`); :data:`LOAD_FLAGS`' long form outside a command."""
    return typed_flags().get(name) or LOAD_FLAGS[name][1]


class LocalBackend:
    """A model served in this process by the same extensions and services as ``jan serve``.

    The flags of :data:`LOAD_FLAGS` (``--ctx-size``, ``--image-max-tokens``, ...) override the model's settings for
    this process only; one conversation gets the whole context (one slot).
    """

    def __init__(self, conn: Connection, spec: str, *, media: str | None = None, think: bool | None = None,
                 label: str = "MODEL", **load: Any):
        import jan
        from jan.services.abilities import listed_ability

        if conn.existing_folder() is None:
            # no data folder: no model id is in it, and none is made to look (the runtime lays a folder out as it
            # starts: `jan chat NOSUCH` made the whole layout to say the model is not there); a file is judged first.
            # A third-party extension may serve models of its own, in no folder: then the runtime asks it, as always
            if _names_a_file(spec):
                check_gguf_file(expand_home(spec), label)
            elif not _third_party_extensions():
                raise _not_found(conn, spec, "")
        self.runtime = conn.runtime()
        services = self.runtime.services
        model = self._model_json(conn, spec, label)
        if load.get("lora"):
            load = {**load, "lora": [{"path": path, "scale": scale} for path, scale in load["lora"]]}
        overrides = {"n_parallel": 1, **{LOAD_FLAGS[name][0]: value for name, value in load.items()}}
        model["settings"] = {**(model.get("settings") or {}), **{k: v for k, v in overrides.items() if v is not None}}
        if load.get("draft_model") is not None:  # (the file as given, resolved: not looked up beside the model.json)
            model["draft_model_path"] = str(load["draft_model"])
        services.models.add_transient(model)
        self.model_id = model["id"]
        started = time.perf_counter()
        try:
            target = self.runtime.call(services.models.resolve(self.model_id))
            self.path = target.model.get("file_path") or f"the '{target.engine.engine_name}' engine"
            # A GGUF model takes images only with a projector; another engine's model: not known here.
            local = (target.model.get("engine") or "llama.cpp") == "llama.cpp"
            self.takes_images = bool(target.model.get("mmproj_path")) if local else None
            self.takes_audio = self.takes_images
            self._engine = target.engine
            # what the model cannot do is refused before it loads (seconds, gigabytes): a .gguf given by path has no
            # model.json saying it embeds, but its header does (services.abilities)
            abilities = self.runtime.call(services.models.abilities(target))
            if local and abilities is not None and self.takes_images:  # which encoders its projector has, as its
                self.takes_images, self.takes_audio = abilities.vision, abilities.audio  # header says (None: not known)
            self.embedding_only = not generates_text(target.model) or bool(abilities and abilities.embedding)
            self.thinks = listed_ability(abilities, "thinking") if local and abilities is not None else None
            refuse_embedding(self)
            if media:
                refuse_images(self, media)
            if think:
                refuse_thinking(self)
            self.runtime.call(target.engine.load_model(target.model))
        except (jan.JanError, ValueError) as exc:
            # a setting this process's flag gave is named as the flag the user typed, not as the model.json's key
            given = {f"settings.{LOAD_FLAGS[name][0]}": load_flag(name) for name, value in load.items()
                     if value is not None}
            # (a setting an error advises giving, given or not: "give one as -md/--model-draft")
            flags = {key: load_flag(name) for name, (key, _) in LOAD_FLAGS.items() if name in typed_flags()}
            message = exc.message({**SETTING_FLAGS, **flags, **given}) if isinstance(exc, jan.JanError) else str(exc)
            if exc_param := getattr(exc, "param", None):
                if exc_param in given and getattr(exc, "advice", None) is None:
                    # (a value the settings' check refused, said of the model.json's field: of the flag here)
                    flag = given[exc_param]
                    message = flag + message.removeprefix(exc_param).split(" (in the model.json of")[0]
                elif exc_param in given:  # (named as the flag already: the model.json did not give it)
                    message = message.split(" (in the model.json of")[0]
            raise CLIError(f"cannot load {spec}: {message}") from None
        self.load_seconds = time.perf_counter() - started
        # what the engine made of the file, where its header did not tell
        self.embedding_only = self.embedding_only or self._loaded_embeds()

    def _loaded_embeds(self) -> bool:
        pool = getattr(self._engine, "engine", None)  # the llama.cpp extension's model pool
        with contextlib.suppress(Exception):
            return bool(pool.get(self.model_id).embedding_only)
        return False

    def _model_json(self, conn: Connection, spec: str, label: str) -> dict[str, Any]:
        from jan.errors import ModelNotFoundError
        from jan.store import is_valid_id

        damaged = None
        if not _looks_like_path(spec) and is_valid_id(spec):
            try:
                return self.runtime.call(self.runtime.services.models.get(spec))
            except ModelNotFoundError as exc:
                damaged = str(exc) if getattr(exc, "damaged", None) else None  # its model.json was set aside
        path = expand_home(spec)
        if _missing_bare_file(spec) and (meant := _meant(self.runtime, spec)):
            raise CLIError(f"model '{spec}' not found: it is not a model in {conn.data_folder} nor a file here{meant}")
        if path.is_file() or _looks_like_path(spec):
            check_gguf_file(path, label)
            model = {"id": path.stem, "engine": "llama.cpp", "file_path": str(path.resolve()), "settings": {},
                     "parameters": {}}
            if "mmproj" not in path.name.lower():
                # a projector beside it, by the one rule `jan models import` and the models extension apply
                # (mmproj-<name>, else the folder's only *mmproj*.gguf): this knew only the first
                from jan.hf_repo import sibling_mmproj

                if projector := sibling_mmproj(str(path)):
                    model["mmproj_path"] = str(Path(projector).resolve())
            return model
        if damaged:
            raise CLIError(damaged)
        raise _not_found(conn, spec, "" if conn.absent_note() else _meant(self.runtime, spec))

    def chat(self, messages: list[dict[str, Any]], options: dict[str, Any], *,
             tools: list[dict[str, Any]] | None = None, tool_choice: Any = None) -> Generation:
        from jan.services.types import (
            ChatMessage,
            ChatRequest,
            NamedToolChoice,
            ReasoningOptions,
            SamplingOptions,
            ToolCall,
            ToolSpec,
        )
        from jan.reasoning_fields import request_reasoning

        # the thinking options (REASONING_KEYS) as every front end reads them
        given = request_reasoning({k: options[k] for k in REASONING_KEYS if k in options})
        reasoning = ReasoningOptions(**given) if given else None
        sampling = {k: v for k, v in options.items() if k not in REASONING_KEYS}
        messages = self._fetch_linked_images(messages)
        typed = tuple(ChatMessage(m["role"], _typed_parts(m.get("content"), untrusted=m["role"] == "tool"),
                                  tool_calls=tuple(ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"])
                                                   for c in m.get("tool_calls") or ()),
                                  tool_call_id=m.get("tool_call_id"), name=m.get("name"),
                                  reasoning=m.get("reasoning_content"))
                      for m in messages)
        specs = tuple(ToolSpec(t["function"]["name"], t["function"].get("description"), t["function"].get("parameters"))
                      for t in tools or ())
        choice = tool_choice
        if isinstance(choice, dict):
            choice = NamedToolChoice((choice.get("function") or {}).get("name") or "")
        request = ChatRequest(model=self.model_id, messages=typed, tools=specs, tool_choice=choice,
                              parallel_tool_calls=False if specs else None,
                              sampling=SamplingOptions.from_mapping(sampling), reasoning=reasoning,
                              truncation="auto")  # a long chat keeps going: its oldest turns give way
        return LocalGeneration(self.runtime.iterate(self.runtime.services.chat.stream(request)))

    def _fetch_linked_images(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``messages`` with each image they link to (an ``image_url`` part whose URL is no ``data:`` one: a
        resumed thread's stored link) fetched as ``jan serve`` fetches one in a request (the runtime's
        :class:`~jan.cli.local.LinkedMedia`: ``--allow-media-from``), as its ``data:`` URL; the same list when
        none links. Raises :class:`jan.MediaError` naming ``messages[i].content[j].image_url.url`` (a link not
        allowed, a fetch that failed, no image), never an image left out or read as empty."""
        import asyncio

        links = {(i, j): str(part["image_url"].get("url") or "")
                 for i, m in enumerate(messages) if isinstance(m.get("content"), list)
                 for j, part in enumerate(m["content"])
                 if isinstance(part, dict) and part.get("type") == "image_url" and isinstance(part.get("image_url"), dict)
                 and str(part["image_url"].get("url") or "")[:5].lower() != "data:"}
        if not links:
            return messages
        media = self.runtime.media

        async def fetch_all() -> list[str]:
            return await asyncio.gather(*(media.data_url(url, f"messages[{i}].content[{j}].image_url.url")
                                          for (i, j), url in links.items()))

        fetched = dict(zip(links, self.runtime.call(fetch_all())))
        out = []
        for i, m in enumerate(messages):
            if any(key[0] == i for key in fetched):
                m = {**m, "content": [{**part, "image_url": {**part["image_url"], "url": fetched[i, j]}}
                                      if (i, j) in fetched else part for j, part in enumerate(m["content"])]}
            out.append(m)
        return out

    def complete(self, prompt: str, options: dict[str, Any], *, suffix: str | None = None) -> Generation:
        """A plain completion of ``prompt``; with ``suffix``, the text between the two (fill-in-the-middle, the
        services' :func:`~jan.services.infill.infill_prompt`)."""
        from jan.services.types import CompletionRequest, SamplingOptions

        request = CompletionRequest(model=self.model_id, prompts=(prompt,), suffix=suffix,
                                    sampling=SamplingOptions.from_mapping(options))
        return LocalGeneration(self.runtime.iterate(self.runtime.services.completions.stream(request)))

    def close(self) -> None:
        """Unload the model (the runtime stops with the command)."""
        with contextlib.suppress(Exception):
            if self.model_id in self.runtime.call(self._engine.loaded_models()):
                self.runtime.call(self._engine.unload_model(self.model_id))


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """A chat message as a chat completions body takes it: its text parts without the third-party mark a resumed
    thread's keep (:func:`jan.services.untrusted.trusted_dict`: the body has no such field and refuses unknown
    ones; the server reads attached documents as third-party text itself)."""
    from jan.services.untrusted import UNTRUSTED_KEY, trusted_dict

    content = message.get("content")
    if not isinstance(content, list) or not any(isinstance(p, dict) and UNTRUSTED_KEY in p for p in content):
        return message
    return {**message, "content": [trusted_dict(p) if isinstance(p, dict) else p for p in content]}


class ServerBackend:
    """A model served by a running jan server (loaded there on first use)."""

    def __init__(self, client, model_id: str, model: dict[str, Any] | None = None):
        self.client = client
        self.model_id = model_id
        self.path = None
        self.load_seconds = 0.0
        # From /v1/models/{id}: a GGUF model without "vision" has no projector; another engine's: not known.
        caps = (model or {}).get("capabilities")
        local = ((model or {}).get("engine") or "llama.cpp") == "llama.cpp"
        self.takes_images = True if isinstance(caps, list) and "vision" in caps else (
            False if isinstance(caps, list) and local else None)
        self.takes_audio = True if isinstance(caps, list) and "audio" in caps else (
            False if isinstance(caps, list) and local else None)
        self.thinks = True if isinstance(caps, list) and "thinking" in caps else (
            False if isinstance(caps, list) and local else None)
        self.embedding_only = not generates_text(model or {})

    def _body(self, options: dict[str, Any]) -> dict[str, Any]:
        body = {"model": self.model_id, "stream": True, "stream_options": {"include_usage": True}}
        body.update({k: v for k, v in options.items() if v is not None})
        return body

    def chat(self, messages: list[dict[str, Any]], options: dict[str, Any], *,
             tools: list[dict[str, Any]] | None = None, tool_choice: Any = None) -> Generation:
        # a long chat keeps going: the server drops its oldest turns (jan's "truncation", as the Responses API's)
        body = {**self._body(options), "messages": [_wire_message(m) for m in messages], "truncation": "auto"}
        if tools:
            body["tools"] = tools
            body["parallel_tool_calls"] = False
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        return ServerGeneration(self.client.stream("/v1/chat/completions", body), chat=True)

    def complete(self, prompt: str, options: dict[str, Any], *, suffix: str | None = None) -> Generation:
        """As :meth:`LocalBackend.complete`, through the server's ``/v1/completions`` (its ``suffix``)."""
        body = {**self._body(options), "prompt": prompt}
        if suffix is not None:
            body["suffix"] = suffix
        return ServerGeneration(self.client.stream("/v1/completions", body), chat=False)

    def close(self) -> None:
        pass


def refuse_images(backend, what: str = "images") -> None:
    """CLIError when the backend's model surely takes no images (``what``: ``images``, ``audio`` or ``images or
    audio``; a GGUF model without a projector, or a served one whose capabilities lack ``vision``/``audio``): said
    when the media is attached, not after a message was typed and sent."""
    lacking = [kind for kind, attr in (("images", "takes_images"), ("audio", "takes_audio"))
               if kind in what and getattr(backend, attr, None) is False]
    if not lacking:
        return
    if getattr(backend, "takes_images", None) or getattr(backend, "takes_audio", None):  # a projector of one kind
        raise CLIError(f"model '{backend.model_id}' takes no {' or '.join(lacking)}: its projector has no "
                       f"{'vision' if 'images' in lacking else 'audio'} encoder")
    raise CLIError(f"model '{backend.model_id}' takes no {' or '.join(lacking)}: it has no multimodal projector "
                   f"(import its mmproj GGUF with `jan models import MODEL.gguf --mmproj MMPROJ.gguf`)")


def open_backend(conn: Connection, spec: str, *, images: bool = False, audio: bool = False, think: bool | None = None,
                 label: str = "MODEL", **load: Any):
    """A model id goes to the server when one runs; a .gguf path, or no server, loads in-process with ``load``
    (:data:`LOAD_FLAGS`' options; None: not given). An embedding model is refused (CLIError): every caller generates
    text with it; so is a model that takes no images when ``images`` are to be sent, and one that cannot think when
    ``think`` (``--think``) asks it to. In-process, all are refused before the model loads; two flags that
    contradict each other before anything (CLIError naming the flag). ``label``: how a file's error names what gave
    ``spec`` (:func:`check_gguf_file`)."""
    media = ("images or audio" if audio else "images") if images else "audio" if audio else None
    unknown = set(load) - set(LOAD_FLAGS)
    if unknown:
        raise TypeError(f"unknown load option(s): {', '.join(sorted(unknown))}")
    check_flag_order(**load)
    client = None if _looks_like_path(spec) and not _missing_bare_file(spec) else conn.server()
    if client is not None:
        from jan.cli.client import ServerError, path_part

        try:
            model = client.get(f"/v1/models/{path_part(spec)}")
        except ServerError as exc:
            if exc.status == 404 and f"{spec!r} is damaged" not in str(exc):  # a damaged model.json: the server's words
                meant = meant_by_server(exc) or " (see `jan models list`)"  # the server's guess (case, ".gguf")
                raise CLIError(f"model '{spec}' not found on the server at {client.base_url}{meant}") from None
            raise
        backend = ServerBackend(client, spec, model if isinstance(model, dict) else None)
        ignored = [load_flag(name) for name, value in load.items() if value is not None]
        if ignored:  # said, not silently dropped: the same flags in-process would change the answer (or its error)
            from jan.cli.common import warn

            warn(f"{', '.join(ignored)} only appl{'y' if len(ignored) > 1 else 'ies'} to a model loaded in this "
                 f"process; the server at {client.base_url} runs {spec} with its own settings (use --local to load "
                 "it here)")
    else:
        backend = LocalBackend(conn, spec, media=media, think=think, label=label, **load)
    refuse_embedding(backend)  # `jan run` and `jan chat` (and its /model) only generate
    try:
        if media:
            refuse_images(backend, media)
        if think:
            refuse_thinking(backend)
    except CLIError:
        backend.close()
        raise
    return backend


def refuse_thinking(backend) -> None:
    """CLIError when ``--think`` asks thinking of a model whose chat template has none (the capability ``thinking``
    that /v1/models and Ollama's /api/show list): the flag did nothing, without a word, where Ollama's ``think``
    is refused ("does not support thinking")."""
    if getattr(backend, "thinks", None) is False:
        raise CLIError(f"model '{backend.model_id}' does not think (its chat template has no thinking): --think has "
                       "nothing to turn on")
