// Images and audio in prompts, through llama.cpp's libmtmd.
//
// A model may carry a projector (an "mmproj" GGUF). The Projector owns the
// mtmd_context: it turns text with media markers plus decoded media into a
// MediaPrompt (text tokens, and one MediaChunk per image/audio chunk) and
// encodes each chunk into embeddings for the text model. The scheduler then
// decodes those embeddings into a slot's KV sequence between its text tokens.
//
// A prompt is still a flat token vector: the entries of a media chunk hold
// LLAMA_TOKEN_NULL, and a MediaTrack beside it says which chunk covers which
// entries. Prefix reuse compares text by token and media by chunk id (a hash
// of the pixels or samples), so a follow-up turn about the same image reuses
// its KV cache.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "llama.h"
#include "mtmd.h"

namespace jan {

class Model;

// One image or audio chunk of a prompt. Immutable once encoded; shared by
// the prompt, the slot that evaluates it and the projector's encode cache.
struct MediaChunk {
    mtmd::input_chunk_ptr chunk;   // our own copy (mtmd_input_chunk_copy)
    std::string id;                // content hash given with the media (plus slice ordinal)
    int32_t n_tokens = 0;          // KV entries it fills
    llama_pos n_pos = 0;           // positions it advances (< n_tokens for M-RoPE images)
    bool audio = false;
    bool mrope = false;            // 4 position sections per embedding (t, y, x, z)
    bool non_causal = false;       // must be decoded whole, with causal attention off
    int32_t n_embd = 0;            // floats per embedding row
    std::shared_ptr<const std::vector<float>> embd;  // n_tokens * n_embd, set by Projector::encode

    bool encoded() const { return embd && embd->size() == (size_t)n_tokens * (size_t)n_embd; }
    // Positions of rows [first, first + n) for a chunk starting at pos_0, section-major
    // (n_sections * n entries), as llama_batch wants them for embeddings.
    std::vector<llama_pos> positions(llama_pos pos_0, int32_t first, int32_t n, int32_t n_sections) const;
};

struct MediaSpan {
    size_t start = 0;              // index of the chunk's first entry in the token vector
    std::shared_ptr<const MediaChunk> chunk;
    size_t end() const { return start + (size_t)chunk->n_tokens; }
};

// Where the media chunks of a token vector (a prompt or a slot's cache) lie.
class MediaTrack {
public:
    bool empty() const { return spans_.empty(); }
    const std::vector<MediaSpan> & spans() const { return spans_; }
    void add(size_t start, std::shared_ptr<const MediaChunk> chunk);
    void clear() { spans_.clear(); }

    const MediaSpan * containing(size_t index) const;  // start <= index < end
    // End of the text run starting at `from`: the next chunk's start, or `size`.
    size_t text_end(size_t from, size_t size) const;
    // KV position of entry `index` (at a chunk boundary or in text): M-RoPE
    // chunks advance the position by n_pos, not by their n_tokens.
    llama_pos pos_at(size_t index) const;
    // `index` moved back to the start of the chunk it falls inside, if any.
    size_t boundary_at_or_before(size_t index) const;
    void truncate(size_t size);  // forget chunks that do not lie wholly before `size`

    // Throws std::invalid_argument unless the chunks are sorted, inside `tokens`,
    // cover exactly its LLAMA_TOKEN_NULL entries, are encoded with `n_embd`-wide
    // rows, and a non-causal chunk fits one ubatch.
    void validate(const std::vector<llama_token> & tokens, int32_t n_embd, int32_t n_ubatch) const;

private:
    std::vector<MediaSpan> spans_;
};

// Entries equal at the start of both: tokens one by one, media chunks whole and by id.
size_t common_prefix(const std::vector<llama_token> & a, const MediaTrack & ma,
                     const std::vector<llama_token> & b, const MediaTrack & mb);

// Media handed to the projector: decoded RGB pixels, mono float PCM, or an audio file.
struct MediaInput {
    bool audio = false;
    uint32_t nx = 0, ny = 0;       // image size in pixels
    std::string rgb;               // nx * ny * 3 bytes, row-major RGBRGB...
    std::vector<float> samples;    // audio at the projector's sample rate
    std::string audio_file;        // or an encoded clip (WAV, MP3, FLAC) for libmtmd's decoder
    std::string id;                // content hash: equal ids mean equal media
};

struct MediaPrompt {
    std::vector<llama_token> tokens;   // LLAMA_TOKEN_NULL inside media chunks
    std::vector<std::shared_ptr<MediaChunk>> chunks;  // in prompt order, one per span
    MediaTrack track;
    int32_t n_media_tokens() const;
    void prepend(llama_token token);   // e.g. a BOS the template did not write
    // Entries [begin, end) of `source` put before this prompt's, with the media chunks that lie wholly in them (the
    // range may not cut one: std::invalid_argument): an image of a continued exchange put back at its place there,
    // among the exchange's token ids (prepended one by one around it).
    void prepend_slice(const MediaPrompt & source, size_t begin, size_t end);
};

struct ProjectorParams {
    int32_t n_threads = -1;        // -1: all hardware threads (encoding is compute-bound)
    bool use_gpu = false;
    // -1: libmtmd's auto (on where the backend has it, as llama-server's default), 0 off, 1 on. Off costs
    // memory: Qwen2/2.5/3-VL projectors reserve their compute buffer for a warm-up image of 92x92 patches, whose
    // attention scores alone are n_head * 8464^2 floats without flash attention.
    int32_t flash_attn = -1;
    // Bounds on the tokens of one image, for projectors that size images by their pixels (dynamic resolution:
    // Qwen2/2.5/3-VL, Pixtral, ...; others ignore them). -1: the projector's own.
    int32_t image_min_tokens = -1;
    int32_t image_max_tokens = -1;
    size_t encode_cache_bytes = 64u << 20;  // embeddings kept for re-sent media (0: none)
};

// The fewest samples (at the encoder's rate) of one audio clip that libmtmd's preprocessor for an audio projector
// of `projector_type` (the mmproj's clip.audio.projector_type, e.g. "qwen2a", "lfm2a") takes without an abort of the
// process or a meaningless result; 2 for a type it does not know (libmtmd's own floor for every clip).
uint32_t min_audio_samples(const std::string & projector_type);

class Projector {
public:
    // Throws ModelLoadError when the file is missing or libmtmd refuses it
    // (wrong architecture, n_embd that does not match the text model, ...).
    Projector(std::shared_ptr<Model> model, const std::string & path, const ProjectorParams & params);
    Projector(const Projector &) = delete;
    Projector & operator=(const Projector &) = delete;

    const std::string & path() const { return path_; }
    bool supports_vision() const;
    bool supports_audio() const;
    int32_t audio_sample_rate() const;  // -1 without audio
    // The audio projector's type as its GGUF names it ("" without audio), and the fewest samples of a clip it takes
    // (min_audio_samples): a shorter clip is the caller's MediaInputError, said before libmtmd preprocesses it.
    const std::string & audio_projector_type() const { return audio_type_; }
    uint32_t min_audio_samples() const { return min_audio_samples_; }
    std::string marker() const;         // the text that stands for one media item in a prompt
    bool uses_mrope() const;
    uint64_t memory_bytes() const { return memory_bytes_; }

    // Splits `text` at its markers (one per item of `media`, in order) and
    // preprocesses the media. Thread-safe; slow (image resizing): call without the GIL.
    // Throws std::invalid_argument (marker count, unsupported modality, bad media).
    MediaPrompt tokenize(const std::string & text, const std::vector<MediaInput> & media, bool add_special,
                         bool parse_special) const;
    // Runs the vision/audio encoder for every chunk not encoded yet (or found
    // in the encode cache). Serialized per projector; call without the GIL.
    void encode(MediaPrompt & prompt);

    uint64_t encode_count() const;    // encoder runs since load
    double encode_seconds() const;

private:
    std::shared_ptr<const std::vector<float>> cached(const std::string & key);
    void remember(const std::string & key, std::shared_ptr<const std::vector<float>> embd);

    std::shared_ptr<Model> model_;
    std::string path_;
    ProjectorParams params_;
    mtmd::context_ptr ctx_;
    uint64_t memory_bytes_ = 0;
    std::string audio_type_;
    uint32_t min_audio_samples_ = 2;

    std::mutex encode_mutex_;           // mtmd_encode_chunk shares one output buffer
    mutable std::mutex stats_mutex_;    // the counters and the encode cache
    uint64_t encode_count_ = 0;
    double encode_seconds_ = 0.0;
    // LRU of embeddings by chunk key: a re-sent image is not encoded again.
    std::list<std::pair<std::string, std::shared_ptr<const std::vector<float>>>> lru_;
    std::unordered_map<std::string, decltype(lru_)::iterator> lru_index_;
    size_t lru_bytes_ = 0;
};

}  // namespace jan
