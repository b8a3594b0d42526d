#include "utf8_sampler.h"

#include <array>
#include <cmath>

#include "model.h"

namespace jan {
namespace {

// The UTF-8 states after a whole number of bytes (RFC 3629's well-formed sequences): what the next byte must be.
// A state names how many continuation bytes the character still needs and the range its next one must fall in
// (E0, ED, F0 and F4 narrow their second byte, ruling out overlong forms, surrogates and code points past
// U+10FFFF). Eight states: each is one bit of Utf8Classes::allowed.
enum State : uint8_t {
    Rest = 0,  // between characters
    Need1,     // one more, 80..BF
    Need2,     // two more, 80..BF
    Need2E0,   // two more, the next A0..BF
    Need2ED,   // two more, the next 80..9F
    Need3,     // three more, 80..BF
    Need3F0,   // three more, the next 90..BF
    Need3F4,   // three more, the next 80..8F
    N_STATES,
    Bad = N_STATES,
};

using Table = std::array<std::array<uint8_t, 256>, N_STATES>;

const Table & transitions() {
    static const Table table = [] {
        Table t{};
        for (auto & row : t) row.fill(Bad);
        for (int b = 0; b < 256; ++b) {
            uint8_t & r = t[Rest][b];
            if (b < 0x80) r = Rest;
            else if (b >= 0xC2 && b <= 0xDF) r = Need1;
            else if (b == 0xE0) r = Need2E0;
            else if (b == 0xED) r = Need2ED;
            else if (b >= 0xE1 && b <= 0xEF) r = Need2;
            else if (b == 0xF0) r = Need3F0;
            else if (b >= 0xF1 && b <= 0xF3) r = Need3;
            else if (b == 0xF4) r = Need3F4;
            // (80..BF with no lead, C0/C1, F5..FF: Bad)
        }
        auto cont = [&](State from, int lo, int hi, State to) {
            for (int b = lo; b <= hi; ++b) t[from][b] = to;
        };
        cont(Need1, 0x80, 0xBF, Rest);
        cont(Need2, 0x80, 0xBF, Need1);
        cont(Need2E0, 0xA0, 0xBF, Need1);
        cont(Need2ED, 0x80, 0x9F, Need1);
        cont(Need3, 0x80, 0xBF, Need2);
        cont(Need3F0, 0x90, 0xBF, Need2);
        cont(Need3F4, 0x80, 0x8F, Need2);
        return t;
    }();
    return table;
}

// The state after `bytes` written in state `s`; Bad once a byte cannot follow.
uint8_t run(uint8_t s, const std::string & bytes) {
    const Table & t = transitions();
    for (unsigned char b : bytes) {
        s = t[s][b];
        if (s == Bad) return Bad;
    }
    return s;
}

// The state after `bytes` as they were written, valid or not: a byte that cannot follow starts over as a decoder
// would after U+FFFD (at that byte when it can start a character, else after it).
uint8_t resync(uint8_t s, const std::string & bytes) {
    const Table & t = transitions();
    for (unsigned char b : bytes) {
        uint8_t next = t[s][b];
        if (next == Bad) next = t[Rest][b];
        s = next == Bad ? (uint8_t)Rest : next;
    }
    return s;
}

struct Utf8State {
    const Model * model;
    std::shared_ptr<const Utf8Classes> classes;  // (shared by clones)
    uint8_t state = Rest;
};

const char * utf8_name(const llama_sampler *) { return "jan-utf8"; }

void utf8_accept(llama_sampler * smpl, llama_token token) {
    auto * st = static_cast<Utf8State *>(smpl->ctx);
    if (st->model->is_eog(token)) return;  // (writes nothing: the request ends)
    st->state = resync(st->state, st->model->token_to_piece(token, /*special=*/true));
}

void utf8_apply(llama_sampler * smpl, llama_token_data_array * cur_p) {
    const auto * st = static_cast<const Utf8State *>(smpl->ctx);
    const Utf8Classes & c = *st->classes;
    const uint8_t bit = (uint8_t)(1u << st->state);
    auto allowed = [&](llama_token t) { return t >= 0 && (size_t)t < c.allowed.size() && (c.allowed[t] & bit); };
    // Something must be left to sample: where the grammar allows only tokens this would ban, its choice stands.
    // (Found within the first few candidates unless the grammar rules out most of the vocabulary.)
    bool other = false;
    for (size_t i = 0; i < cur_p->size && !other; ++i)
        other = cur_p->data[i].logit != -INFINITY && allowed(cur_p->data[i].id);
    if (!other) return;
    if (st->state == Rest) {
        // Between characters (nearly every step) the banned tokens are a fixed short list: banned by index while
        // the candidates are still the vocabulary in token order (as the grammar leaves them), as ignore_eos does.
        bool in_order = cur_p->size == c.allowed.size();
        for (size_t k = 0; k < c.bad_at_rest.size() && in_order; ++k)
            in_order = cur_p->data[c.bad_at_rest[k]].id == c.bad_at_rest[k];
        if (in_order) {
            for (llama_token t : c.bad_at_rest) cur_p->data[t].logit = -INFINITY;
            return;
        }
    }
    // Inside a character only tokens that go on with it are left (a handful): one pass, a bit test per token.
    for (size_t i = 0; i < cur_p->size; ++i)
        if (!allowed(cur_p->data[i].id)) cur_p->data[i].logit = -INFINITY;
}

}  // namespace

bool utf8_sampler_allows(const llama_sampler * utf8, llama_token token) {
    const auto * st = static_cast<const Utf8State *>(utf8->ctx);
    const Utf8Classes & c = *st->classes;
    return token >= 0 && (size_t)token < c.allowed.size() && (c.allowed[token] & (uint8_t)(1u << st->state));
}

namespace {

void utf8_reset(llama_sampler * smpl) { static_cast<Utf8State *>(smpl->ctx)->state = Rest; }

llama_sampler * utf8_clone(const llama_sampler * smpl);

void utf8_free(llama_sampler * smpl) { delete static_cast<Utf8State *>(smpl->ctx); }

llama_sampler_i * utf8_iface() {
    static llama_sampler_i iface = [] {
        llama_sampler_i i{};  // value-initialised: the backend hooks stay null (CPU-only sampler)
        i.name = utf8_name;
        i.accept = utf8_accept;
        i.apply = utf8_apply;
        i.reset = utf8_reset;
        i.clone = utf8_clone;
        i.free = utf8_free;
        return i;
    }();
    return &iface;
}

llama_sampler * utf8_clone(const llama_sampler * smpl) {
    return llama_sampler_init(utf8_iface(), new Utf8State(*static_cast<const Utf8State *>(smpl->ctx)));
}

}  // namespace

std::shared_ptr<const Utf8Classes> build_utf8_classes(const Model & model) {
    auto c = std::make_shared<Utf8Classes>();
    const int32_t n = model.n_vocab();
    c->allowed.assign((size_t)n, 0);
    for (llama_token t = 0; t < n; ++t) {
        uint8_t mask = 0;
        if (model.is_eog(t)) {
            mask = 1u << Rest;  // an end of generation only between characters
        } else {
            // special=true: the piece as llama.cpp's grammar reads it (control tokens spelled out)
            const std::string piece = model.token_to_piece(t, /*special=*/true);
            for (uint8_t s = 0; s < N_STATES; ++s)
                if (run(s, piece) != Bad) mask |= (uint8_t)(1u << s);
        }
        c->allowed[t] = mask;
        if (!(mask & (1u << Rest))) c->bad_at_rest.push_back(t);
    }
    return c;
}

llama_sampler * make_utf8_sampler(const Model & model) {
    return llama_sampler_init(utf8_iface(), new Utf8State{&model, model.utf8_classes()});
}

}  // namespace jan
