#include "media.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "deep_stack.h"
#include "errors.h"
#include "log_sink.h"
#include "model.h"
#include "mtmd-helper.h"

#include <gguf.h>

namespace jan {

// ---------------------------------------------------------------------------
// MediaChunk, MediaTrack

std::vector<llama_pos> MediaChunk::positions(llama_pos pos_0, int32_t first, int32_t n, int32_t n_sections) const {
    std::vector<llama_pos> pos((size_t)n * (size_t)n_sections, 0);
    const mtmd_image_tokens * image = audio ? nullptr : mtmd_input_chunk_get_tokens_image(chunk.get());
    for (int32_t r = 0; r < n; ++r) {
        const int32_t row = first + r;
        if (n_sections == 1) {
            pos[r] = pos_0 + row;
        } else if (image) {
            // M-RoPE images: every patch shares the temporal position and gets its own (y, x).
            const mtmd_decoder_pos d = mtmd_image_tokens_get_decoder_pos(image, pos_0, (size_t)row);
            pos[r] = (llama_pos)d.t;
            pos[(size_t)n + r] = (llama_pos)d.y;
            pos[(size_t)2 * n + r] = (llama_pos)d.x;
            pos[(size_t)3 * n + r] = (llama_pos)d.z;
        } else {
            // M-RoPE audio is a 1-D sequence: the same position in every section.
            for (int32_t s = 0; s < n_sections; ++s) pos[(size_t)s * n + r] = pos_0 + row;
        }
    }
    return pos;
}

void MediaTrack::add(size_t start, std::shared_ptr<const MediaChunk> chunk) {
    spans_.push_back({start, std::move(chunk)});
}

const MediaSpan * MediaTrack::containing(size_t index) const {
    for (const auto & s : spans_)
        if (s.start <= index && index < s.end()) return &s;
    return nullptr;
}

size_t MediaTrack::text_end(size_t from, size_t size) const {
    for (const auto & s : spans_) {
        if (s.start <= from && from < s.end()) return from;  // inside a chunk still being evaluated
        if (s.start >= from) return std::min(s.start, size);
    }
    return size;
}

llama_pos MediaTrack::pos_at(size_t index) const {
    llama_pos shift = 0;
    for (const auto & s : spans_)
        if (s.end() <= index) shift += s.chunk->n_pos - s.chunk->n_tokens;
    return (llama_pos)index + shift;
}

size_t MediaTrack::boundary_at_or_before(size_t index) const {
    const MediaSpan * s = containing(index);
    return s ? s->start : index;
}

void MediaTrack::truncate(size_t size) {
    spans_.erase(std::remove_if(spans_.begin(), spans_.end(), [&](const MediaSpan & s) { return s.end() > size; }),
                 spans_.end());
}

void MediaTrack::validate(const std::vector<llama_token> & tokens, int32_t n_embd, int32_t n_ubatch) const {
    size_t prev_end = 0, covered = 0;
    for (const auto & s : spans_) {
        const MediaChunk & c = *s.chunk;
        if (s.start < prev_end || s.end() > tokens.size())
            throw std::invalid_argument("prompt: media chunks overlap or lie outside the prompt");
        for (size_t i = s.start; i < s.end(); ++i)
            if (tokens[i] != LLAMA_TOKEN_NULL) throw std::invalid_argument("prompt: a media chunk overlaps text tokens");
        if (!c.encoded()) throw std::invalid_argument("prompt: a media chunk was not encoded");
        if (c.n_embd != n_embd)
            throw std::invalid_argument("prompt: media embeddings have " + std::to_string(c.n_embd) +
                                        " values per token but the model takes " + std::to_string(n_embd));
        if (c.non_causal && c.n_tokens > n_ubatch)
            throw std::invalid_argument("this model attends over a whole image at once: an image of " +
                                        std::to_string(c.n_tokens) + " tokens needs n_ubatch >= " +
                                        std::to_string(c.n_tokens) + " (it is " + std::to_string(n_ubatch) + ")");
        prev_end = s.end();
        covered += (size_t)c.n_tokens;
    }
    const size_t nulls = (size_t)std::count(tokens.begin(), tokens.end(), LLAMA_TOKEN_NULL);
    if (nulls != covered) throw std::invalid_argument("prompt: token id -1 outside a media chunk");
}

size_t common_prefix(const std::vector<llama_token> & a, const MediaTrack & ma,
                     const std::vector<llama_token> & b, const MediaTrack & mb) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n) {
        if (a[i] != LLAMA_TOKEN_NULL || b[i] != LLAMA_TOKEN_NULL) {
            if (a[i] != b[i]) break;
            ++i;
            continue;
        }
        // Both hold media here: reuse it only whole, and only the very same media.
        const MediaSpan * sa = ma.containing(i);
        const MediaSpan * sb = mb.containing(i);
        if (!sa || !sb || sa->start != i || sb->start != i) break;
        const MediaChunk & ca = *sa->chunk;
        const MediaChunk & cb = *sb->chunk;
        if (ca.id.empty() || ca.id != cb.id || ca.n_tokens != cb.n_tokens || ca.n_pos != cb.n_pos) break;
        if (sa->end() > a.size() || sb->end() > b.size()) break;  // only partly evaluated
        i = sa->end();
    }
    return i;
}

int32_t MediaPrompt::n_media_tokens() const {
    int32_t n = 0;
    for (const auto & c : chunks) n += c->n_tokens;
    return n;
}

void MediaPrompt::prepend(llama_token token) {
    tokens.insert(tokens.begin(), token);
    MediaTrack shifted;
    for (const auto & s : track.spans()) shifted.add(s.start + 1, s.chunk);
    track = std::move(shifted);
}

void MediaPrompt::prepend_slice(const MediaPrompt & source, size_t begin, size_t end) {
    if (begin > end || end > source.tokens.size())
        throw std::invalid_argument("prepend_slice: the range is outside the source prompt");
    const auto & spans = source.track.spans();
    MediaTrack joined;
    std::vector<std::shared_ptr<MediaChunk>> taken;
    for (size_t k = 0; k < spans.size(); ++k) {
        const MediaSpan & s = spans[k];
        if (s.end() <= begin || s.start >= end) continue;
        if (s.start < begin || s.end() > end)
            throw std::invalid_argument("prepend_slice: the range cuts a media chunk");
        joined.add(s.start - begin, s.chunk);
        taken.push_back(source.chunks[k]);  // (chunks: one per span, in order)
    }
    const size_t n = end - begin;
    for (const auto & s : track.spans()) joined.add(s.start + n, s.chunk);
    tokens.insert(tokens.begin(), source.tokens.begin() + (std::ptrdiff_t)begin,
                  source.tokens.begin() + (std::ptrdiff_t)end);
    chunks.insert(chunks.begin(), taken.begin(), taken.end());
    track = std::move(joined);
}

// ---------------------------------------------------------------------------
// Projector

namespace {

uint64_t file_size(const std::string & path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    return f ? (uint64_t)f.tellg() : 0;
}

size_t count_occurrences(const std::string & text, const std::string & needle) {
    if (needle.empty()) return 0;
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
    return n;
}

// The audio projector's type the mmproj's header names, as libmtmd reads it (clip.cpp): "clip.audio.projector_type"
// in a file with both modalities, else "clip.projector_type". "" when neither is a string (libmtmd loaded it all the
// same: the floor of every clip then holds).
std::string read_audio_projector_type(const std::string & path) {
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> ctx(gguf_init_from_file(path.c_str(), params), gguf_free);
    if (!ctx) return "";
    for (const char * key : {"clip.audio.projector_type", "clip.projector_type"}) {
        const int64_t id = gguf_find_key(ctx.get(), key);
        if (id >= 0 && gguf_get_kv_type(ctx.get(), id) == GGUF_TYPE_STRING) return gguf_get_val_str(ctx.get(), id);
    }
    return "";
}

mtmd_context_params context_params(const ProjectorParams & p) {
    mtmd_context_params cp = mtmd_context_params_default();
    cp.use_gpu = p.use_gpu;
    cp.print_timings = false;
    cp.n_threads = p.n_threads > 0 ? p.n_threads : (int)std::clamp(std::thread::hardware_concurrency(), 1u, (unsigned)GGML_MAX_N_THREADS);
    cp.flash_attn_type = p.flash_attn < 0    ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : p.flash_attn > 0 ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                            : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.warmup = true;
    cp.image_min_tokens = p.image_min_tokens;
    cp.image_max_tokens = p.image_max_tokens;
    return cp;
}

}  // namespace

Projector::Projector(std::shared_ptr<Model> model, const std::string & path, const ProjectorParams & params)
    : model_(std::move(model)), path_(path), params_(params) {
    ensure_backend_initialized();
    // The helper (the WAV/MP3/FLAC decoder) has a logger of its own, which wrote "Unable to read WAV audio file
    // from buffer" straight to stderr past jan's log; setting it sets libmtmd's too.
    mtmd_helper_log_set(log_sink_callback(), nullptr);
    {
        std::ifstream probe(path, std::ios::binary);
        if (!probe) throw ModelLoadError("projector (mmproj) file not found or unreadable: '" + path + "'");
    }
    const mtmd_context_params cp = context_params(params_);
    ctx_.reset(mtmd_init_from_file(path.c_str(), model_->get(), cp));
    if (!ctx_)
        throw ModelLoadError("libmtmd could not load the projector '" + path + "' for '" + model_->path() +
                             "' (not an mmproj GGUF, or made for another model; see the jan.llama log)");
    if (!mtmd_support_vision(ctx_.get()) && !mtmd_support_audio(ctx_.get()))
        throw ModelLoadError("projector '" + path + "' takes neither images nor audio");
    if (mtmd_support_audio(ctx_.get())) {
        audio_type_ = read_audio_projector_type(path);
        min_audio_samples_ = jan::min_audio_samples(audio_type_);
    }
    // Weights plus compute buffers, as llama.cpp measures them; the file size if it cannot.
    try {
        for (const auto & [dev, bytes] : mtmd_get_memory_usage(path.c_str(), cp)) memory_bytes_ += bytes;
    } catch (...) {
        memory_bytes_ = 0;
    }
    mtmd_helper_log_set(log_sink_callback(), nullptr);  // the measurement swaps the logger
    if (memory_bytes_ == 0) memory_bytes_ = file_size(path);
}

bool Projector::supports_vision() const { return mtmd_support_vision(ctx_.get()); }
bool Projector::supports_audio() const { return mtmd_support_audio(ctx_.get()); }
int32_t Projector::audio_sample_rate() const { return mtmd_get_audio_sample_rate(ctx_.get()); }
std::string Projector::marker() const { return mtmd_get_marker(ctx_.get()); }
bool Projector::uses_mrope() const { return mtmd_decode_use_mrope(ctx_.get()); }

uint32_t min_audio_samples(const std::string & type) {
    // Read from libmtmd's preprocessors (mtmd-audio.cpp) with the frame sizes clip.cpp gives each type. Below
    // these, a clip aborted the whole process (a GGML_ASSERT), made features of NaN or no frames at all, or was
    // refused with no reason ("could not preprocess"): the caller's too-short clip, said of its item instead.
    // Every type: mtmd.cpp asserts a clip holds more than one sample (whisper's preprocessing pads anything longer).
    constexpr uint32_t floor = 2;
    const uint32_t hop = 160;  // the 16 kHz encoders' hop between frames (10 ms)
    // lfm2a (the conformer's per-feature normalization) asserts more than one whole hop's frame: an abort.
    if (type == "lfm2a") return 2 * hop;
    // parakeet normalizes each feature over n / hop frames with an unbiased variance: fewer than two divide by
    // zero, and the model reads NaN features.
    if (type == "parakeet") return 2 * hop;
    // granite_speech stacks frames in pairs: under one hop there is one frame, no pair, and an empty input.
    if (type == "granite_speech") return hop;
    // dots3note_a keeps n / hop frames per chunk: under one hop none, which libmtmd refused without a reason.
    if (type == "dots3note_a") return hop;
    // mimo_audio (24 kHz, a 240-sample hop): its downsampling convolution (kernel 2, stride 2) needs two frames
    // after the first stride-2 one, which three frames give.
    if (type == "mimo_audio") return 2 * 240;
    // qwen3tts_spkenc reflects (n_fft - hop) / 2 = 384 samples at each end and refuses a clip without as many
    // after its first one.
    if (type == "qwen3tts_spkenc") return (1024 - 256) / 2 + 1;
    return floor;
}

MediaPrompt Projector::tokenize(const std::string & text, const std::vector<MediaInput> & media, bool add_special,
                                bool parse_special) const {
    const std::string mark = marker();
    const size_t n_markers = count_occurrences(text, mark);
    if (n_markers != media.size())
        throw std::invalid_argument("the prompt has " + std::to_string(n_markers) + " media marker(s) '" + mark +
                                    "' but " + std::to_string(media.size()) + " image(s)/audio clip(s) were given");

    std::vector<mtmd::bitmap> bitmaps;
    bitmaps.reserve(media.size());
    for (size_t i = 0; i < media.size(); ++i) {
        const MediaInput & m = media[i];
        // named as jan.engine.media names the item (1-based, in prompt order), a typed error carrying its index
        const std::string which = (m.audio ? "audio " : "image ") + std::to_string(i + 1);
        mtmd_bitmap * bm = nullptr;
        if (m.audio) {
            if (!supports_audio())
                throw MediaInputError(which + ": this model's projector does not accept audio", i, "no_projector");
            if (!m.audio_file.empty()) {
                // WAV/MP3/FLAC decoding and resampling to the encoder's rate: libmtmd's own helper. A clip it
                // cannot read is the caller's MediaInputError below; its reason line is no ERROR of the server's.
                const CallersDataLogScope callers_data;
                const auto wrapped = mtmd_helper_bitmap_init_from_buf(
                    ctx_.get(), reinterpret_cast<const unsigned char *>(m.audio_file.data()), m.audio_file.size(),
                    false, mtmd_helper_init_opt_default());
                if (wrapped.video_ctx) mtmd_helper_video_free(wrapped.video_ctx);
                bm = wrapped.bitmap;
                if (bm && !mtmd_bitmap_is_audio(bm)) {
                    mtmd_bitmap_free(bm);
                    bm = nullptr;
                }
                if (!bm) throw MediaInputError(which + ": not a readable WAV, MP3 or FLAC file", i, "unsupported_format");
            } else {
                if (m.samples.empty()) throw MediaInputError(which + ": the audio has no samples", i, "unsupported_format");
                bm = mtmd_bitmap_init_from_audio(m.samples.size(), m.samples.data());
            }
            // libmtmd asserts (GGML_ASSERT: an abort of the whole process) that a clip has more than one sample
            // when it preprocesses it, and some projectors' preprocessing more (min_audio_samples): a one-sample WAV,
            // which the decoder reads fine, took the server down. Such a clip is the caller's bad data, said of its
            // item here, before libmtmd sees it.
            if (bm && mtmd_bitmap_get_nx(bm) < min_audio_samples_) {
                const uint32_t n = mtmd_bitmap_get_nx(bm);
                mtmd_bitmap_free(bm);
                const int32_t rate = audio_sample_rate();
                const std::string ms = rate > 0 ? " (" + std::to_string((min_audio_samples_ * 1000 + rate - 1) / rate) +
                                                      " ms)" : "";
                throw MediaInputError(which + ": the audio is too short (" + std::to_string(n) + " sample" +
                                          (n == 1 ? "" : "s") + " at the encoder's rate; at least " +
                                          std::to_string(min_audio_samples_) + ms + " are needed)",
                                      i, "unsupported_format");
            }
        } else {
            if (!supports_vision())
                throw MediaInputError(which + ": this model's projector does not accept images", i, "no_projector");
            if (m.nx == 0 || m.ny == 0 || m.rgb.size() != (size_t)m.nx * m.ny * 3)
                throw std::invalid_argument(which + ": expected " + std::to_string(m.nx) + "x" + std::to_string(m.ny) +
                                            " RGB pixels (" + std::to_string((size_t)m.nx * m.ny * 3) + " bytes), got " +
                                            std::to_string(m.rgb.size()) + " bytes");
            bm = mtmd_bitmap_init(m.nx, m.ny, reinterpret_cast<const unsigned char *>(m.rgb.data()));
        }
        if (!bm) throw MediaInputError(which + ": libmtmd refused the media", i, "unsupported_format");
        bitmaps.emplace_back(bm);
        if (!m.id.empty()) bitmaps.back().set_id(m.id.c_str());
    }
    std::vector<const mtmd_bitmap *> ptrs;
    for (auto & b : bitmaps) ptrs.push_back(b.ptr.get());

    mtmd_input_text input{text.c_str(), text.size(), add_special, parse_special};
    mtmd::input_chunks chunks(mtmd_input_chunks_init());
    int32_t rc = 0;
    // (the prompt's text is tokenized in there: on a stack sized for it, as Model::tokenize, deep_stack.h)
    run_for_text(text.size(), [&] { rc = mtmd_tokenize(ctx_.get(), chunks.ptr.get(), &input, ptrs.data(), ptrs.size()); });
    if (rc == 1) throw std::invalid_argument("the number of media markers does not match the media given");
    if (rc != 0) {
        // libmtmd says only that one of the items failed (an image its projector cannot resize to within
        // image_min_tokens/image_max_tokens, a clip its preprocessing refuses). Which one is found on this error path
        // alone by preprocessing each by itself, so the caller can name the part that sent it.
        for (size_t k = 0; k < ptrs.size() && ptrs.size() > 1; ++k) {
            mtmd_input_text alone{mark.c_str(), mark.size(), false, false};
            mtmd::input_chunks one(mtmd_input_chunks_init());
            if (mtmd_tokenize(ctx_.get(), one.ptr.get(), &alone, &ptrs[k], 1) == 0) continue;
            throw MediaInputError((media[k].audio ? "audio " : "image ") + std::to_string(k + 1) +
                                      ": the projector could not preprocess it (code " + std::to_string(rc) + ")",
                                  k, "unsupported_format");
        }
        if (ptrs.size() == 1)
            throw MediaInputError(std::string(media[0].audio ? "audio" : "image") +
                                      " 1: the projector could not preprocess it (code " + std::to_string(rc) + ")",
                                  0, "unsupported_format");
        throw std::invalid_argument("libmtmd could not preprocess the media (code " + std::to_string(rc) + ")");
    }

    MediaPrompt out;
    const int32_t n_embd = llama_model_n_embd_inp(model_->get());
    const bool mrope = mtmd_decode_use_mrope(ctx_.get());
    std::unordered_map<std::string, int> seen;  // slices of one image share its id
    for (size_t i = 0; i < chunks.size(); ++i) {
        const mtmd_input_chunk * c = chunks[i];
        const auto type = mtmd_input_chunk_get_type(c);
        if (type == MTMD_INPUT_CHUNK_TYPE_TEXT) {
            size_t n = 0;
            const llama_token * t = mtmd_input_chunk_get_tokens_text(c, &n);
            out.tokens.insert(out.tokens.end(), t, t + n);
            continue;
        }
        auto mc = std::make_shared<MediaChunk>();
        mc->chunk.reset(mtmd_input_chunk_copy(c));
        const char * id = mtmd_input_chunk_get_id(c);
        const std::string base = id ? id : "";
        mc->id = base.empty() ? std::string() : base + "#" + std::to_string(seen[base]++);
        mc->n_tokens = (int32_t)mtmd_input_chunk_get_n_tokens(c);
        mc->n_pos = mtmd_input_chunk_get_n_pos(c);
        mc->audio = type == MTMD_INPUT_CHUNK_TYPE_AUDIO;
        mc->mrope = mrope;
        mc->non_causal = mtmd_decode_use_non_causal(ctx_.get(), c);
        mc->n_embd = n_embd;
        out.track.add(out.tokens.size(), mc);
        out.tokens.insert(out.tokens.end(), (size_t)mc->n_tokens, LLAMA_TOKEN_NULL);
        out.chunks.push_back(std::move(mc));
    }
    return out;
}

std::shared_ptr<const std::vector<float>> Projector::cached(const std::string & key) {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    auto it = lru_index_.find(key);
    if (it == lru_index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
}

void Projector::remember(const std::string & key, std::shared_ptr<const std::vector<float>> embd) {
    const size_t bytes = embd->size() * sizeof(float);
    std::lock_guard<std::mutex> lock(stats_mutex_);
    if (key.empty() || bytes > params_.encode_cache_bytes || lru_index_.count(key)) return;
    lru_.emplace_front(key, std::move(embd));
    lru_index_[key] = lru_.begin();
    lru_bytes_ += bytes;
    while (lru_bytes_ > params_.encode_cache_bytes && !lru_.empty()) {
        lru_bytes_ -= lru_.back().second->size() * sizeof(float);
        lru_index_.erase(lru_.back().first);
        lru_.pop_back();
    }
}

void Projector::encode(MediaPrompt & prompt) {
    for (auto & chunk : prompt.chunks) {
        if (chunk->encoded()) continue;
        if (!chunk->id.empty()) {
            if (auto hit = cached(chunk->id)) {
                chunk->embd = std::move(hit);
                continue;
            }
        }
        std::lock_guard<std::mutex> lock(encode_mutex_);
        if (!chunk->id.empty()) {  // another request may have encoded it meanwhile
            if (auto hit = cached(chunk->id)) {
                chunk->embd = std::move(hit);
                continue;
            }
        }
        const auto t0 = std::chrono::steady_clock::now();
        const int32_t rc = mtmd_encode_chunk(ctx_.get(), chunk->chunk.get());
        if (rc != 0)
            throw EngineError(std::string("the projector could not encode the ") + (chunk->audio ? "audio" : "image") +
                              " (libmtmd code " + std::to_string(rc) + ")");
        const float * out = mtmd_get_output_embd(ctx_.get());
        auto embd = std::make_shared<const std::vector<float>>(out, out + (size_t)chunk->n_tokens * chunk->n_embd);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        {
            std::lock_guard<std::mutex> stats(stats_mutex_);
            encode_count_++;
            encode_seconds_ += seconds;
        }
        chunk->embd = embd;
        remember(chunk->id, std::move(embd));
    }
}

uint64_t Projector::encode_count() const {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    return encode_count_;
}

double Projector::encode_seconds() const {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    return encode_seconds_;
}

}  // namespace jan
