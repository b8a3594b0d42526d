#include "deep_stack.h"

#include <algorithm>
#include <exception>

#if !defined(_WIN32)
#include <pthread.h>
#endif

namespace jan {

namespace {

struct Call {
    const std::function<void()> * fn;
    std::exception_ptr error;
};

#if !defined(_WIN32)
void * run_call(void * arg) {
    auto * call = static_cast<Call *>(arg);
    try {
        (*call->fn)();
    } catch (...) {
        call->error = std::current_exception();
    }
    return nullptr;
}
#endif

}  // namespace

void run_with_stack(size_t stack_bytes, const std::function<void()> & fn) {
#if defined(_WIN32)
    (void)stack_bytes;
    fn();
#else
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) {
        fn();
        return;
    }
    Call call{&fn, nullptr};
    pthread_t thread;
    int rc = pthread_attr_setstacksize(&attr, stack_bytes);
    if (rc == 0) rc = pthread_create(&thread, &attr, run_call, &call);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        // no such thread now (address space, thread limits): on the caller's stack, as before this existed; only a
        // run of one character class far longer than that stack holds still overflows it
        fn();
        return;
    }
    pthread_join(thread, nullptr);
    if (call.error) std::rethrow_exception(call.error);
#endif
}

void run_for_text(size_t text_bytes, const std::function<void()> & fn) {
    if (text_bytes <= kShallowTextBytes) {
        fn();
        return;
    }
    run_with_stack(std::min(kMaxStackBytes, (size_t)(16u << 20) + text_bytes * kStackBytesPerTextByte), fn);
}

}  // namespace jan
