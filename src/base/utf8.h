// UTF-8 checks for text that leaves the engine (generated text, error messages): tokens split
// characters (byte-fallback pieces of a CJK character or an emoji) and vocabularies can hold bytes
// that are no UTF-8 at all. Pure functions, thread-safe.
#pragma once
#include <string>
#include <string_view>

namespace kvwise {

// The length of the longest prefix of `s` that does not end inside a character that the bytes after it
// could still complete. Invalid bytes do not stop it (utf8_sanitize replaces them); only a valid
// but unfinished last sequence is held back.
size_t utf8_complete_prefix(std::string_view s);

// `s` with each byte that is not part of a well-formed UTF-8 sequence (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF) replaced by U+FFFD.
std::string utf8_sanitize(std::string_view s);

bool utf8_valid(std::string_view s);

}  // namespace kvwise
