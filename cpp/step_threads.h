// How many threads one llama_decode step is worth, from the work it holds.
//
// Why: llama.cpp's CPU backend splits every op of a graph over all the threads it is given, which
// then meet at a barrier after each op. A step too small to split still pays those barriers, and
// each thread beyond the first is a core the rest of the process (the event loop writing tokens out,
// the next request's tokenizer) and the client cannot have. Measured on the 2-core benchmark host
// (2026-12-03, llama-bench of the llama.cpp jan links): stories260K generates 3,178 t/s on 1 thread
// and 2,925 on 2 (one token is ~0.3 M multiply-adds), while 8- and 32-token prompt steps gain only
// 9% and 30% from the second thread; Gemma 3 270M (268 M parameters) generates 25.6 t/s on 1 thread
// and 42.1 on 2. Served, where the event loop and the client share the cores, stories260K on 1
// thread gave 1,257 t/s on one stream (2 threads: 1,038; llama-server on 2: 1,182) and 1,714 over
// 8 streams (1,464; llama-server 1,673), and a 4-token stream's first token came in 2.5 ms
// instead of 4.3.
//
// The estimate: each token of a step costs the model's parameters (one multiply-add each; an
// overcount for the embedding table and for experts left idle, which only errs towards more threads)
// plus its attention over the cells before it (QK^T and the weighted sum of V: 2 x n_embd per cell
// per layer). A thread is worth it for every kWorkPerThread of that. The count depends only on the
// step, not on the load, so it keeps a greedy request's output the same under any load
// (thread_governor.h, "Outputs").
#pragma once

#include <algorithm>
#include <cstdint>

namespace jan {

// Multiply-adds one thread is given before a step takes another: above a few stories260K tokens,
// below one token of any model of tens of millions of parameters.
constexpr double kWorkPerThread = 4.0 * 1024 * 1024;

// Multiply-adds of one token that attends to `n_cells` KV cells (its own included).
inline double token_work(uint64_t n_params, int32_t n_layer, int32_t n_embd, size_t n_cells) {
    return (double)n_params + 2.0 * (double)n_layer * (double)n_embd * (double)n_cells;
}

// Threads for a step of `work` multiply-adds, between 1 and `n_max`.
inline int32_t threads_for_work(double work, int32_t n_max) {
    if (n_max <= 1) return std::max<int32_t>(n_max, 1);
    const double worth = work / kWorkPerThread;
    if (worth >= (double)n_max) return n_max;
    return std::max<int32_t>(1, (int32_t)worth);
}

}  // namespace jan
