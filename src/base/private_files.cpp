#include "base/private_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "base/error.h"

namespace kvwise {

std::string checked_private_dir(const std::string& dir) {
  KV_CHECK(!dir.empty(), "an empty directory name");
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    fail("cannot create the directory '{}': {}", dir, std::strerror(errno));
  struct stat st {};
  KV_CHECK(::lstat(dir.c_str(), &st) == 0, "cannot stat '{}': {}", dir, std::strerror(errno));
  KV_CHECK(!S_ISLNK(st.st_mode), "'{}' is a symbolic link; give the real directory", dir);
  KV_CHECK(S_ISDIR(st.st_mode), "'{}' is not a directory", dir);
  KV_CHECK(st.st_uid == ::geteuid(),
           "'{}' belongs to another user (uid {}); kvwise keeps its files in a directory of its own", dir, st.st_uid);
  KV_CHECK((st.st_mode & 022) == 0,
           "'{}' is writable by group or others (mode {:o}); make it private (chmod 700) or give another directory",
           dir, st.st_mode & 0777);
  return dir;
}

std::string make_private_dir(const std::string& parent, const std::string& prefix) {
  // mkdtemp creates a new directory of mode 0700 atomically, so the parent may be shared (/tmp,
  // /var/tmp): what is private is the fresh directory.
  std::string base = parent;
  if (base.empty()) {
    const char* t = std::getenv("TMPDIR");
    base = t && *t ? t : "/tmp";
  }
  std::string tmpl = base + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  KV_CHECK(::mkdtemp(buf.data()) != nullptr, "cannot create a private directory under '{}': {}", base,
           std::strerror(errno));
  return std::string(buf.data());
}

namespace {
std::string g_process_dir;
void remove_process_dir() {
  if (!g_process_dir.empty()) remove_private_dir(g_process_dir);
}
}  // namespace

const std::string& process_private_dir() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_process_dir = make_private_dir("", "kvwise-" + std::to_string(static_cast<long>(::getpid())));
    std::atexit(remove_process_dir);
  });
  return g_process_dir;
}

int create_exclusive(const std::string& path) {
  return ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

void remove_private_dir(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") ::unlink((dir + "/" + name).c_str());
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

}  // namespace kvwise
