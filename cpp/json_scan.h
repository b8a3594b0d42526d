// Counting a JSON text's values without parsing it, for the server's max_json_values check.
#pragma once

#include <cstddef>

namespace jan {

// The commas and opening brackets ('[' and '{') of the JSON text `data[0, n)` that lie outside its strings: every
// value of an array or object but its last is followed by a comma and every array and object opens with its bracket,
// so this is about its number of values (exact to within one per array or object) — without the commas and brackets
// of the text a string holds (a pasted CSV, code, a JSON document sent as text), which are no values. A string runs
// from a '"' to the next '"' not escaped by a backslash; the bytes of a UTF-8 character past its first are never
// ASCII, so the scan reads bytes. A text that is not valid JSON (a string never closed) is counted as far as it goes:
// the parser that follows refuses it. O(n), no allocation.
std::size_t json_values_outside_strings(const char * data, std::size_t n);

}  // namespace jan
