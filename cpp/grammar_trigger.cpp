#include "grammar_trigger.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <utility>

#include "errors.h"
#include "grammar_prefix.h"
#include "model.h"

namespace jan {

// Where a new match can be.
//
// The patterns are searched after every token; a pattern that fires stops the search, so at each token the text
// before the token's piece (`checked` bytes) held no match of any pattern. A match [s, e) of a pattern without
// lookahead or back-references depends only on the bytes s-1 .. e (the byte before for ^ and \b, the byte after
// for $, \b and \B): a match with e < checked would have been a match of the shorter text too. So every new match
// ends at e >= checked. Where the pattern ends in a part T of bounded length (a literal, a class, a group of
// them: at most `tail_max` bytes; for top-level alternatives, each one's part, as alternatives), T's piece of the
// match starts at or after checked - tail_max, and a search of T from there (with the byte before it in view)
// finds a match of T. Only then can the whole pattern have a new match, and only then is the whole text searched,
// with llama.cpp's semantics: each token costs a search of its own piece and a tail of tail_max bytes, and a
// search of the whole text only where T appears (once for a pattern that is T alone, or `[\s\S]*?(T)`, since that
// search fires). A pattern ending in `[\s\S]*` (or `[\s\S]*$`) matches where the rest of it matches, so its T is
// the part before. A pattern that has no such part (an alternative without one, an unbounded end, lookahead,
// back-references, syntax this reader does not know) is searched whole at every token, as llama.cpp does.

namespace {

constexpr size_t kUnbounded = std::numeric_limits<size_t>::max();

size_t add_len(size_t a, size_t b) {
    return (a == kUnbounded || b == kUnbounded || a > kUnbounded - b) ? kUnbounded : a + b;
}

size_t times(size_t width, size_t n) {
    if (width == 0 || n == 0) return 0;
    if (width == kUnbounded || n == kUnbounded || width > kUnbounded / n) return kUnbounded;
    return width * n;
}

// One item of a sequence: an atom with its quantifier.
struct Item {
    size_t begin = 0, end = 0;   // where it is written in the pattern
    size_t max = 0;              // its longest match, in bytes (std::regex over char reads bytes)
    bool any_run = false;        // [\s\S]* or [\s\S]*?: any text, including none
    bool end_anchor = false;     // $ alone
};

using Sequence = std::vector<Item>;

// Reads an ECMAScript pattern (one std::regex accepted) far enough to know each top-level item's longest match.
// Anything it does not know, or that would break the bound (lookahead, back-references), makes it fail: the
// pattern is then searched whole every token. Over-estimating a length is safe (a wider window); it never under-
// estimates one.
class Reader {
public:
    explicit Reader(const std::string & p) : p_(p), n_(p.size()) {}

    // The top level's alternatives; empty when the pattern is not read.
    std::vector<Sequence> top() {
        auto alts = alternatives();
        if (!ok_ || i_ != n_) return {};
        return alts;
    }

private:
    std::vector<Sequence> alternatives() {
        std::vector<Sequence> alts;
        alts.push_back(sequence());
        while (ok_ && i_ < n_ && p_[i_] == '|') {
            ++i_;
            alts.push_back(sequence());
        }
        return alts;
    }

    Sequence sequence() {
        Sequence items;
        while (ok_ && i_ < n_ && p_[i_] != '|' && p_[i_] != ')') items.push_back(item());
        return items;
    }

    size_t fail() {
        ok_ = false;
        return 0;
    }

    Item item() {
        Item it;
        it.begin = i_;
        bool any_class = false;
        const size_t width = atom(it, any_class);
        if (!ok_) return it;
        size_t most = 1;
        bool star = false;
        bool quantified = true;
        if (i_ < n_ && (p_[i_] == '*' || p_[i_] == '+')) {
            star = p_[i_] == '*';
            most = kUnbounded;
            ++i_;
        } else if (i_ < n_ && p_[i_] == '?') {
            ++i_;
        } else if (i_ < n_ && p_[i_] == '{') {
            most = braces();
        } else {
            quantified = false;
        }
        if (!ok_) return it;
        if (quantified && i_ < n_ && p_[i_] == '?') ++i_;  // (lazy: the same lengths)
        it.end = i_;
        it.max = times(width, most);
        it.any_run = any_class && star;
        it.end_anchor = it.end_anchor && !quantified;
        return it;
    }

    // {n}, {n,}, {n,m}: the most repetitions.
    size_t braces() {
        size_t j = i_ + 1;
        auto number = [&](size_t & value) {
            const size_t from = j;
            value = 0;
            while (j < n_ && p_[j] >= '0' && p_[j] <= '9') {
                value = value > 100000000 ? kUnbounded : value * 10 + (size_t)(p_[j] - '0');
                ++j;
            }
            return j > from;
        };
        size_t lo = 0, hi = 0;
        if (!number(lo) || j >= n_) return fail();
        if (p_[j] == '}') {
            hi = lo;
        } else if (p_[j] == ',') {
            ++j;
            if (j < n_ && p_[j] == '}') hi = kUnbounded;
            else if (!number(hi) || j >= n_ || p_[j] != '}') return fail();
        } else {
            return fail();
        }
        i_ = j + 1;
        return hi;
    }

    // The atom at i_ (moved past it) and its longest match.
    size_t atom(Item & it, bool & any_class) {
        switch (p_[i_]) {
            case '(': {
                ++i_;
                if (i_ < n_ && p_[i_] == '?') {
                    if (i_ + 1 < n_ && p_[i_ + 1] == ':') i_ += 2;
                    else return fail();  // lookahead (?= (?!: the match then depends on text past its end
                }
                size_t longest = 0;
                for (const auto & seq : alternatives()) {
                    size_t len = 0;
                    for (const auto & x : seq) len = add_len(len, x.max);
                    longest = std::max(longest, len);
                }
                if (!ok_ || i_ >= n_ || p_[i_] != ')') return fail();
                ++i_;
                return longest;
            }
            case '[': {
                const size_t from = i_++;
                if (i_ < n_ && p_[i_] == '^') ++i_;
                if (i_ < n_ && p_[i_] == ']') return fail();  // ([] and []...]: read differently by engines)
                while (i_ < n_ && p_[i_] != ']') {
                    if (p_[i_] == '[') return fail();  // ([:alpha:] and the like)
                    if (p_[i_] == '\\') ++i_;
                    ++i_;
                }
                if (i_ >= n_) return fail();
                ++i_;
                const std::string cls = p_.substr(from, i_ - from);
                any_class = cls == "[\\s\\S]" || cls == "[\\S\\s]";
                return 1;
            }
            case '\\': {
                if (i_ + 1 >= n_) return fail();
                const char e = p_[i_ + 1];
                i_ += 2;
                if ((e >= '1' && e <= '9') || e == 'k') return fail();  // back-reference
                if (e == 'b' || e == 'B') return 0;
                if (e == 'x') i_ += 2;
                else if (e == 'u') i_ += 4;
                else if (e == 'c') i_ += 1;
                if (i_ > n_) return fail();
                return 1;
            }
            case '^':
                ++i_;
                return 0;
            case '$':
                ++i_;
                it.end_anchor = true;
                return 0;
            case '*':
            case '+':
            case '?':
            case '{':
                return fail();
            default:
                ++i_;
                return 1;
        }
    }

    const std::string & p_;
    const size_t n_;
    size_t i_ = 0;
    bool ok_ = true;
};

// Where the constrained text begins in a match: its first capture group that matched some text, else the match.
size_t constrained_start(const std::smatch & m) {
    for (size_t g = 1; g < m.size(); ++g)
        if (m.length(g) > 0) return (size_t)m.position(g);
    return (size_t)m.position(0);
}

}  // namespace

namespace {

// The part a sequence's every match ends with, and its longest match: its longest suffix of bounded length, after
// any ending [\s\S]* or [\s\S]*$ (which match wherever what comes before them does). Empty where it ends in
// something unbounded, or the suffix is zero bytes long ($ or \b alone, which hold somewhere near any end).
TriggerPatterns::Shape tail_of(const std::string & pattern, const Sequence & items) {
    size_t k = items.size();
    for (;;) {
        if (k >= 1 && items[k - 1].any_run) k -= 1;
        else if (k >= 2 && items[k - 1].end_anchor && items[k - 2].any_run) k -= 2;
        else break;
    }
    size_t j = k, len = 0;
    while (j > 0 && add_len(len, items[j - 1].max) != kUnbounded) len = add_len(len, items[--j].max);
    if (j == k || len == 0) return {};
    return {pattern.substr(items[j].begin, items[k - 1].end - items[j].begin), len};
}

}  // namespace

TriggerPatterns::Shape TriggerPatterns::shape_of(const std::string & pattern) {
    Reader reader(pattern);
    const auto alts = reader.top();
    if (alts.empty()) return {};
    if (alts.size() == 1) return tail_of(pattern, alts[0]);
    // a|b: a new match is one of an alternative, so it ends with that alternative's tail
    Shape shape;
    for (const auto & seq : alts) {
        const Shape one = tail_of(pattern, seq);
        if (one.tail.empty()) return {};
        shape.tail += (shape.tail.empty() ? "(?:" : "|(?:") + one.tail + ")";
        shape.tail_max = std::max(shape.tail_max, one.tail_max);
    }
    return shape;
}

TriggerPatterns::TriggerPatterns(const std::vector<std::string> & patterns) {
    for (size_t i = 0; i < patterns.size(); ++i) {
        Pattern p;
        p.source = patterns[i];
        try {
            p.regex = std::regex(p.source);
        } catch (const std::regex_error & e) {
            throw std::invalid_argument("grammar_triggers[" + std::to_string(i) + "]: not a regular expression "
                                        "std::regex can use (ECMAScript syntax): " + e.what());
        }
        p.whole = !p.source.empty() && p.source.front() == '^' && p.source.back() == '$';
        const Shape shape = shape_of(p.source);
        if (!shape.tail.empty()) {
            try {
                p.tail = std::regex(shape.tail, std::regex::ECMAScript | std::regex::nosubs);
                p.tail_max = shape.tail_max;
                p.bounded = true;
            } catch (const std::regex_error &) {
                // (a part this reader cut wrongly: searched whole, as llama.cpp does)
            }
        }
        patterns_.push_back(std::move(p));
    }
}

size_t TriggerPatterns::find(const std::string & text, size_t checked, bool everywhere) const {
    for (const auto & p : patterns_) {
        if (p.bounded && !everywhere) {
            const size_t from = checked > p.tail_max ? checked - p.tail_max : 0;
            const auto flags = from > 0 ? std::regex_constants::match_prev_avail : std::regex_constants::match_default;
            if (!std::regex_search(text.begin() + (std::ptrdiff_t)from, text.end(), p.tail, flags)) continue;
        }
        std::smatch m;
        // ^...$: the whole text first (its groups may differ from a search's), then anywhere, as llama.cpp does
        if (p.whole && std::regex_match(text, m, p.regex)) return constrained_start(m);
        if (std::regex_search(text, m, p.regex)) return constrained_start(m);
    }
    return std::string::npos;
}

namespace {

struct LazyGrammar {
    const Model * model;
    llama_sampler_ptr grammar;
    std::shared_ptr<const TriggerPatterns> patterns;
    bool awaiting = true;
    std::string text;                                    // the output so far, while awaiting
    std::vector<std::pair<llama_token, size_t>> tokens;  // each token of it and where its piece begins in `text`
};

const char * lazy_name(const llama_sampler *) { return "jan-lazy-grammar"; }

// The grammar reads the output from `start` on, in the tokens that wrote it: a token whose piece begins there or
// after by itself (as llama.cpp replays it), the rest of one that began before by its text (advance_grammar spells
// it in tokens), and an end of generation by its text too (llama.cpp's grammar aborts on one it does not expect).
void replay(LazyGrammar & st, const std::string & text, const std::vector<std::pair<llama_token, size_t>> & tokens,
            size_t start) {
    for (size_t k = 0; k < tokens.size(); ++k) {
        const auto [token, begin] = tokens[k];
        const size_t end = k + 1 < tokens.size() ? tokens[k + 1].second : text.size();
        if (end <= start) continue;
        if (begin >= start && !st.model->is_eog(token)) {
            llama_sampler_accept(st.grammar.get(), token);  // (throws where the grammar refuses it, as llama.cpp's)
            continue;
        }
        const size_t from = std::max(begin, start);
        const std::string part = text.substr(from, end - from);
        try {
            advance_grammar(*st.model, st.grammar.get(), part, [] { return nullptr; });
        } catch (const GrammarPrefixError &) {
            throw std::runtime_error("the grammar does not allow the text its trigger matched: " + part);
        }
    }
}

void lazy_accept(llama_sampler * smpl, llama_token token) {
    auto & st = *static_cast<LazyGrammar *>(smpl->ctx);
    if (!st.awaiting) {
        llama_sampler_accept(st.grammar.get(), token);
        return;
    }
    const size_t checked = st.text.size();
    st.tokens.emplace_back(token, checked);
    st.text += st.model->token_to_piece(token, /*special=*/true);  // (as llama.cpp's grammar reads it)
    const size_t start = st.patterns->find(st.text, checked);
    if (start == std::string::npos) return;
    st.awaiting = false;
    const std::string text = std::move(st.text);
    const auto tokens = std::move(st.tokens);
    st.text.clear();
    st.tokens.clear();
    replay(st, text, tokens, start);
}

void lazy_apply(llama_sampler * smpl, llama_token_data_array * cur_p) {
    auto & st = *static_cast<LazyGrammar *>(smpl->ctx);
    if (!st.awaiting) llama_sampler_apply(st.grammar.get(), cur_p);  // (free text until the trigger)
}

void lazy_reset(llama_sampler * smpl) {
    auto & st = *static_cast<LazyGrammar *>(smpl->ctx);
    llama_sampler_reset(st.grammar.get());
    st.awaiting = true;
    st.text.clear();
    st.tokens.clear();
}

llama_sampler * lazy_clone(const llama_sampler * smpl);

void lazy_free(llama_sampler * smpl) { delete static_cast<LazyGrammar *>(smpl->ctx); }

llama_sampler_i * lazy_iface() {
    static llama_sampler_i iface = [] {
        llama_sampler_i i{};  // value-initialised: the backend hooks stay null (CPU-only sampler)
        i.name = lazy_name;
        i.accept = lazy_accept;
        i.apply = lazy_apply;
        i.reset = lazy_reset;
        i.clone = lazy_clone;
        i.free = lazy_free;
        return i;
    }();
    return &iface;
}

llama_sampler * lazy_clone(const llama_sampler * smpl) {
    const auto & st = *static_cast<const LazyGrammar *>(smpl->ctx);
    llama_sampler_ptr grammar(llama_sampler_clone(st.grammar.get()));
    auto * copy = new LazyGrammar{st.model, std::move(grammar), st.patterns, st.awaiting, st.text, st.tokens};
    return llama_sampler_init(lazy_iface(), copy);
}

}  // namespace

llama_sampler * make_lazy_grammar_sampler(const Model & model, llama_sampler * grammar,
                                          std::shared_ptr<const TriggerPatterns> patterns) {
    llama_sampler_ptr owned(grammar);
    auto * st = new LazyGrammar{&model, std::move(owned), std::move(patterns), true, {}, {}};
    return llama_sampler_init(lazy_iface(), st);
}

}  // namespace jan
