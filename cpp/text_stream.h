// Turns a stream of token pieces (raw bytes) into text that is safe to show:
// only whole UTF-8 characters are released, and any tail that could be the
// start of a stop string is held back until it is known not to be one.
#pragma once

#include <string>
#include <vector>

namespace jan {

class TextStream {
public:
    explicit TextStream(std::vector<std::string> stops = {});

    // Appends a piece; returns the text now safe to emit. Sets stopped() when a
    // stop string matched: the match and everything after it are dropped.
    std::string push(const std::string & piece);
    // End of generation: everything still held is released (a dangling partial
    // character becomes U+FFFD rather than being lost).
    std::string flush();

    bool stopped() const { return stopped_; }
    const std::string & matched_stop() const { return matched_stop_; }

private:
    size_t held_for_stops() const;

    std::vector<std::string> stops_;
    std::string pending_;
    bool stopped_ = false;
    std::string matched_stop_;
};

// Length of the longest prefix of `s` that ends on a UTF-8 character boundary
// (an incomplete trailing sequence is excluded; invalid bytes count as whole).
size_t utf8_complete_prefix(const std::string & s);

// `s` with each ill-formed UTF-8 run replaced by U+FFFD, one for each maximal subpart (Unicode's recommended
// practice, which Python's "replace" decoder, the binding's, follows): the text as a client sees it.
std::string utf8_replace_invalid(const std::string & s);

}  // namespace jan
