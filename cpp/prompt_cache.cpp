#include "prompt_cache.h"

#include <algorithm>
#include <new>

namespace jan {

namespace {

size_t shared_prefix(const std::vector<llama_token> & saved, const std::vector<llama_token> & prompt) {
    const size_t n = std::min(saved.size(), prompt.size());
    size_t i = 0;
    while (i < n && saved[i] == prompt[i] && prompt[i] != LLAMA_TOKEN_NULL) ++i;
    return i;
}

}  // namespace

void PromptCache::drop(std::list<Entry>::iterator it) {
    bytes_ -= it->state.size();
    entries_.erase(it);
}

void PromptCache::save(llama_context * ctx, llama_seq_id seq, const std::vector<llama_token> & tokens,
                       const std::vector<float> & lora) {
    if (!enabled() || tokens.empty()) return;
    for (const auto & e : entries_)
        if (e.lora == lora && shared_prefix(e.tokens, tokens) == tokens.size()) return;  // held already
    const size_t size = llama_state_seq_get_size_ext(ctx, seq, LLAMA_STATE_SEQ_FLAGS_NONE);
    if (size == 0 || (limit_ > 0 && size > (uint64_t)limit_)) return;
    for (auto it = entries_.begin(); it != entries_.end();) {
        auto next = std::next(it);
        if (it->lora == lora && shared_prefix(it->tokens, tokens) == it->tokens.size()) drop(it);  // these continue it
        it = next;
    }
    while (!entries_.empty() && (entries_.size() >= kMaxPrompts || (limit_ > 0 && bytes_ + size > (uint64_t)limit_)))
        drop(entries_.begin());
    Entry entry;
    try {
        entry.state.resize(size);
        entry.tokens = tokens;
        entry.lora = lora;
    } catch (const std::bad_alloc &) {
        return;  // the host is short of memory: the conversation is not kept, nothing else fails
    }
    if (llama_state_seq_get_data_ext(ctx, entry.state.data(), size, seq, LLAMA_STATE_SEQ_FLAGS_NONE) != size) return;
    bytes_ += size;
    entries_.push_back(std::move(entry));
}

std::list<PromptCache::Entry>::const_iterator PromptCache::best(const std::vector<llama_token> & prompt,
                                                               size_t than, const std::vector<float> & lora,
                                                               size_t * prefix) const {
    auto found = entries_.end();
    size_t longest = than;
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->lora != lora) continue;  // KV of other LoRA scales is no prefix of this prompt's
        const size_t p = shared_prefix(it->tokens, prompt);
        if (continues_prefix(p, it->tokens.size(), prompt.size()) && p > longest) {
            longest = p;
            found = it;
        }
    }
    *prefix = found == entries_.end() ? 0 : longest;
    return found;
}

size_t PromptCache::best_prefix(const std::vector<llama_token> & prompt, size_t than,
                                const std::vector<float> & lora) const {
    size_t prefix = 0;
    best(prompt, than, lora, &prefix);
    return prefix;
}

bool PromptCache::restore(llama_context * ctx, llama_seq_id seq, const std::vector<llama_token> & prompt,
                          size_t than, const std::vector<float> & lora, std::vector<llama_token> & tokens) {
    size_t prefix = 0;
    auto found = best(prompt, than, lora, &prefix);
    if (found == entries_.end()) return false;
    auto it = entries_.erase(found, found);  // (a mutable iterator to the same entry)
    llama_memory_t memory = llama_get_memory(ctx);
    llama_memory_seq_rm(memory, seq, -1, -1);
    const bool ok = llama_state_seq_set_data_ext(ctx, it->state.data(), it->state.size(), seq,
                                                 LLAMA_STATE_SEQ_FLAGS_NONE) == it->state.size();
    if (ok) tokens = std::move(it->tokens);
    else llama_memory_seq_rm(memory, seq, -1, -1);  // whatever a refused state left
    drop(it);
    return ok;
}

}  // namespace jan
