// The Python view of an engine Event (bound as jan._engine.Event in bind_event.cpp).
#pragma once

#include "request.h"

namespace jan {

// What drain()/wait() hand to Python: the event, and whether its log-probabilities were asked
// for (they are converted only then, and only when read).
struct PyEvent {
    Event event;
    bool with_logprobs = false;
};

}  // namespace jan
