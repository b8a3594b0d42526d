// Running a call on a thread whose stack grows with its input, for llama.cpp code that recurses once per
// character of it: the pre-tokenizer regexes without a hand-written splitter (DeepSeek LLM/V3, o200k for gpt-oss,
// Tekken, ...) fall back to libstdc++'s std::regex, whose backtracking executor recurses per character of a run
// (ggml-org/llama.cpp#26965, #27783). A 30,000-letter word — a pasted base64 blob — overflowed the 8 MiB stack of
// the calling thread and killed the process (a server with it) with SIGSEGV.
#pragma once

#include <cstddef>
#include <functional>

namespace jan {

// Text of at most this many bytes is tokenized on the caller's stack (a few hundred bytes of stack per byte of
// a run at worst: well inside any thread's stack).
constexpr size_t kShallowTextBytes = 4096;

// Stack reserved per byte of text on the deep-stack thread: measured ~200-300 bytes per character of a run of
// letters, digits, spaces or punctuation for DeepSeek LLM's regexes; twice that for margin. Only the pages used
// are ever touched (the reservation is address space).
constexpr size_t kStackBytesPerTextByte = 640;

// The most stack reserved (a run of ~1.6 million characters of one class): a text of tens of megabytes on a
// vocabulary tokenized without std::regex must not fail for want of address space it will never use.
constexpr size_t kMaxStackBytes = size_t(1) << 30;

// fn() run on a thread with `stack_bytes` of stack, its exception rethrown here; the caller blocks until it ends.
// Where no such thread can be made (address space, thread limits), fn() runs on the caller's thread.
void run_with_stack(size_t stack_bytes, const std::function<void()> & fn);

// fn() on the calling thread for text of at most kShallowTextBytes, else on a thread with a stack sized for it.
void run_for_text(size_t text_bytes, const std::function<void()> & fn);

}  // namespace jan
