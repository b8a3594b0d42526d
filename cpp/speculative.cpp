#include "speculative.h"

#include <algorithm>

#include "scheduler.h"

namespace jan {

std::vector<llama_token> ngram_draft(const std::vector<llama_token> & history, int32_t ngram, int32_t n_max) {
    if (ngram <= 0 || n_max <= 0 || history.size() <= (size_t)ngram) return {};
    const size_t len = history.size();
    const auto tail = history.begin() + (ptrdiff_t)(len - ngram);
    // Most recent occurrence first: in generated text the latest context predicts best.
    for (size_t s = len - ngram; s-- > 0;) {
        if (!std::equal(tail, history.end(), history.begin() + (ptrdiff_t)s)) continue;
        const size_t from = s + ngram;
        const size_t take = std::min<size_t>((size_t)n_max, len - from);
        return {history.begin() + (ptrdiff_t)from, history.begin() + (ptrdiff_t)(from + take)};
    }
    return {};
}

std::vector<llama_token> Scheduler::plan_draft(Slot & slot, int32_t room) {
    slot.draft.clear();
    const SamplingParams & p = slot.params;
    if (p.draft_max <= 0 || room <= 0) return {};
    // slot.cache already ends with the pending token. Drafts need cells in the
    // slot's context, and are useless past the tokens the request may still emit
    // (the pending token's successor plus one per accepted draft).
    int32_t n_max = std::min(p.draft_max, room);
    n_max = std::min<int32_t>(n_max, params_.n_ctx - (int32_t)slot.cache.size());
    if (p.max_tokens >= 0) n_max = std::min(n_max, p.max_tokens - slot.n_generated - 1);
    if (n_max <= 0 || n_max < p.draft_min) return {};
    slot.draft = ngram_draft(slot.cache, p.ngram, n_max);
    if ((int32_t)slot.draft.size() < std::max(1, p.draft_min)) slot.draft.clear();
    return slot.draft;
}

void Scheduler::verify_draft(Slot & slot) {
    std::vector<llama_token> draft;
    draft.swap(slot.draft);
    const int32_t base = slot.i_batch;
    // The drafts' KV cells are written; they count as the slot's cache only once accepted.
    slot.cache.resize(slot.cache.size() - draft.size());
    slot.n_drafted += (int32_t)draft.size();
    int32_t accepted = 0;
    for (size_t i = 0; i <= draft.size(); ++i) {
        slot.i_batch = base + (int32_t)i;
        sample_slot(slot);  // emits one token; may finish the request
        if (slot.state != SlotState::Generate) break;
        if (i == draft.size() || slot.next_token != draft[i]) break;
        // The sampled token is the draft: its KV is already there, and the
        // logits at its position give the next token.
        slot.cache.push_back(draft[i]);
        slot.n_accepted++;
        accepted++;
    }
    slot.i_batch = -1;
    llama_memory_seq_rm(memory_, slot.id, (llama_pos)slot.cache.size(), -1);
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.draft_tokens_total += draft.size();
    metrics_.draft_accepted_total += (uint64_t)accepted;
}

}  // namespace jan
