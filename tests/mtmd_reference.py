"""llama-cpp-python's own multimodal path (libmtmd through its ctypes bindings): the reference jan's engine is
checked against, for images (tests/test_engine_vision.py) and audio (tests/test_engine_audio.py)."""

from __future__ import annotations

import ctypes

import numpy as np


def llama_cpp_mtmd_greedy(model_path, mmproj, prompt: str, images: list[bytes], n: int,
                          n_ctx: int = 512) -> list[int]:
    """Greedy tokens from llama-cpp-python's mtmd bindings: mtmd_tokenize, mtmd_helper_eval_chunks,
    then one llama_decode per sampled token (argmax of the raw logits). ``images``: the media files' bytes, in
    prompt order (libmtmd's helper tells an image from an audio clip by its bytes)."""
    import llama_cpp
    from llama_cpp import mtmd_cpp

    llm = llama_cpp.Llama(str(model_path), n_ctx=n_ctx, n_batch=512, n_threads=1, n_threads_batch=1, verbose=False)
    params = mtmd_cpp.mtmd_context_params_default()
    params.use_gpu = False
    params.n_threads = 1
    params.print_timings = False
    mctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), llm.model, params)
    assert mctx, "llama-cpp-python could not load the mmproj"
    bitmaps, chunks = [], None
    try:
        for data in images:
            buf = (ctypes.c_uint8 * len(data)).from_buffer(bytearray(data))
            bitmap = mtmd_cpp.mtmd_helper_bitmap_init_from_buf(mctx, buf, len(data), False)
            assert bitmap, "llama-cpp-python could not decode the media"
            bitmaps.append(bitmap)
        text = mtmd_cpp.mtmd_input_text()
        raw = prompt.encode()
        text.text, text.text_len, text.add_special, text.parse_special = raw, len(raw), True, True
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        array = (mtmd_cpp.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
        assert mtmd_cpp.mtmd_tokenize(mctx, chunks, ctypes.byref(text), array, len(bitmaps)) == 0
        n_past = llama_cpp.llama_pos(0)
        assert mtmd_cpp.mtmd_helper_eval_chunks(mctx, llm._ctx.ctx, chunks, 0, 0, 512, True,
                                                ctypes.byref(n_past)) == 0
        llm.n_tokens = n_past.value  # Llama.eval places the next token after what the helper evaluated
        out = []
        n_vocab = llm.n_vocab()
        for _ in range(n):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
            token = int(np.argmax(logits))
            out.append(token)
            llm.eval([token])
        return out
    finally:
        if chunks is not None:
            mtmd_cpp.mtmd_input_chunks_free(chunks)
        for bitmap in bitmaps:
            mtmd_cpp.mtmd_bitmap_free(bitmap)
        mtmd_cpp.mtmd_free(mctx)
        llm.close()
