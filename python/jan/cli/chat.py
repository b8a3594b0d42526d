"""``jan chat [MODEL]``: talk to a model in the terminal; the conversation is saved as a thread."""

from __future__ import annotations

import contextlib
import queue
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import click

from jan.cli.common import (
    CLIError,
    allow_media_option,
    media_allowed_here,
    connection_options,
    did_you_mean,
    echo_decoration,
    lenient_stdin,
    lora_flags,
    lora_options,
    nonempty_param,
    os_error_message,
    reader_gone,
    replace_undecodable,
    say_error,
    stdout_is_tty,
    text_param,
)
from jan.cli.conversation import history_of, open_threads, thread_assistants
from jan.cli.images import content_text, image_part, user_content
from jan.cli.inference import STOP_DEADLINE_S, StopSignals, Terminated, default_model, open_backend, refuse_images
from jan.cli.speed_flags import speed_options
from jan.cli.run import LORA_APPLIES, SPEED_APPLIES, collect_options, load_options, sampling_options, think_option
from jan.cli.tools import MAX_STEPS

PROMPT = ">>> "
CONTINUATION = "... "
BLOCK = '"""'
TITLE_CHARS = 50
#: The chat's slash commands (/help lists them), for the one a mistyped command meant.
CHAT_COMMANDS = ("new", "system", "model", "save", "image", "help", "exit", "quit", "bye")

HELP = f"""Commands:
  /new            start a new conversation (a new thread)
  /system [TEXT]  set the system prompt (no TEXT: show it; /system - clears it)
  /model [ID]     switch to another model (no ID: show the current one)
  /save [TITLE]   save the conversation now (and set its title)
  /image [PATH]   attach an image to your next message (no PATH: list them; /image - drops them)
  /help           this help
  /exit           leave (also /quit, Ctrl-D, or Ctrl-C at the prompt)
Multi-line input: end a line with \\ to continue it, or wrap the text in {BLOCK} ... {BLOCK}.
Ctrl-C while the answer is streaming stops the answer. Start a line with // to send a literal /."""


#: ``metadata.stop_reason`` of an answer that broke off (its server gone): jan.store.messages.INTERRUPTED, the
#: reason a run a stop of jan cut off has (not imported: the CLI starts without the store)
INTERRUPTED = "interrupted"
#: The result the model is told for a tool call that was stopped (Ctrl-C) or cut off (a chat saved mid-call).
STOPPED_CALL = "The user stopped this tool call before it returned a result."


def note(text: str) -> None:
    """A dimmed line about the chat (not an answer): stderr when stdout is not a terminal
    (:func:`~jan.cli.common.echo_decoration`)."""
    echo_decoration(text, dim=True)


def answered(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with a result for every tool call that has none right after its turn (:data:`STOPPED_CALL`).

    A chat saved while a call ran (jan stopped by a signal mid-call, a thread from an older jan) keeps the calling
    turn without its results; the servers, as the upstream APIs, refuse a conversation with unanswered calls
    (``jan.services.tool_pairs``), so the history sent says the calls were stopped instead."""
    out: list[dict[str, Any]] = []
    open_calls: list[dict[str, Any]] = []

    def close_open() -> None:
        out.extend({"role": "tool", "tool_call_id": c.get("id"), "name": (c.get("function") or {}).get("name"),
                    "content": STOPPED_CALL} for c in open_calls)
        open_calls.clear()

    for m in messages:
        if m.get("role") == "tool":
            open_calls[:] = [c for c in open_calls if c.get("id") != m.get("tool_call_id")]
        else:
            close_open()
            if m.get("role") == "assistant":
                open_calls.extend(m.get("tool_calls") or ())
        out.append(m)
    close_open()
    return out


def model_turn(answer: str | None, thoughts: list[str], calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One model turn as the chat's history keeps it: its text (``None`` for a calling turn with none), its
    ``tool_calls``, and its thinking (the pieces shown dimmed) as ``reasoning_content``. Every turn keeps its
    thinking, a calling turn's too: it goes back with the history, where the chat template decides whether it is
    shown again (Qwen3, gpt-oss, GLM, DeepSeek V3.1 and Kimi show the model the thinking of each step of a tool loop;
    gpt-oss's analysis is what its call was made from), and it is saved as the turn's ``reasoning`` part, as a run
    of the thread saves it."""
    turn: dict[str, Any] = {"role": "assistant", "content": answer}
    if calls:
        turn["tool_calls"] = calls
    if thoughts:
        turn["reasoning_content"] = "".join(thoughts)
    return turn


@dataclass(eq=False)
class ChatSession:
    """One ``jan chat``: the model (``backend``, reached through ``conn``), the conversation so far and
    the thread it is saved in. ``load_kwargs`` load the model ``/model`` switches to."""

    conn: Any
    backend: Any
    _: KW_ONLY
    options: dict[str, Any]
    system: str | None
    autosave: bool
    load_kwargs: dict[str, Any]
    messages: list[dict[str, str]] = field(init=False, default_factory=list)
    saved: int = field(init=False, default=0)  # how many of self.messages are in the thread
    statuses: list[str] = field(init=False, default_factory=list)
    meta: list[dict[str, Any]] = field(init=False, default_factory=list)
    thread_id: str | None = field(init=False, default=None)
    title: str | None = field(init=False, default=None)
    _threads: Any = field(init=False, default=None)
    tools: Any = field(init=False, default=None)  # ChatTools when --tool/--mcp were given
    tool_choice: Any = field(init=False, default=None)
    confirm: Callable[[str], str] = field(init=False, default=input)
    images: list[dict[str, Any]] = field(init=False, default_factory=list)  # image_url parts for the next user message
    stops: StopSignals | None = field(init=False, default=None)  # SIGTERM/SIGHUP: stop as Ctrl-C does, then leave
    failed_turns: int = field(init=False, default=0)  # piped input then ends with a failure status
    failed_commands: int = field(init=False, default=0)  # likewise: a /command that failed (or none such)
    unsaved: bool = field(init=False, default=False)  # the last save failed: likewise, what a script ran was not kept
    _told_unsaved: bool = field(init=False, default=False)  # this turn's failed save was said already

    @property
    def stopping(self) -> bool:
        """Whether SIGTERM or SIGHUP came: the turn in progress is saved, and the chat ends."""
        return self.stops is not None and self.stops.signum is not None

    # -- saving --------------------------------------------------------
    @property
    def threads(self):
        if self._threads is None:
            self._threads = open_threads(self.conn)
        return self._threads

    def command_failed(self, what: str, reason: str) -> None:
        """Say on stderr that a /command failed: ``jan: error: {what}: {reason}``, ``what`` in plain words (``could
        not switch to model 'x'``), ``reason`` the error's own; and count it, so that piped input ends with status 1
        as a script whose command failed does. The chat goes on (at a terminal the user saw it)."""
        say_error(f"{what}: {reason}")  # (what was typed is in it: a NUL, an ESC sequence shown escaped)
        self.failed_commands += 1

    def _update_assistant(self) -> None:
        """The saved thread's assistant made the session's: its model and system prompt."""
        if self.thread_id is None:
            return
        try:
            self.threads.update(self.thread_id, assistants=thread_assistants(self.backend.model_id, self.system))
        except CLIError as exc:
            self.command_failed(f"could not update thread {self.thread_id}", exc.format_message())
        except OSError as exc:
            self.command_failed(f"could not update thread {self.thread_id}", os_error_message(exc))
        except Exception as exc:  # noqa: BLE001 - told, and the chat goes on
            self.command_failed(f"could not update thread {self.thread_id}", str(exc))

    def resume(self, thread_id: str) -> None:
        thread, stored = self.threads.load(thread_id)
        self.thread_id = thread["id"]
        self.title = thread.get("title")
        assistants = thread.get("assistants") or []
        if self.system is None and assistants and assistants[0].get("instructions"):
            self.system = assistants[0]["instructions"]
        # as a run of the thread reads it: its system messages too, and the documents attached to its turns
        self.messages = history_of(stored, lambda file_id: self.threads.read_file(self.thread_id, file_id))
        self.statuses = ["ready"] * len(self.messages)
        self.meta = [{}] * len(self.messages)
        self.saved = len(self.messages)
        note(f"resumed thread {self.thread_id} ({len(self.messages)} messages)")

    def save(self, title: str | None = None) -> None:
        # a stop signal waits for the save: the thread is written whole, the reason the signal is handled at all
        with self.stops.held() if self.stops is not None else contextlib.nullcontext():
            self._save(title)

    def _save(self, title: str | None) -> None:
        if title:
            self.title = title
        if not self.messages and not title:
            return
        threads = self.threads
        if self.thread_id is None:
            first = next((content_text(m["content"]) for m in self.messages if m["role"] == "user"), "") or "New Thread"
            self.title = self.title or _title_from(first)
            self.thread_id = threads.create(self.title, thread_assistants(self.backend.model_id, self.system),
                                            {"created_by": "jan chat"})
        elif title:
            threads.update(self.thread_id, title=title)
        for i in range(self.saved, len(self.messages)):
            m = self.messages[i]
            content = m["content"] or ""  # a turn of only tool calls keeps them in its metadata
            if m.get("reasoning_content"):  # saved as Jan's "reasoning" content part before the text
                content = [{"type": "reasoning", "text": {"value": m["reasoning_content"], "annotations": []}},
                           *([{"type": "text", "text": {"value": content, "annotations": []}}] if content else [])]
            threads.add(self.thread_id, m["role"], content, status=self.statuses[i], metadata=self.meta[i])
            # counted as each is written: a save refused part-way (a full disk) is finished by the next one, which
            # wrote the turns already in the thread a second time
            self.saved = i + 1
        self.saved = len(self.messages)

    def save_quietly(self) -> None:
        """Save, a failure told on stderr (once a turn: a turn saves as its answer begins and again as it ends, and
        a full disk refuses both) and noted in :attr:`unsaved`; the chat goes on."""
        try:
            self.save()
            self.unsaved = False  # a later save writes what an earlier one could not
            self._told_unsaved = False
            return
        except CLIError as exc:
            reason = exc.format_message()
        except OSError as exc:  # a read-only data folder, a full disk: the path and the reason, not an errno
            reason = os_error_message(exc)
        except Exception as exc:  # noqa: BLE001 - a failed save must not end the chat
            reason = str(exc)
        if not self._told_unsaved:
            say_error(f"could not save the conversation: {reason}")
        self.unsaved = self._told_unsaved = True

    def _keep_so_far(self) -> None:
        """Save the turns not yet in the thread (with autosave), as a run stores the user's message before it
        answers. A stop signal that came during the save (held off by it) stops the answer here, as Ctrl-C does."""
        if not self.autosave or self.saved >= len(self.messages):
            return
        self.save_quietly()

    def _keep_before_answer(self) -> None:
        """:meth:`_keep_so_far` as an answer begins; a signal held off by the save stops the answer (raised as
        :class:`~jan.cli.inference.Terminated`, handled as Ctrl-C is)."""
        self._keep_so_far()
        if self.stopping:
            raise Terminated(self.stops.signum)

    # -- talking -------------------------------------------------------
    def ask(self, text: str) -> None:
        content, self.images = user_content(text, self.images), []
        self.messages.append({"role": "user", "content": content})
        self.statuses.append("ready")
        self.meta.append({})
        steps = MAX_STEPS if self.tools else 1
        try:
            for step in range(steps):
                if not self._turn(step, steps) or self.stopping:
                    break
                # a tool step's turns (the call, its results) are kept as they end, not when the whole answer does
                self._keep_so_far()
                if self.stopping:  # (a signal during that save: the chat ends, the turns kept)
                    break
        finally:
            # also when the answer broke off (the server killed mid-answer, a later step's connection refused):
            # what the user saw of the exchange is kept, and a later `jan chat --thread` goes on from it
            if self.autosave:
                self.save_quietly()
            self._told_unsaved = False  # (a save after the turn, /new's or /save's, says its own failure)

    def _turn(self, step: int, steps: int) -> bool:
        """One model turn; True when it called tools (they ran or were denied) and the model goes on."""
        chat = ([{"role": "system", "content": self.system}] if self.system else []) + answered(self.messages)
        pieces: list[str] = []
        thoughts: list[str] = []
        status = "ready"
        generation = None
        try:
            if self.tools:
                choice = "none" if step == steps - 1 else (self.tool_choice if step == 0 else None)
                generation = self.backend.chat(chat, self.options, tools=self.tools.specs, tool_choice=choice)
            else:
                generation = self.backend.chat(chat, self.options)
            thinking = False
            for piece in generation:
                if not (pieces or thoughts):
                    # the answer has begun: what came before it (the user's message, a tool step's results) is
                    # written now, before any of it is shown, so a process killed mid-answer (kill -9, a crash)
                    # loses only the answer; a request refused before this keeps nothing, to be sent again
                    self._keep_before_answer()
                if getattr(piece, "reasoning", False):
                    # the model's thinking: shown dimmed (plain when not a terminal), not part of the answer: on
                    # stderr when stdout is no terminal (`jan chat | tee log`: the answers only, as `jan run`
                    # keeps its thinking off stdout unless asked)
                    thoughts.append(piece)
                    echo_decoration(piece, dim=True, nl=False)
                    thinking = True
                    continue
                if thinking:
                    # (on the thinking's stream: the answer apart from it)
                    (sys.stdout if stdout_is_tty() else sys.stderr).write("\n\n")
                    thinking = False
                pieces.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
            if thinking and not stdout_is_tty():  # (thinking to the end, on stderr: its line ended there)
                sys.stderr.write("\n")
        except KeyboardInterrupt:
            if generation is not None:
                generation.cancel()
            status = "stopped"
        except BrokenPipeError:
            # the reader of the answers went away (`jan chat < prompts.txt | head`): the answer stops as Ctrl-C
            # stops it and is kept so far (ask() saves it; the exchange was saved with no reply at all), and the
            # chat ends as a filter whose reader went does (status 0: the command's handler)
            if generation is not None:
                generation.cancel()
            reader_gone()
            self.messages.append(model_turn("".join(pieces), thoughts))
            self.statuses.append("stopped")
            self.meta.append({"model": self.backend.model_id})
            raise
        except CLIError:
            if pieces or thoughts:
                # the answer broke off after it began (a server killed, a stream ended without its end, the engine
                # failing mid-answer): the user saw this much, so it is kept as Ctrl-C keeps a stopped answer,
                # ``stopped``, its metadata saying jan, not the user, cut it (as a run a stop of jan cut off says)
                self._cut_off(pieces, thoughts)
            elif step == 0:  # refused before any answer: the message is not kept, to be sent again as it is
                del self.messages[-1], self.statuses[-1], self.meta[-1]
            raise
        answer = "".join(pieces)
        calls = list(generation.tool_calls or []) if generation is not None and status == "ready" and self.tools else []
        meta = {"model": self.backend.model_id}
        if generation is not None and generation.finish_reason:
            meta["finish_reason"] = generation.finish_reason
        if calls and meta.get("finish_reason") == "length":
            # --max-tokens cut the turn: a call whose arguments it cut is not what the model meant to pass, so it is
            # neither put to the user nor run (as a run drops it); the turn ends as an answer cut off
            from jan.services.tool_loop import whole_arguments  # (the CLI starts without the services)

            whole = [c for c in calls if whole_arguments((c.get("function") or {}).get("arguments") or "")]
            if len(whole) < len(calls):
                note(f"[tool call {(calls[-1].get('function') or {}).get('name', '')} cut off by the token limit]")
            calls = whole
        if calls:
            if answer:
                sys.stdout.write("\n")
            self.messages.append(model_turn(answer or None, thoughts, calls))
            self.statuses.append("ready")
            self.meta.append({**meta, "tool_calls": calls})
            # the calling turn is kept before its calls run (a y/n may wait long, a tool may hang): killed then,
            # the thread has the calls, which a later chat sends as stopped (answered())
            self._keep_so_far()
            for call in calls:
                if self.stopping:  # (a signal during that save: the calls are not run, the chat ends)
                    break
                self._run_call(call)
            return True
        sys.stdout.write("\n" if answer.endswith("\n") or not answer else "\n\n")
        if status == "stopped":
            note("[answer stopped]")
        sys.stdout.flush()
        self.messages.append(model_turn(answer, thoughts))
        self.statuses.append(status)
        self.meta.append(meta)
        return False

    def _cut_off(self, pieces: list[str], thoughts: list[str]) -> None:
        """Keep the part of an answer that came before it broke off: status ``stopped`` (as a Ctrl-C leaves it),
        ``metadata.stop_reason`` ``"interrupted"`` (the web page says "the server stopped before it was done")."""
        answer = "".join(pieces)
        sys.stdout.write("\n" if answer.endswith("\n") or not answer else "\n\n")
        note("[answer cut off]")
        sys.stdout.flush()
        self.messages.append(model_turn(answer, thoughts))
        self.statuses.append("stopped")
        self.meta.append({"model": self.backend.model_id, "stop_reason": INTERRUPTED})

    def _run_call(self, call: dict[str, Any]) -> None:
        """Show a tool call, ask y/n, run it (or tell the model it was denied) and keep the result."""
        fn = call.get("function") or {}
        name, arguments = fn.get("name", ""), fn.get("arguments") or "{}"
        echo_decoration(f"tool call: {name} {arguments}", fg="yellow")
        try:
            answer = (self.confirm(f"Run {name}? [y/N] ") or "").strip().lower()
        except (EOFError, KeyboardInterrupt):
            answer = "n"
        if answer in ("y", "yes"):
            try:
                output, is_error, duration = self.tools.call(name, arguments)
                note(("error: " if is_error else "") + (output if len(output) <= 500 else output[:500] + " [...]"))
            except KeyboardInterrupt:  # Ctrl-C in a slow tool stops the call, not the chat: the model is told
                output, is_error, duration = STOPPED_CALL, True, 0
                note("stopped")
        else:
            output, is_error, duration = "The user denied this tool call.", True, 0
            note("denied")
        self.messages.append({"role": "tool", "tool_call_id": call.get("id"), "name": name, "content": output})
        self.statuses.append("ready")
        self.meta.append({"tool_call_id": call.get("id"), "name": name, "arguments": arguments,
                          "duration_ms": duration, "approved_by": "user", "is_error": is_error})

    # -- commands ------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run a /command; returns False to leave the chat."""
        # (split at any whitespace: "/system<TAB>Be brief", pasted, was the unknown command "/system\tbe brief")
        name, arg = re.match(r"(\S*)\s*(.*)", line[1:], re.S).groups()  # type: ignore[union-attr]
        name, arg = name.lower(), arg.strip()
        if name in ("exit", "quit", "bye"):
            return False
        if name in ("help", "?"):
            echo_decoration(HELP)
        elif name == "new":
            if self.autosave:
                self.save_quietly()
            self.messages, self.statuses, self.meta = [], [], []
            self.saved, self.thread_id, self.title = 0, None, None
            note("new conversation")
        elif name == "system":
            if not arg:
                note(f"system prompt: {self.system!r}" if self.system else "no system prompt")
            else:
                self.system = None if arg == "-" else arg
                note("system prompt cleared" if self.system is None else "system prompt set")
                self._update_assistant()
        elif name == "model":
            if not arg:
                note(f"model: {self.backend.model_id}")
            else:
                try:
                    # (--think holds for the model switched to: one that cannot think is refused, as at start; a
                    # file's error is the command's, not the MODEL argument's the chat started with)
                    backend = open_backend(self.conn, arg, think=self.options.get("think"), label="",
                                           **self.load_kwargs)
                except CLIError as exc:
                    self.command_failed(f"/model: could not switch to model {arg!r}", exc.format_message())
                else:
                    self.backend.close()
                    self.backend = backend
                    note(f"model: {backend.model_id}")
                    # the thread's model is the one it chats with now (the thread list and the web page show it,
                    # and a run of the thread uses it), as /system updates its instructions
                    self._update_assistant()
        elif name == "image":
            if not arg:
                note(f"{len(self.images)} image(s) attached to the next message" if self.images
                     else "no image attached; /image PATH attaches one")
            elif arg == "-":
                self.images = []
                note("images dropped")
            else:
                try:
                    refuse_images(self.backend)
                    self.images.append(image_part(arg))
                except CLIError as exc:
                    self.command_failed(f"/image: could not attach {arg!r}", exc.format_message())
                else:
                    note(f"image attached ({len(self.images)}); it goes with your next message")
        elif name == "save":
            if not self.messages:
                note("nothing to save yet")
            else:
                try:
                    self.save(arg or None)
                except CLIError as exc:
                    self.command_failed("/save: could not save the conversation", exc.format_message())
                except OSError as exc:  # a read-only data folder, a full disk: the path and the reason
                    self.command_failed("/save: could not save the conversation", os_error_message(exc))
                else:
                    note(f"saved as thread {self.thread_id} ({self.threads.path(self.thread_id)})")
        else:
            # (a command one letter off, /modle, /sytem: named as a mistyped `jan` command or model id is)
            meant = did_you_mean(name, CHAT_COMMANDS).replace(": did you mean '", ": did you mean '/")
            hint = meant.removeprefix(": ")
            self.command_failed(f"unknown command /{name}", f"{hint} /help lists them" if hint else "/help lists them")
        return True


def _tool_choice_word(value: str | None) -> str | None:
    """``--tool-choice``'s words in any case, as every option's words are (:class:`jan.cli.common.Words`): ``AUTO``
    was taken for a tool named so; any other value is a tool's name, as typed."""
    if value is not None and value.strip().lower() in ("auto", "none", "required"):
        return value.strip().lower()
    return value


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class PromptReader:
    """``input()`` for the chat prompt.

    At a terminal the line is read on a helper thread while this (main) thread
    waits in short steps: the kernel may hand Ctrl-C to any thread that does not
    block it (numpy's BLAS threads, for one), and a main thread blocked reading
    the terminal would only notice it after Enter. The terminal settings are
    restored on the way out, since readline may still be holding the terminal.
    """

    def __init__(self, interactive: bool):
        self.interactive = interactive
        self._saved_tty = None
        if interactive:
            try:
                import termios

                self._saved_tty = termios.tcgetattr(sys.stdin.fileno())
            except (ImportError, OSError, ValueError):
                pass

    def __call__(self, prompt: str) -> str:
        """The line read, undecodable bytes as U+FFFD (see :func:`~jan.cli.common.replace_undecodable`)."""
        if not self.interactive:
            return replace_undecodable(input(""))
        if not sys.stdout.isatty():
            # `jan chat | tee log`: input() writes its prompt to stdout when stdout is no terminal (readline only
            # takes the terminal when both are), which put ">>> " into the answers; the prompt is the person's
            sys.stderr.write(prompt)
            sys.stderr.flush()
            prompt = ""
        box: queue.Queue = queue.Queue()

        def read() -> None:
            try:
                box.put((True, input(prompt)))
            except BaseException as exc:  # noqa: BLE001 - EOFError (Ctrl-D) goes to the main thread
                box.put((False, exc))

        threading.Thread(target=read, name="jan-chat-input", daemon=True).start()
        while True:
            try:
                ok, value = box.get(timeout=0.1)
            except queue.Empty:
                continue
            if ok:
                return replace_undecodable(value)
            raise value

    def restore_terminal(self) -> None:
        if self._saved_tty is not None:
            import termios

            try:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved_tty)
            except (OSError, termios.error):
                pass


def read_message(ask: PromptReader) -> str:
    """One message: a line, lines joined by a trailing backslash, or a triple-quoted block.
    Raises EOFError / KeyboardInterrupt at the prompt."""

    line = ask(PROMPT)
    stripped = line.strip()
    # The input may end (Ctrl-D, the end of a pipe) inside a block or after a trailing backslash: what was typed
    # is sent all the same, as the end of the input ends the message too; the next read then sees the end.
    if stripped.startswith(BLOCK):
        rest = stripped[len(BLOCK):]
        if rest.endswith(BLOCK) and len(rest) >= len(BLOCK):
            return rest[: -len(BLOCK)]
        lines = [rest] if rest else []
        for _ in range(100_000):
            try:
                more = ask(CONTINUATION)
            except EOFError:
                break
            if more.rstrip().endswith(BLOCK):
                lines.append(more.rstrip()[: -len(BLOCK)])
                break
            lines.append(more)
        return "\n".join(lines).strip("\n")
    lines = []
    for _ in range(100_000):
        if not line.endswith("\\"):
            break
        lines.append(line[:-1])
        try:
            line = ask(CONTINUATION)
        except EOFError:
            return "\n".join(lines)
    lines.append(line)
    return "\n".join(lines)


def thread_model(conn, thread_id: str) -> str | None:
    """The model a saved thread was chatting with: the one that wrote its last reply (a run's, `jan chat`'s: its
    ``metadata.model``), else its assistant's; None when it names none."""
    from jan.cli.threads import fetch_thread

    thread, messages = fetch_thread(conn, thread_id)
    for message in reversed(messages):
        metadata = message.get("metadata")
        if message.get("role") == "assistant" and isinstance(metadata, dict) and isinstance(metadata.get("model"), str):
            return metadata["model"]
    assistants = thread.get("assistants") or []
    model = assistants[0].get("model") if assistants and isinstance(assistants[0], dict) else None
    model_id = model.get("id") if isinstance(model, dict) else None
    return model_id if isinstance(model_id, str) and model_id else None


@click.command()
@click.argument("model", required=False, callback=nonempty_param)
@click.option("--system", "-s", default=None, callback=text_param, help="System prompt.")
@click.option("--thread", "thread_id", default=None, metavar="ID", callback=nonempty_param,
              help="Continue a saved thread.")
@click.option("--no-save", is_flag=True, help="Do not save the conversation automatically (/save still does).")
@click.option("--tool", "tool_names", multiple=True, metavar="NAME", callback=nonempty_param,
              help="Offer a tool to the model (see GET /v1/tools; repeatable). Each call asks y/n first.")
@click.option("--mcp", "mcp_servers", multiple=True, metavar="SERVER", callback=nonempty_param,
              help="Offer every tool of an MCP server from mcp.json (repeatable).")
@click.option("--tool-choice", default=None, metavar="auto|required|NAME", callback=lambda ctx, param, value:
              _tool_choice_word(nonempty_param(ctx, param, value)),
              help="Make the model's first turn call a tool (required) or this one.")
@sampling_options
@think_option
@load_options
@lora_options(LORA_APPLIES)
@speed_options(SPEED_APPLIES)
@allow_media_option("Without a server (a server fetches with its own `jan serve --allow-media-from`): fetch the "
                    "images a thread's messages link to")
@connection_options
def chat(model, system, thread_id, no_save, tool_names, mcp_servers, tool_choice, max_tokens, temperature, top_p, seed, stop, ignore_eos, think, n_ctx,
         n_threads, n_gpu_layers, image_min_tokens, image_max_tokens, lora, lora_scaled, allow_media_from, conn,
         **speed) -> None:
    """Chat with MODEL in the terminal, answers streaming as they are written.

    MODEL is a model id or a .gguf path; without it, a --thread goes on
    with the model that wrote its last reply, else the model the server
    has loaded (or the only model there is) is used, embedding models left
    out; with several to choose from, name one. Each exchange
    is saved as a thread (through the server's /v1/threads when a server
    runs, else in the data folder). Type /help for the commands. SIGTERM or
    SIGHUP (a closed terminal) stops the answer as Ctrl-C does, saves it and
    ends the command, within 30 s whatever holds it up.
    """
    conn.allow_media_from = media_allowed_here(conn, allow_media_from)
    if tool_choice not in (None, "auto", "none") and not (tool_names or mcp_servers):
        # a choice of tools among none was quietly dropped and the model answered as if it had not been given
        raise CLIError(f"--tool-choice {tool_choice} needs tools to choose from: give --tool NAME or --mcp SERVER")
    load_kwargs = {"n_ctx": n_ctx, "n_threads": n_threads, "n_gpu_layers": n_gpu_layers,
                   "image_min_tokens": image_min_tokens, "image_max_tokens": image_max_tokens,
                   "lora": lora_flags(lora, lora_scaled), **speed}
    if model is None and thread_id:
        # a thread goes on with the model it was chatting with (the one that wrote its last reply), not whichever
        # is loaded: with several it was "which model?", and with another one loaded the thread changed model
        model = thread_model(conn, thread_id)
        try:
            backend = open_backend(conn, model or default_model(conn), think=think, **load_kwargs)
        except CLIError as exc:
            if model is None:
                raise
            raise CLIError(f"{exc.format_message()} (the model of thread {thread_id}; name another: "
                           f"`jan chat MODEL --thread {thread_id}`)") from None
    else:
        backend = open_backend(conn, model or default_model(conn), think=think, **load_kwargs)
    options = collect_options(max_tokens, temperature, top_p, seed, stop, ignore_eos)
    if think is not None:
        options["think"] = think
    session = ChatSession(conn, backend, options=options, system=system, autosave=not no_save,
                          load_kwargs=load_kwargs)
    if tool_names or mcp_servers:
        from jan.cli.tools import ChatTools

        try:
            # (the folder whose mcp.json this process starts servers from: local_folder refuses a $JAN_DATA_FOLDER
            # that is not the running server's, as every command acting on the folder itself does)
            session.tools = ChatTools(conn.local_folder, tuple(tool_names), tuple(mcp_servers))
        except CLIError:
            backend.close()
            raise
        if tool_choice in ("auto", "none", "required"):
            session.tool_choice = tool_choice
        elif tool_choice:
            offered = session.tools.tools
            if tool_choice not in offered:
                session.tools.close()
                backend.close()
                raise CLIError(f"--tool-choice names '{tool_choice}', which is not among this chat's tools "
                               f"({', '.join(sorted(offered))})")
            session.tool_choice = {"type": "function", "function": {"name": tool_choice}}
    lenient_stdin()  # also when this command is invoked on its own, not through `jan`
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    ask = PromptReader(interactive)
    session.confirm = ask
    # a stop signal ends this process within STOP_DEADLINE_S whatever holds it up; where it stuck goes to the log
    stops = session.stops = StopSignals(deadline_s=STOP_DEADLINE_S,
                                        report=conn.data_folder / "logs" / "jan-chat.log").__enter__()
    try:
        if thread_id:
            session.resume(thread_id)
        if interactive:
            note(f"jan chat with {backend.model_id} - /help for commands, Ctrl-D to leave")
        while not session.stopping:  # until /exit, Ctrl-D or Ctrl-C at the prompt, or SIGTERM/SIGHUP
            try:
                text = read_message(ask)
            except (EOFError, KeyboardInterrupt):
                ask.restore_terminal()
                if interactive:
                    echo_decoration("")  # (the line the prompt left open)
                break
            if not text.strip():
                continue
            if text.startswith("/") and not text.startswith("//"):
                if not session.command(text.strip()):
                    break
                continue
            if text.startswith("//"):
                text = text[1:]
            try:
                session.ask(text)
            except CLIError as exc:
                say_error(exc.format_message())
                session.failed_turns += 1
            if session.stopping:  # SIGTERM/SIGHUP: the turn it stopped is saved; leave now
                break
    finally:
        ask.restore_terminal()
        session.backend.close()
        if session.tools is not None:
            session.tools.close()
        stops.__exit__(None, None, None)
    if stops.exit_code is not None:
        sys.exit(stops.exit_code)
    if session.thread_id and session.saved == len(session.messages) and interactive:
        note(f"conversation saved as thread {session.thread_id}")
    if (session.failed_turns or session.failed_commands or session.unsaved) and not interactive:
        # at a terminal the user saw each failed answer (or save, or /command) and went on; a script reading the
        # status has only this: piped into `jan chat`, a failed turn, an exchange the data folder refused to keep or
        # a /command that failed (`/model NOSUCH`: the turns after it went to another model) is no success, as a
        # shell script with a failed command is none. The chat still went on to its end, as at a terminal.
        sys.exit(1)
