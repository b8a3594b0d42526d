"""``jan run MODEL PROMPT``: one answer, streamed to stdout (diagnostics go to stderr)."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from jan.cli.common import (
    INT32_MAX,
    CLIError,
    GpuLayers,
    MediaSource,
    PathParam,
    allow_media_option,
    is_media_link,
    media_allowed_here,
    SamplingValue,
    connection_options,
    echo_styled,
    lenient_stdin,
    lora_flags,
    lora_options,
    nonempty_param,
    nonempty_text_param,
    print_json,
    replace_undecodable,
    text_param,
)
from jan.errors import MediaError
from jan.cli.images import audio_part, image_link_part, image_part, user_content
from jan.cli.inference import open_backend
from jan.cli.speed_flags import speed_options
from jan.engine.model import GGML_MAX_N_THREADS, IMAGE_TOKENS_MAX


def sampling_options(func):
    """--max-tokens/--temperature/--top-p/--seed/--stop, shared by run and chat; each value checked as the engine
    checks it (:class:`SamplingValue`), whether a server or this process answers."""
    max_tokens, temperature, top_p, seed = (SamplingValue(name) for name in ("max_tokens", "temperature", "top_p", "seed"))
    for decorator in reversed([
        click.option("--max-tokens", "-n", type=max_tokens, default=None,
                     help=f"Stop after this many tokens. {max_tokens.describe()}"),
        click.option("--temperature", "--temp", type=temperature, default=None,
                     help=f"Sampling temperature (0: greedy, deterministic). {temperature.describe()}"),
        click.option("--top-p", type=top_p, default=None, help=f"Nucleus sampling threshold. {top_p.describe()}"),
        click.option("--seed", type=seed, default=None,
                     help=f"Sampling seed, for repeatable answers (-1: a random one). {seed.describe()}"),
        click.option("--stop", "stop", multiple=True, callback=nonempty_text_param, help="Stop at this text (repeatable)."),
        click.option("--ignore-eos", is_flag=True, default=None,
                     help="Keep writing past the end-of-text token (until --max-tokens or the context is full)."),
    ]):
        func = decorator(func)
    return func


def load_options(func):
    """--ctx-size/--threads/--gpu-layers/--image-min-tokens/--image-max-tokens: how to load a model in this process
    (no server); :data:`jan.cli.inference.LOAD_FLAGS`."""
    for decorator in reversed([
        click.option("--ctx-size", "-c", "n_ctx", type=click.IntRange(64, INT32_MAX), default=None,
                     help="Context tokens (in-process models only)."),
        click.option("--threads", "-t", "n_threads", type=click.IntRange(1, GGML_MAX_N_THREADS), default=None,
                     help="CPU threads (in-process models only)."),
        click.option("--gpu-layers", "-ngl", "n_gpu_layers", type=GpuLayers(), default=None,
                     help="Layers to offload to the GPU: a count, -1 or 'all' for all, 'auto' for as many as fit "
                          "(in-process models only) [default: auto]."),
        click.option("--image-min-tokens", "image_min_tokens", type=click.IntRange(1, IMAGE_TOKENS_MAX),
                     default=None, metavar="N",
                     help="Fewest tokens one image takes, on projectors that resize images (Qwen2/2.5/3-VL, ...) "
                          "(in-process models only) [default: the projector's own]."),
        click.option("--image-max-tokens", "image_max_tokens", type=click.IntRange(1, IMAGE_TOKENS_MAX),
                     default=None, metavar="N",
                     help="Most tokens one image takes (a bigger one is scaled down), on projectors that resize "
                          "images (in-process models only) [default: the projector's own, 4096 for Qwen-VL]."),
    ]):
        func = decorator(func)
    return func


#: What ``--lora`` applies to in ``jan run`` and ``jan chat`` (:func:`jan.cli.common.lora_options`' help).
LORA_APPLIES = "the model loads with, over its model.json's settings.lora (in-process models only)"
#: Whose ``--model-draft`` wins in ``jan run`` and ``jan chat`` (:func:`jan.cli.speed_flags.speed_options`' help).
SPEED_APPLIES = "over the model.json's settings.draft_model, as these flags win over its settings (in-process models only)"


def think_option(func):
    """``--think/--no-think``: a reasoning model's thinking on or off (its chat template's own switch)."""
    return click.option("--think/--no-think", default=None,
                        help="Turn a reasoning model's thinking on or off (its chat template's own switch; --think "
                             "on a model that cannot think is refused).")(func)


def show_thought(piece: str) -> None:
    """Print a piece of the model's thinking dimmed (plain when stdout is no terminal, NO_COLOR is set or
    TERM=dumb)."""
    echo_styled(piece, dim=True, nl=False)


def collect_options(max_tokens, temperature, top_p, seed, stop, ignore_eos=None) -> dict:
    return {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
            "stop": list(stop) or None, "ignore_eos": ignore_eos or None}


def read_prompt(words: tuple[str, ...]) -> str:
    if words and words != ("-",):
        prompt = " ".join(words)
        # as an empty stdin: a model given nothing to answer writes until the context is full
        if not prompt.strip():
            raise CLIError("the prompt given as an argument is empty")
        return prompt
    if not words and sys.stdin.isatty():
        raise CLIError("no prompt: give it as an argument, pipe it in, or use `jan chat` to talk")
    lenient_stdin()
    prompt = replace_undecodable(sys.stdin.read())  # a stdin that keeps lone surrogates all the same
    if not prompt.strip():
        raise CLIError("the prompt read from stdin is empty")
    # `echo TEXT |` ends the text with a newline nobody typed as part of the prompt; for a --raw completion it
    # would be the text to continue from. One is dropped, as llama.cpp's own CLI does for a prompt file (-f);
    # more than one was meant.
    return prompt[:-2] if prompt.endswith("\r\n") else prompt[:-1] if prompt.endswith("\n") else prompt


@click.command()
@click.argument("model", callback=nonempty_param)
@click.argument("prompt", nargs=-1, callback=text_param)
@click.option("--system", "-s", default=None, callback=text_param, help="System prompt (chat mode).")
@click.option("--raw", is_flag=True, help="Complete PROMPT as plain text instead of chatting (no chat template: "
              "--system, --think, --show-reasoning, --image and --audio are chat's).")
@click.option("--suffix", default=None, callback=text_param,
              help="With --raw: fill in the middle, for code models with fill-in-the-middle tokens: PROMPT is the "
                   "text before the gap, this the text after it, and the answer is what goes between.")
@click.option("--image", "-i", "images", multiple=True, type=MediaSource(),
              help="An image (PNG, JPEG, WebP, GIF) to ask about, for models with a projector (repeatable): a file, "
                   "or an http(s):// or file:// link that --allow-media-from allows.")
@click.option("--audio", "-a", "clips", multiple=True, type=PathParam(),
              help="An audio clip (WAV, MP3, FLAC) to ask about, for models whose projector hears audio (repeatable).")
@sampling_options
@load_options
@lora_options(LORA_APPLIES)
@speed_options(SPEED_APPLIES)
@click.option("--show-reasoning", is_flag=True,
              help="Also print the model's thinking (dimmed on a terminal) before the answer; hidden by default.")
@think_option
@allow_media_option("Without a server (a server fetches with its own `jan serve --allow-media-from`): fetch the "
                    "images --image links to")
@click.option("--verbose", "-v", is_flag=True, help="Print timings and token counts to stderr.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the whole answer as one JSON document when it ends, OpenAI's chat.completion (with --raw "
                   "text_completion) shape: object, model, choices, usage; the same with or without a server.")
@connection_options
def run(model, prompt, system, raw, suffix, images, clips, max_tokens, temperature, top_p, seed, stop, ignore_eos, n_ctx, n_threads,
        n_gpu_layers, image_min_tokens, image_max_tokens, lora, lora_scaled, show_reasoning, think, allow_media_from,
        verbose, as_json, conn, **speed) -> None:
    """Answer one PROMPT with MODEL and exit.

    MODEL is a model id (see `jan models list`) or a path to a .gguf file.
    PROMPT is read from stdin when it is `-`, or when it is left out and
    stdin is a pipe (one trailing newline dropped, as `echo` adds it). Only the
    answer goes to stdout, so `jan run` pipes well:

        echo "Once upon a time" | jan run stories260K --raw -n 30 > story.txt

    With --image, the model (one with a projector, see `jan models import --mmproj`) is asked
    about the images:

        jan run llava "What is in this picture?" --image photo.jpg

    With --audio, a model whose projector hears audio (Qwen2-Audio, Voxtral, ...) is asked about the clips:

        jan run qwen2-audio "Transcribe audio to text" --audio clip.mp3

    With --raw --suffix, a code model fills in the code between PROMPT and the suffix:

        jan run qwen2.5-coder --raw "def add(a, b):" --suffix "print(add(1, 2))"
    """
    if suffix is not None and not raw:
        # (a chat has no gap to fill: the suffix would be dropped, or sent as a field the chat API does not read)
        raise click.UsageError("--suffix fills in the middle of a plain completion: give --raw too")
    if raw and system:
        raise click.UsageError("--system applies to chat; with --raw the prompt is completed as it is")
    if raw and (think is not None or show_reasoning):
        # a plain completion has no chat template to switch thinking in, and no thinking told apart from the text:
        # the flag did nothing, silently (`--raw --think` on a model that cannot think was not even refused)
        flag = "--show-reasoning" if think is None else "--think" if think else "--no-think"
        raise click.UsageError(f"{flag} applies to chat; with --raw the prompt is completed as it is (no chat "
                               "template, no thinking told apart)")
    if raw and (images or clips):
        raise click.UsageError(f"{'--image' if images else '--audio'} applies to chat; a --raw prompt has no place "
                               "for media")
    adapters = lora_flags(lora, lora_scaled)  # (before the prompt is read: a bad flag is said at once)
    text = read_prompt(prompt)
    # a linked image is fetched as the request is made (the local runtime's fetcher, or the server's), each refused
    # unless an --allow-media-from entry allows it
    conn.allow_media_from = media_allowed_here(conn, allow_media_from)
    try:
        parts = [image_link_part(path) if isinstance(path, str) and is_media_link(path) else image_part(path)
                 for path in images]
    except CLIError as exc:  # named by its option, as every path option's error is (PathParam)
        raise CLIError(f"--image: {exc.format_message()}") from None
    try:
        sounds = [audio_part(path) for path in clips]
    except CLIError as exc:
        raise CLIError(f"--audio: {exc.format_message()}") from None
    options = collect_options(max_tokens, temperature, top_p, seed, stop, ignore_eos)
    if think is not None and not raw:
        options["think"] = think
    conn.keeps_nothing = True  # (an answer on stdout: no thread saved, so no data folder made for one)
    # a model that takes no images is refused before it loads
    backend = open_backend(conn, model, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers,
                           image_min_tokens=image_min_tokens, image_max_tokens=image_max_tokens, lora=adapters,
                           images=bool(parts), audio=bool(sounds), think=None if raw else think, **speed)
    if verbose:
        where = (f"server {conn.url}" if backend.path is None
                 else f"{backend.path} (loaded in {backend.load_seconds:.2f} s)")
        click.echo(f"jan: model {backend.model_id} from {where}", err=True)
    started = time.perf_counter()
    try:
        if raw:
            generation = backend.complete(text, options, suffix=suffix)
        else:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_content(text, parts + sounds)}]
            generation = backend.chat(messages, options)
        if as_json:
            answer, thoughts = [], []
            try:
                for piece in generation:
                    (thoughts if getattr(piece, "reasoning", False) else answer).append(piece)
            except KeyboardInterrupt:  # (nothing printed: a script reads no half document)
                generation.cancel()
                raise
            print_json(completion_object(backend.model_id, generation, "".join(answer), "".join(thoughts), raw=raw))
            if verbose:
                report(generation, time.perf_counter() - started)
            return
        last = ""
        out = sys.stdout
        try:
            thinking = False
            for piece in generation:
                if getattr(piece, "reasoning", False):
                    if show_reasoning:
                        show_thought(piece)
                        thinking = True
                    continue
                if thinking:
                    out.write("\n\n")
                    thinking = False
                out.write(piece)
                out.flush()
                last = piece
        except KeyboardInterrupt:
            generation.cancel()
            out.write("\n")
            out.flush()
            raise
        except CLIError:  # cut off (a server that stopped): the error goes on its own line at a terminal
            if last and not last.endswith("\n"):
                out.write("\n")
                out.flush()
            raise
        if not last.endswith("\n"):
            out.write("\n")
            out.flush()
        if verbose:
            report(generation, time.perf_counter() - started)
    except (CLIError, MediaError) as exc:  # a clip or image the model could not take (or a link not allowed or not
        # fetched): said of its option and path
        said = exc if isinstance(exc, CLIError) else CLIError(str(exc))
        raise media_named(said, 1 if system else 0, bool(text), [("--image", p) for p in images] +
                          [("--audio", p) for p in clips]) from None
    finally:
        backend.close()


def completion_object(model_id: str, generation, text: str, reasoning: str, *, raw: bool) -> dict[str, Any]:
    """`jan run --json`'s document: an ended ``generation``'s answer in the shape of OpenAI's non-streamed
    ``chat.completion`` (``raw``: ``text_completion``) as jan's server answers it: ``object``, ``created`` (seconds),
    ``model``, one choice (``message`` with ``content``, ``reasoning_content`` where the model thought,
    ``tool_calls`` where it called; or ``text``) with its ``finish_reason``, and ``usage`` as OpenAI counts it
    (``prompt_tokens``, ``completion_tokens``, ``total_tokens``; a chat's ``completion_tokens_details.reasoning_tokens``,
    how many of them went to thinking). Built here from the generation's own fields, the same whether a server or
    this process answered."""
    choice: dict[str, Any] = {"index": 0}
    if raw:
        choice["text"] = text
    else:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        if generation.tool_calls:
            message["tool_calls"] = generation.tool_calls
        choice["message"] = message
    choice["finish_reason"] = generation.finish_reason
    u = generation.usage or {}
    prompt, completion = u.get("prompt_tokens"), u.get("completion_tokens")
    usage = None
    if isinstance(prompt, int) and isinstance(completion, int):
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
        if isinstance(cached, int):  # the prompt's prefix the KV cache held, as the server tells it
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        thought = (u.get("completion_tokens_details") or {}).get("reasoning_tokens")
        if not raw and isinstance(thought, int):
            # as the server's chat completion tells them (a reply that thought long and answered little)
            usage["completion_tokens_details"] = {"reasoning_tokens": thought}
    return {"object": "text_completion" if raw else "chat.completion", "created": int(time.time()),
            "model": model_id, "choices": [choice], "usage": usage}


def media_named(exc: CLIError, message: int, has_text: bool, media: list[tuple[str, Any]]) -> CLIError:
    """``exc`` with the request field of a media part (``messages[0].content[1]``: the engine's or the server's
    words, of a message the user never wrote) named as the option and path that gave it (``--audio 'clip.mp3'``):
    a clip whose header reads as MP3 but whose frames do not decode is found only as the model reads it."""
    text = exc.format_message()
    for k, (option, path) in enumerate(media):
        field = f"messages[{message}].content[{k + has_text}]"
        if field in text:
            return CLIError(text.replace(field, f"{option} '{path}'"), exc.exit_code)
    return exc


def report(generation, seconds: float) -> None:
    u = generation.usage or {}
    parts = [f"finish: {generation.finish_reason or '?'}"]
    if "prompt_tokens" in u:
        parts.append(f"prompt: {u['prompt_tokens']} tokens")
        # the time is that of the tokens evaluated: those reused from the KV cache took none
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        evaluated = u["prompt_tokens"] - cached
        if cached:
            parts[-1] += f" ({cached} cached)"
        if u.get("prompt_ms") and evaluated > 0:
            parts[-1] += f" in {u['prompt_ms'] / 1000:.2f} s ({evaluated / (u['prompt_ms'] / 1000):.1f} t/s)"
    if "completion_tokens" in u:
        parts.append(f"answer: {u['completion_tokens']} tokens")
        if u.get("tokens_per_second"):
            parts[-1] += f" ({u['tokens_per_second']:.1f} t/s)"
        # speculative decoding (the local usage and a server's OpenAI usage say it alike)
        details = u.get("completion_tokens_details") or {}
        accepted, rejected = details.get("accepted_prediction_tokens"), details.get("rejected_prediction_tokens")
        if details.get("reasoning_tokens"):
            parts[-1] += f", {details['reasoning_tokens']} of them thinking"
        if accepted or rejected:
            parts[-1] += f", drafts: {accepted or 0} of {(accepted or 0) + (rejected or 0)} accepted"
    parts.append(f"total {seconds:.2f} s")
    click.echo("jan: " + ", ".join(parts), err=True)
