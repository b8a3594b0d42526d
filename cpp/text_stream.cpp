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

std::string utf8_replace_invalid(const std::string & s) {
    static const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
    std::string out;
    out.reserve(s.size());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned char c = (unsigned char)s[i];
        // the sequence's length and its second byte's range (Unicode's table of well-formed UTF-8)
        size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) len = 1;
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) { len = 3; lo = 0xA0; }
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
        else if (c == 0xED) { len = 3; hi = 0x9F; }
        else if (c == 0xF0) { len = 4; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) { len = 4; hi = 0x8F; }
        if (len == 0) {  // a byte no character starts with
            out += kReplacement;
            ++i;
            continue;
        }
        size_t k = 1;  // bytes of the sequence that are right so far
        while (k < len && i + k < n) {
            const unsigned char b = (unsigned char)s[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
            ++k;
        }
        if (k == len) {
            out.append(s, i, len);
        } else {
            out += kReplacement;  // one for the whole ill-formed start (a "maximal subpart")
        }
        i += k;
    }
    return out;
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
    // Bytes that are no UTF-8 (a byte token alone) as the client sees them, U+FFFD, before a stop string is looked
    // for: matched on the raw bytes, a stop string with U+FFFD in it never matched text that showed one (where the
    // service's own matching, on the text, did). An unfinished character at the end waits for its next bytes.
    const size_t whole = utf8_complete_prefix(pending_);
    pending_ = utf8_replace_invalid(pending_.substr(0, whole)) + pending_.substr(whole);

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
