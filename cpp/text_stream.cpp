#include "text_stream.h"

#include <algorithm>

namespace jan {

size_t utf8_complete_prefix(const std::string & s) {
    const size_t n = s.size();
    // A UTF-8 sequence is at most 4 bytes: only the last 3 can be an unfinished one.
    for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
        const unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
        size_t need = 1;
        if ((c & 0xE0) == 0xC0) need = 2;
        else if ((c & 0xF0) == 0xE0) need = 3;
        else if ((c & 0xF8) == 0xF0) need = 4;
        return need > back ? n - back : n;
    }
    return n;
}

TextStream::TextStream(std::vector<std::string> stops) : stops_(std::move(stops)) {}

size_t TextStream::held_for_stops() const {
    size_t hold = 0;
    for (const auto & stop : stops_) {
        const size_t max_k = std::min(stop.size() - 1, pending_.size());
        for (size_t k = max_k; k > hold; --k) {
            if (pending_.compare(pending_.size() - k, k, stop, 0, k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

std::string TextStream::push(const std::string & piece) {
    if (stopped_) return {};
    // pending_ only ever holds a short unreleased tail, so searching all of it is cheap.
    pending_ += piece;

    size_t first = std::string::npos;
    for (const auto & stop : stops_) {
        const size_t at = pending_.find(stop);
        if (at < first) {
            first = at;
            matched_stop_ = stop;
        }
    }
    if (first != std::string::npos) {
        stopped_ = true;
        std::string out = pending_.substr(0, first);
        pending_.clear();
        return out;
    }

    size_t release = pending_.size() - held_for_stops();
    release = utf8_complete_prefix(pending_.substr(0, release));
    std::string out = pending_.substr(0, release);
    pending_.erase(0, release);
    return out;
}

std::string TextStream::flush() {
    if (stopped_) return {};
    std::string out = std::move(pending_);
    pending_.clear();
    // A generation cut off (max_tokens, the context) inside a character — its first bytes sampled, the rest
    // never — ends at the last whole character: the torn bytes would decode as U+FFFD, a character the model
    // never wrote. (Invalid bytes inside the text still show as U+FFFD: the binding decodes with "replace".)
    out.resize(utf8_complete_prefix(out));
    return out;
}

}  // namespace jan
