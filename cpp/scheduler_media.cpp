// The scheduler's media step: image/audio embeddings of prefilling slots.
//
// llama_decode takes either token ids or embeddings, never both in one
// batch, so media chunks get their own decode call each engine step — one
// chunk of one slot (the oldest request first), at most n_batch rows, or the
// whole chunk when the model attends over an image non-causally. Text of
// every slot, including the text after this chunk, still goes into the
// step's one token batch, so generation never waits for more than one
// media decode per step.
#include <algorithm>
#include <chrono>

#include "scheduler.h"
#include "step_threads.h"

namespace jan {

void Scheduler::decode_media_step() {
    Slot * slot = nullptr;
    const MediaSpan * span = nullptr;
    for (auto & s : slots_) {
        // (only slots of this step's LoRA group: the decode runs under its scales)
        if (s.state != SlotState::Prefill || !s.in_step || s.prompt_media.empty()) continue;
        const MediaSpan * at = s.prompt_media.containing(s.prompt_done);
        if (at && (!slot || s.t_submitted < slot->t_submitted)) {
            slot = &s;
            span = at;
        }
    }
    if (!slot) return;

    const auto held = span->chunk;  // finish() below clears the slot's prompt and its spans
    const MediaChunk & chunk = *held;
    const int32_t first = (int32_t)(slot->prompt_done - span->start);
    const int32_t left = chunk.n_tokens - first;
    const int32_t n = chunk.non_causal ? left : std::min<int32_t>(params_.n_batch, left);
    const size_t start = span->start, end = span->end();
    if (first == 0) slot->cache_media.add(slot->cache.size(), held);
    // The cache holds the prompt up to this chunk, so its position is where the chunk starts.
    const llama_pos pos_0 = slot->cache_media.pos_at(start);
    const int32_t n_sections = chunk.mrope ? 4 : 1;
    std::vector<llama_pos> pos = chunk.positions(pos_0, first, n, n_sections);
    std::vector<int32_t> n_seq_id((size_t)n, 1);
    std::vector<llama_seq_id> seq_ids((size_t)n, slot->id);
    std::vector<llama_seq_id *> seq_ptrs((size_t)n);
    for (int32_t i = 0; i < n; ++i) seq_ptrs[i] = &seq_ids[i];
    std::vector<int8_t> logits((size_t)n, 0);
    // A prompt that ends with media samples its first token from the last embedding.
    const bool ends_prompt = first + n == chunk.n_tokens && end == slot->prompt.size();
    if (ends_prompt) logits[n - 1] = 1;

    llama_batch batch{};
    batch.n_tokens = n;
    batch.embd = const_cast<float *>(chunk.embd->data() + (size_t)first * chunk.n_embd);
    batch.pos = pos.data();
    batch.n_seq_id = n_seq_id.data();
    batch.seq_id = seq_ptrs.data();
    batch.logits = logits.data();

    // as many threads as a text step of these tokens is worth (step_threads.h); the last text step may have
    // taken fewer
    const double work = (double)n * token_work(n_params_, n_layer_, n_embd_, slot->cache.size() + (size_t)n);
    set_step_threads(n == 1 ? threads_for_work(work, governor_->n_threads()) : governor_->n_threads(),
                     threads_for_work(work, governor_->n_threads_batch()));
    const auto t0 = std::chrono::steady_clock::now();
    if (chunk.non_causal) llama_set_causal_attn(ctx_.get(), false);
    const int32_t rc = llama_decode(ctx_.get(), batch);
    if (chunk.non_causal) llama_set_causal_attn(ctx_.get(), true);
    const auto t1 = std::chrono::steady_clock::now();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.decode_calls++;
        metrics_.decode_seconds += std::chrono::duration<double>(t1 - t0).count();
        if (rc == 0) metrics_.prompt_tokens_total += (uint64_t)n;
    }
    // (media tokens are prompt tokens here, so their decode is prompt processing time too)
    if (rc == 0) queue_prompt_time((uint64_t)n, t0);
    if (rc != 0) {
        llama_memory_seq_rm(memory_, slot->id, -1, -1);
        slot->cache.clear();
        slot->cache_media.clear();
        finish(*slot, "error", std::string("llama_decode failed on ") + (chunk.audio ? "audio" : "image") +
                                   " embeddings (code " + std::to_string(rc) + ")");
        return;
    }
    slot->cache.insert(slot->cache.end(), (size_t)n, LLAMA_TOKEN_NULL);
    slot->prompt_done += (size_t)n;
    if (ends_prompt) {
        slot->i_batch = n - 1;
        try {
            sample_slot(*slot);
        } catch (const std::exception & e) {
            if (slot->state != SlotState::Idle) finish(*slot, "error", e.what());
        }
        settle_prompt_time();  // (sampling read the output: the prompt's decodes are done)
    }
}

}  // namespace jan
