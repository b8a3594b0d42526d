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

int32_t Scheduler::draft_limit(const Slot & slot, int32_t room, size_t cache_size) const {
    const SamplingParams & p = slot.params;
    if (p.draft_max <= 0 || room <= 0) return 0;
    // `cache_size` counts the pending token. Drafts need cells in the slot's
    // context, and are useless past the tokens the request may still emit
    // (the pending token's successor plus one per accepted draft).
    int32_t n_max = std::min(p.draft_max, room);
    n_max = std::min<int32_t>(n_max, params_.n_ctx - (int32_t)cache_size);
    if (p.max_tokens >= 0) n_max = std::min(n_max, p.max_tokens - slot.n_generated - 1);
    if (n_max <= 0 || n_max < p.draft_min) return 0;
    return n_max;
}

std::vector<llama_token> Scheduler::plan_draft(Slot & slot, int32_t room) {
    slot.draft.clear();
    // slot.cache already ends with the pending token.
    const int32_t n_max = draft_limit(slot, room, slot.cache.size());
    if (n_max > 0) {
        if (slot.params.use_draft_model) {
            slot.draft.swap(slot.model_draft);
            if ((int32_t)slot.draft.size() > n_max) slot.draft.resize(n_max);
        } else {
            slot.draft = ngram_draft(slot.cache, slot.params.ngram, n_max);
        }
    }
    slot.model_draft.clear();
    if ((int32_t)slot.draft.size() < std::max(1, slot.params.draft_min)) slot.draft.clear();
    return slot.draft;
}

void Scheduler::draft_with_model() {
    // Every generating slot that drafts with the model gets its proposal now, in
    // batched draft-model decodes, before the target batch is built. The exact
    // room in that batch is not known yet: the bound here leaves one entry for
    // every generating slot's pending token, and plan_draft trims to the real room.
    int32_t n_generating = 0;
    for (auto & slot : slots_) n_generating += slot.state == SlotState::Generate;
    std::vector<DraftModel::Job> jobs;
    std::vector<Slot *> owners;
    for (auto & slot : slots_) {
        slot.model_draft.clear();
        // (a slot of another LoRA group has no place in this step's batch)
        if (slot.state != SlotState::Generate || !slot.in_step || !slot.params.use_draft_model) continue;
        // [media] the draft model cannot see image/audio chunks: such slots go without drafts
        if (!slot.cache_media.empty() || !slot.prompt_media.empty()) continue;
        const int32_t n_max = draft_limit(slot, params_.n_batch - n_generating, slot.cache.size() + 1);
        if (n_max <= 0 || n_max < slot.params.draft_min) continue;
        slot.cache.push_back(slot.next_token);  // the draft continues after the pending token
        DraftModel::Job job;
        job.seq = slot.id;
        job.n_max = n_max;
        job.p_min = slot.params.draft_p_min;
        jobs.push_back(std::move(job));
        owners.push_back(&slot);
    }
    if (jobs.empty()) return;
    for (size_t i = 0; i < jobs.size(); ++i) jobs[i].history = &owners[i]->cache;
    drafter_->draft(jobs);
    for (size_t i = 0; i < jobs.size(); ++i) {
        owners[i]->cache.pop_back();
        owners[i]->model_draft = std::move(jobs[i].out);
    }
}

void Scheduler::verify_draft(Slot & slot) {
    std::vector<llama_token> draft;
    draft.swap(slot.draft);
    const int32_t base = slot.i_batch;
    // The drafts' KV cells are written; they count as the slot's cache only once accepted.
    slot.cache.resize(slot.cache.size() - draft.size());
    slot.n_drafted += (int32_t)draft.size();
    // Counted before sampling: sample_slot may finish the request, and whoever hears the end
    // must already see every draft of it in the metrics.
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.draft_tokens_total += draft.size();
    }
    for (size_t i = 0; i <= draft.size(); ++i) {
        slot.i_batch = base + (int32_t)i;
        sample_slot(slot);  // emits one token; may finish the request
        if (slot.state != SlotState::Generate) break;
        if (i == draft.size() || slot.next_token != draft[i]) break;
        // The sampled token is the draft: its KV is already there, and the
        // logits at its position give the next token.
        slot.cache.push_back(draft[i]);
        slot.n_accepted++;
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.draft_accepted_total++;
    }
    slot.i_batch = -1;
    llama_memory_seq_rm(memory_, slot.id, (llama_pos)slot.cache.size(), -1);
}

}  // namespace jan
