// Files kvwise creates on its own behalf (SpeCache cold tiers, prefix-cache disk blocks) live in a
// directory only this user can enter, and are created with O_CREAT|O_EXCL|O_NOFOLLOW, so a planted
// symlink or a file another user prepared is never followed, truncated or read. Thread-safe.
#pragma once
#include <string>

namespace kvwise {

// An operator-given directory checked for private use: created with mode 0700 when missing; must be a
// real directory (not a symlink), owned by this user and not writable by group or others. Returns its
// path; throws kvwise::Error naming what is wrong.
std::string checked_private_dir(const std::string& dir);

// A fresh directory (mkdtemp: created atomically with mode 0700, so `parent` may be a shared one such
// as /tmp) under `parent` or, when parent is empty, under $TMPDIR or /tmp. The caller removes it
// (remove_private_dir) when done.
std::string make_private_dir(const std::string& parent, const std::string& prefix);

// The process-wide private directory under $TMPDIR (or /tmp), made on first use, removed at exit.
const std::string& process_private_dir();

// Creates `path` (a new file, mode 0600) with O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC and returns the
// descriptor; -1 with errno set on failure.
int create_exclusive(const std::string& path);

// Removes the files directly inside `dir` and then `dir` (errors ignored: a best-effort cleanup).
void remove_private_dir(const std::string& dir);

}  // namespace kvwise
