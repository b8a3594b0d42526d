#include <pybind11/stl.h>

#include <cstring>

#include "bind_common.h"
#include "media.h"
#include "scheduler.h"

namespace jan {

py::object make_request_handle(std::shared_ptr<RequestState> state);

namespace {

std::string bytes_of(const py::buffer & data, const char * what) {
    const py::buffer_info info = data.request();
    if (info.ndim != 1 || info.strides[0] != info.itemsize)
        throw std::invalid_argument(std::string(what) + ": expected a flat, contiguous buffer");
    return std::string(static_cast<const char *>(info.ptr), (size_t)info.size * (size_t)info.itemsize);
}

}  // namespace

void register_media(py::module_ & m) {
    using release = py::call_guard<gil_released>;

    py::class_<ProjectorParams>(m, "ProjectorParams")
        .def(py::init<>())
        .def_readwrite("n_threads", &ProjectorParams::n_threads)
        .def_readwrite("use_gpu", &ProjectorParams::use_gpu)
        .def_readwrite("flash_attn", &ProjectorParams::flash_attn)
        .def_readwrite("image_min_tokens", &ProjectorParams::image_min_tokens)
        .def_readwrite("image_max_tokens", &ProjectorParams::image_max_tokens)
        .def_readwrite("encode_cache_bytes", &ProjectorParams::encode_cache_bytes);

    py::class_<MediaInput>(m, "MediaInput")
        .def_static("image",
                    [](py::buffer rgb, uint32_t width, uint32_t height, std::string id) {
                        MediaInput in;
                        in.nx = width;
                        in.ny = height;
                        in.rgb = bytes_of(rgb, "rgb");
                        in.id = std::move(id);
                        return in;
                    },
                    py::arg("rgb"), py::arg("width"), py::arg("height"), py::arg("id"),
                    "width x height RGB pixels (row-major, 3 bytes each); id: a hash of the content.")
        .def_static("audio",
                    [](py::buffer pcm_f32, std::string id) {
                        const std::string raw = bytes_of(pcm_f32, "samples");
                        if (raw.size() % sizeof(float)) throw std::invalid_argument("samples: expected float32 PCM");
                        MediaInput in;
                        in.audio = true;
                        in.samples.resize(raw.size() / sizeof(float));
                        std::memcpy(in.samples.data(), raw.data(), raw.size());
                        in.id = std::move(id);
                        return in;
                    },
                    py::arg("samples"), py::arg("id"),
                    "Mono float32 PCM at the projector's sample rate; id: a hash of the content.")
        .def_static("audio_file",
                    [](py::buffer file, std::string id) {
                        MediaInput in;
                        in.audio = true;
                        in.audio_file = bytes_of(file, "audio");
                        in.id = std::move(id);
                        return in;
                    },
                    py::arg("data"), py::arg("id"),
                    "An encoded WAV/MP3/FLAC clip, decoded and resampled by libmtmd; id: a hash of the content.")
        .def_readonly("id", &MediaInput::id)
        .def_readonly("is_audio", &MediaInput::audio);

    py::class_<MediaPrompt, std::shared_ptr<MediaPrompt>>(m, "MediaPrompt")
        .def_property_readonly("tokens", [](const MediaPrompt & p) { return p.tokens; },
                               "Token ids; -1 for every entry of an image/audio chunk.")
        .def_property_readonly("n_tokens", [](const MediaPrompt & p) { return p.tokens.size(); })
        .def_property_readonly("n_media_tokens", &MediaPrompt::n_media_tokens)
        .def_property_readonly("media", [](const MediaPrompt & p) {
            py::list out;
            for (const auto & s : p.track.spans())
                out.append(py::make_tuple(s.start, s.chunk->n_tokens, s.chunk->n_pos, s.chunk->id,
                                          s.chunk->audio ? "audio" : "image", s.chunk->encoded()));
            return out;
        }, "(start, n_tokens, n_pos, id, kind, encoded) per media chunk.")
        .def("prepend", &MediaPrompt::prepend, py::arg("token"))
        .def("prepend_slice", &MediaPrompt::prepend_slice, py::arg("source"), py::arg("begin"), py::arg("end"),
             "Put entries [begin, end) of source (media chunks only whole: ValueError) before this prompt's.");

    m.def("min_audio_samples", py::overload_cast<const std::string &>(&min_audio_samples), py::arg("projector_type"),
          "The fewest samples (at the encoder's rate) of one audio clip an audio projector of this type (its GGUF's "
          "clip.audio.projector_type) takes; 2 for a type without a floor of its own.");

    py::class_<Projector, std::shared_ptr<Projector>>(m, "Projector")
        .def(py::init<std::shared_ptr<Model>, const std::string &, const ProjectorParams &>(), py::arg("model"),
             py::arg("path"), py::arg("params"), release())
        .def_property_readonly("path", &Projector::path)
        .def_property_readonly("vision", &Projector::supports_vision)
        .def_property_readonly("audio", &Projector::supports_audio)
        .def_property_readonly("audio_sample_rate", &Projector::audio_sample_rate)
        .def_property_readonly("marker", &Projector::marker)
        .def_property_readonly("audio_projector_type", &Projector::audio_projector_type,
                               "The audio projector's type its GGUF names ('' without audio).")
        .def_property_readonly("min_audio_samples", [](const Projector & p) { return p.min_audio_samples(); },
                               "The fewest samples (at the encoder's rate) of one clip it takes.")
        .def_property_readonly("uses_mrope", &Projector::uses_mrope)
        .def_property_readonly("memory_bytes", &Projector::memory_bytes)
        .def_property_readonly("encode_count", &Projector::encode_count)
        .def_property_readonly("encode_seconds", &Projector::encode_seconds)
        .def("tokenize",
             [](const Projector & self, const std::string & text, const std::vector<MediaInput> & media,
                bool add_special, bool parse_special) {
                 gil_released nogil;
                 return std::make_shared<MediaPrompt>(self.tokenize(text, media, add_special, parse_special));
             },
             py::arg("text"), py::arg("media"), py::arg("add_special"), py::arg("parse_special"))
        .def("encode", [](Projector & self, MediaPrompt & prompt) { self.encode(prompt); }, py::arg("prompt"),
             release());

    // Scheduler.submit_media lives here so the scheduler's own binding stays text-only.
    py::object scheduler = m.attr("Scheduler");
    scheduler.attr("submit_media") = py::cpp_function(
        [](Scheduler & self, const MediaPrompt & prompt, const SamplingParams & params) {
            std::shared_ptr<RequestState> state;
            {
                gil_released nogil;
                state = self.submit(prompt.tokens, params, prompt.track);
            }
            return make_request_handle(std::move(state));
        },
        py::name("submit_media"), py::is_method(scheduler), py::arg("prompt"), py::arg("params"),
        "Queue an encoded MediaPrompt (Projector.tokenize, then Projector.encode).");
}

}  // namespace jan
