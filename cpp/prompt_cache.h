// A host-memory cache of slots' KV sequences (llama-server's --cache-ram), so that more conversations than
// there are slots keep their caches: a slot about to be taken by another conversation first saves its
// sequence here, and a later prompt that continues one of the saved ones has it copied back into its slot
// (llama_state_seq_get_data_ext / set_data_ext), evaluating only the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <vector>

#include "llama.h"

namespace jan {

// Whether a prompt that shares `prefix` tokens with a cache holding `held` continues it: the shared part is at
// least half of what the cache holds, or half of the prompt's `prompt_size` (a next turn of that conversation, or
// the same long document with a new question), not only a shared start (BOS, a template's header). The one rule
// for a slot (Scheduler::pick_slot, swap_saved_prompt) and a saved sequence (PromptCache::best_prefix).
inline bool continues_prefix(size_t prefix, size_t held, size_t prompt_size) {
    return prefix > 0 && (2 * prefix >= held || 2 * prefix >= prompt_size);
}

class PromptCache {
public:
    // limit_bytes: < 0 no limit, 0 off; the oldest entries go first once the saved states pass it, or once
    // there are kMaxPrompts of them.
    explicit PromptCache(int64_t limit_bytes) : limit_(limit_bytes) {}

    // Each lookup compares the prompt with every saved one (up to where they part): a few hundred keep that
    // well under a millisecond on the engine thread, where a tiny model's ~100 KB conversations would otherwise
    // pile up by the ten thousand before the byte limit (llama-server caps its cache's tokens instead).
    static constexpr size_t kMaxPrompts = 256;

    bool enabled() const { return limit_ != 0; }
    uint64_t bytes() const { return bytes_; }
    size_t size() const { return entries_.size(); }

    // Save sequence `seq` of `ctx`, whose cells hold `tokens` (text only: no media) computed under the LoRA scales
    // `lora` (its tag: an entry serves only prompts of the same scales). Nothing is saved when the cache is off,
    // when an entry of the same scales already holds these tokens (or more after them), or when the state alone is
    // over the limit; entries of the same scales these tokens hold in full are dropped (the new one covers them).
    void save(llama_context * ctx, llama_seq_id seq, const std::vector<llama_token> & tokens,
              const std::vector<float> & lora = {});

    // The longest prefix of `prompt` (LLAMA_TOKEN_NULL, a media position, ends it) that a saved entry holds, if
    // it is longer than `than` and the prompt continues that entry (the prefix is at least half the entry or half
    // the prompt, as Scheduler::pick_slot judges a slot); 0 otherwise.
    // Only entries saved under the LoRA scales `lora` count.
    size_t best_prefix(const std::vector<llama_token> & prompt, size_t than,
                       const std::vector<float> & lora = {}) const;

    // Copy the entry best_prefix found into `seq` (its cells removed first) and take it out of the cache; its
    // tokens are moved into `tokens`. False (and `seq` left empty) when there is none or llama.cpp refuses it.
    bool restore(llama_context * ctx, llama_seq_id seq, const std::vector<llama_token> & prompt, size_t than,
                 const std::vector<float> & lora, std::vector<llama_token> & tokens);

private:
    struct Entry {
        std::vector<llama_token> tokens;
        std::vector<uint8_t> state;
        std::vector<float> lora;  // the LoRA scales its KV was computed under
    };
    std::list<Entry>::const_iterator best(const std::vector<llama_token> & prompt, size_t than,
                                          const std::vector<float> & lora, size_t * prefix) const;
    void drop(std::list<Entry>::iterator it);

    std::list<Entry> entries_;  // oldest first
    int64_t limit_;
    uint64_t bytes_ = 0;
};

}  // namespace jan
