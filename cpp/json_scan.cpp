// Why not a library: jan's server needs the count before it parses a body (a parser builds every value, holding the
// GIL, which is what the count guards against), and off the GIL (the scan of 16 MiB takes ~10 ms); the JSON
// libraries Python reaches (json, orjson, pydantic-core) count nothing without building it.
#include "json_scan.h"

#include <cstring>

namespace jan {

std::size_t json_values_outside_strings(const char * data, std::size_t n) {
    std::size_t count = 0;
    const char * p = data;
    const char * end = data + n;
    while (p < end) {
        // outside a string: count up to the next quote (memchr finds it at memory speed)
        const char * quote = static_cast<const char *>(std::memchr(p, '"', static_cast<std::size_t>(end - p)));
        const char * stop = quote ? quote : end;
        for (; p < stop; ++p) {
            const char c = *p;
            count += (c == ',') | (c == '[') | (c == '{');
        }
        if (!quote) {
            break;
        }
        // inside the string: skip to its closing quote, a backslash escaping the byte after it
        p = quote + 1;
        while (p < end) {
            const char * q = static_cast<const char *>(std::memchr(p, '"', static_cast<std::size_t>(end - p)));
            if (!q) {
                return count;  // never closed: not JSON, the parser says so
            }
            // the quote closes the string unless an odd run of backslashes comes right before it
            std::size_t slashes = 0;
            for (const char * b = q; b > p && b[-1] == '\\'; --b) {
                ++slashes;
            }
            p = q + 1;
            if (slashes % 2 == 0) {
                break;
            }
        }
    }
    return count;
}

}  // namespace jan
