#include "base/error.h"
// Header-only today; the translation unit keeps the library non-empty and the header self-contained.
