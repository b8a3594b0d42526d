"""Choosing the context size to fit free memory (as llama-server's ``--fit``).

When a model is loaded without ``n_ctx``, jan wants its default context (the
model's training context, at most :data:`DEFAULT_MAX_CTX`) for every slot. The
weights are loaded first; the KV cache is the part that grows with the context,
so the default is kept when that cache fits in the memory left free, and
otherwise shrunk to the largest multiple of :data:`CTX_STEP` that does. An
explicit ``n_ctx`` is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from jan.errors import CTX_LEN, Advice, ContextFitError

#: The default context per slot when the model's training context is larger (tokens).
DEFAULT_MAX_CTX = 4096
#: Fitted contexts are multiples of this (llama.cpp pads contexts to 256 cells).
CTX_STEP = 256
#: The smallest context a fit may choose; less memory than this needs is a load error.
MIN_FIT_CTX = 256
#: Memory left free beside the KV cache: llama.cpp's compute buffers, the
#: server, and the rest of the machine (llama-server's --fit-target is 1 GiB per device).
HEADROOM_BYTES = 512 * 1024 * 1024


def free_memory_bytes() -> int:
    """Memory the system can hand out now without swapping (``psutil``'s ``available``), in bytes."""
    import psutil

    return int(psutil.virtual_memory().available)


def memory_total_bytes(*, swap: bool = True) -> int:
    """All the memory a KV cache could ever be made in, in bytes: the machine's RAM and every GPU/accelerator
    device's own memory, as llama.cpp's ``ggml_backend_dev_memory`` reports them (its CPU device gives the
    physical RAM: ``sysconf`` on POSIX, ``GlobalMemoryStatusEx`` on Windows), and with ``swap`` the swap space
    (``psutil``). A cache larger than this can never load, whatever else is freed.

    ``swap=False`` reads nothing but llama.cpp, already loaded: a cache within it needs no swap reading, and
    psutil stays unimported (0.8 MiB resident that a server of a model loaded with ``n_ctx`` would carry only
    for this check; ``free_memory_bytes`` imports it where a context is fitted)."""
    from jan import _engine

    devices = _engine.system_info()["devices"]
    total = sum(int(d["memory_total"]) for d in devices if d["type"] in ("cpu", "gpu", "accel"))
    if not swap:
        return total
    import psutil

    return total + int(psutil.swap_memory().total)


#: Host memory llama.cpp keeps for each KV cell beside the cache's own tensors, in bytes: its cell bookkeeping
#: (``llama_kv_cells``: a position, a pending shift, the 2-D position and token of ``llama_kv_cell_ext``, and a
#: 256-bit set of the sequences holding the cell). Negligible at common contexts, it outgrows the cache of a
#: small model at large ones (32 bytes a cell for llama-2-tiny-random's whole cache).
CELL_BOOKKEEPING_BYTES = 52


def host_memory_free_bytes() -> int:
    """Memory a new allocation can take now before the kernel's OOM killer steps in, in bytes: the RAM the system
    can hand out (``MemAvailable``) and the swap still free. Linux's ``/proc/meminfo`` is read directly rather than
    through psutil (which reads the same file), so that checking an explicit context imports nothing a server would
    carry for its whole life (see :func:`memory_total_bytes`); psutil elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return (int(fields["MemAvailable"].split()[0]) + int(fields.get("SwapFree", "0 kB").split()[0])) * 1024
    except (OSError, KeyError, ValueError):
        import psutil

        return int(psutil.virtual_memory().available) + int(psutil.swap_memory().free)


#: The host-memory prompt cache's largest default (MiB): llama-server's ``--cache-ram``.
PROMPT_CACHE_MAX_MIB = 8192


def default_prompt_cache_mib() -> int:
    """The host-memory prompt cache's default size in MiB (``jan.Model``'s ``cache_ram_mib`` when not given):
    llama-server's 8192, but at most a quarter of the machine's RAM (llama.cpp's CPU device's total), since the
    cache grows with the conversations a server has seen, and a laptop serving a model must not swap for old ones;
    8192 where llama.cpp does not tell the RAM."""
    from jan import _engine

    ram = sum(int(d["memory_total"]) for d in _engine.system_info()["devices"] if d["type"] == "cpu")
    return min(PROMPT_CACHE_MAX_MIB, ram // 4 // 2**20) if ram > 0 else PROMPT_CACHE_MAX_MIB


@dataclass(frozen=True)
class ContextFit:
    """The chosen context: ``n_ctx`` tokens per slot; ``fitted`` when it is below ``wanted``."""

    n_ctx: int
    wanted: int
    kv_bytes: int      # KV cache of all slots at n_ctx (target and draft model)
    free_bytes: int    # what was free when it was chosen

    @property
    def fitted(self) -> bool:
        return self.n_ctx < self.wanted


def fit_n_ctx(wanted: int, n_parallel: int, kv_bytes_per_cell: float, free_bytes: int,
              headroom: int = HEADROOM_BYTES) -> ContextFit:
    """The largest context per slot, at most ``wanted``, whose KV cache for ``n_parallel`` slots
    fits in ``free_bytes - headroom``. ``kv_bytes_per_cell``: bytes one token of context takes in
    one slot (all layers, K and V; the draft model's too). Raises :class:`~jan.errors.ContextFitError`
    (a :class:`~jan.ModelLoadError` and a 400 on the server) when not even :data:`MIN_FIT_CTX` tokens fit."""
    cells = max(1, int(n_parallel))
    if kv_bytes_per_cell <= 0:  # no cache there (a recurrent model; no layer on this device): nothing to fit
        return ContextFit(wanted, wanted, 0, free_bytes)

    def need(n_ctx: int) -> int:
        return int(n_ctx * cells * kv_bytes_per_cell)

    budget = free_bytes - headroom
    if need(wanted) <= budget:
        return ContextFit(wanted, wanted, need(wanted), free_bytes)
    n_ctx = (int(budget / (cells * kv_bytes_per_cell)) // CTX_STEP * CTX_STEP) if budget > 0 else 0
    n_ctx = min(n_ctx, wanted)
    if n_ctx < min(MIN_FIT_CTX, wanted):
        mib = 1024 * 1024
        smallest = min(MIN_FIT_CTX, wanted)
        # the advice as data: each front end names the context setting its own way (ctx_len, -c/--ctx-size)
        raise ContextFitError("", code="context_too_large").advise(
            f"not enough free memory for the KV cache: {smallest} tokens of context for {cells} slot(s) need "
            f"{need(smallest) / mib:.0f} MiB plus {headroom / mib:.0f} MiB headroom, and {free_bytes / mib:.0f} MiB "
            f"are free", Advice(CTX_LEN, f"set {{setting}} below {smallest}, or use fewer slots or a quantized "
                                         "KV cache type", name="n_ctx"))
    return ContextFit(n_ctx, wanted, need(n_ctx), free_bytes)
