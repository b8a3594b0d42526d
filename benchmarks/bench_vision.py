"""Image prompts: image-encode time and time to first token, jan vs llama-cpp-python's MTMD path.

Both sides load the same tiny random-weight vision pair (``jan.testing.gguf_models.write_vision_pair``:
a LLaVA-style ``mlp`` projector over a 2-block CLIP tower, 64 image tokens, and a 4M-parameter
llama) with the same thread counts, and answer the same chat prompt about the same photo
(``../shared/media/test-1.jpeg``). They take turns, the order alternating every repetition;
medians are reported. A fresh image each repetition (the photo with one pixel changed), so
neither side can reuse an encoding or a cached prefix.

* encode: the vision tower + projector for one image (jan: ``Projector.encode``;
  llama-cpp-python: ``mtmd_encode_chunk``), milliseconds;
* TTFT: prompt (text + image) in, first token sampled (jan: ``Model.stream`` until the first
  chunk; llama-cpp-python: ``MTMDChatHandler`` through ``Llama.create_chat_completion(stream=True)``).

Run: ``python benchmarks/bench_vision.py [--reps 5] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT / "python"))

from jan.testing import gguf_models  # noqa: E402

QUESTION = "What is in this picture?"


def _variants(photo: Path, n: int) -> list[bytes]:
    from PIL import Image

    with Image.open(photo) as im:
        base = im.convert("RGB")
    out = []
    for i in range(n):
        img = base.copy()
        img.putpixel((i % img.width, 0), (i * 37 % 256, 0, 0))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def jan_once(model, png: bytes) -> tuple[float, float]:
    marker = model.media_marker
    prompt = f"<|im_start|>user\n{QUESTION}\n{marker}<|im_end|>\n<|im_start|>assistant\n"
    t0 = time.perf_counter()
    inputs = model.prepare_media([png])
    mp = model._projector.tokenize(prompt, inputs, False, True)
    t_enc = time.perf_counter()
    model._projector.encode(mp)
    encode_ms = (time.perf_counter() - t_enc) * 1000
    request = model.stream(mp, max_tokens=1, temperature=0)
    next(iter(request))
    ttft_ms = (time.perf_counter() - t0) * 1000
    request.result()
    return encode_ms, ttft_ms


def llama_cpp_once(llm, handler, png: bytes) -> tuple[float, float]:
    from llama_cpp import mtmd_cpp

    url = "data:image/png;base64," + base64.b64encode(png).decode()
    messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION},
                                             {"type": "image_url", "image_url": {"url": url}}]}]
    t0 = time.perf_counter()
    stream = llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0, stream=True)
    for _ in stream:
        break
    ttft_ms = (time.perf_counter() - t0) * 1000
    for _ in stream:
        pass
    # the encoder alone, as the handler runs it (mtmd_helper_eval_chunk_single encodes then decodes)
    buf = (ctypes.c_uint8 * len(png)).from_buffer(bytearray(png))
    bitmap = mtmd_cpp.mtmd_helper_bitmap_init_from_buf(handler.mtmd_ctx, buf, len(png), False)
    chunks = mtmd_cpp.mtmd_input_chunks_init()
    text = mtmd_cpp.mtmd_input_text()
    raw = mtmd_cpp.mtmd_default_marker()
    text.text, text.text_len, text.add_special, text.parse_special = raw, len(raw), False, True
    array = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(bitmap)
    mtmd_cpp.mtmd_tokenize(handler.mtmd_ctx, chunks, ctypes.byref(text), array, 1)
    encode_ms = float("nan")
    for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
        chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
        if mtmd_cpp.mtmd_input_chunk_get_type(chunk) != mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
            t1 = time.perf_counter()
            mtmd_cpp.mtmd_encode_chunk(handler.mtmd_ctx, chunk)
            encode_ms = (time.perf_counter() - t1) * 1000
    mtmd_cpp.mtmd_input_chunks_free(chunks)
    mtmd_cpp.mtmd_bitmap_free(bitmap)
    return encode_ms, ttft_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import jan
    import llama_cpp
    from llama_cpp.llama_chat_format import MTMDChatHandler

    photo = gguf_models.models_dir().parent / "media" / "test-1.jpeg"
    with tempfile.TemporaryDirectory() as tmp:
        model_path, mmproj = gguf_models.write_vision_pair(tmp)
        model = jan.Model(model_path, mmproj=mmproj, n_ctx=512, n_threads=args.threads,
                          n_threads_batch=args.threads)
        handler = MTMDChatHandler(clip_model_path=str(mmproj), verbose=False, use_gpu=False)
        llm = llama_cpp.Llama(str(model_path), chat_handler=handler, n_ctx=512, n_threads=args.threads,
                              n_threads_batch=args.threads, verbose=False)
        images = _variants(photo, 2 * args.reps + 2)
        jan_once(model, images[-1])  # warm both sides up
        llama_cpp_once(llm, handler, images[-2])
        jan_r, ref_r = [], []
        for i in range(args.reps):
            pair = [("jan", lambda png: jan_once(model, png)), ("ref", lambda png: llama_cpp_once(llm, handler, png))]
            if i % 2:
                pair.reverse()
            for k, (who, fn) in enumerate(pair):
                (jan_r if who == "jan" else ref_r).append(fn(images[2 * i + k]))
        model.close()
        llm.close()

    def med(rows, k):
        return statistics.median(r[k] for r in rows)

    print(f"image encode: jan {med(jan_r, 0):.2f} ms, llama-cpp-python {med(ref_r, 0):.2f} ms, "
          f"ratio {med(ref_r, 0) / med(jan_r, 0):.2f}x")
    print(f"TTFT (image prompt): jan {med(jan_r, 1):.2f} ms, llama-cpp-python {med(ref_r, 1):.2f} ms, "
          f"ratio {med(ref_r, 1) / med(jan_r, 1):.2f}x")


if __name__ == "__main__":
    main()
