#include "serve/disk_tier.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/private_files.h"

namespace kvwise {
namespace {

bool write_all(int fd, const void* p, size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

DiskTier::DiskTier(const std::string& dir, const BlockIdentity& identity) : id_(identity) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  KV_CHECK(!ec && std::filesystem::is_directory(dir), "cannot create the prefix cache directory '{}': {}", dir,
           ec.message());
  root_ = make_private_dir(dir, "kvwise-prefix");
}

DiskTier::~DiskTier() {
  remove_private_dir(root_);
}

std::string DiskTier::path(prefix::BlockKey key) const {
  return fmt::format("{}/{:016x}.kv", root_, key);
}

void DiskTier::disable(const std::string& why) {
  if (!c_.healthy) return;
  c_.healthy = false;
  std::fprintf(stderr, "kvwise: the prefix cache's disk tier is disabled: %s\n", why.c_str());
}

bool DiskTier::put(prefix::BlockKey key, std::span<const uint8_t> block) {
  if (!c_.healthy) return false;
  const std::string p = path(key);
  ::unlink(p.c_str());  // a stale file of an earlier demotion (the directory is ours alone)
  files_.erase(key);
  const int fd = create_exclusive(p);
  if (fd < 0) {
    ++c_.put_errors;
    disable(fmt::format("cannot create {}: {}", p, std::strerror(errno)));
    return false;
  }
  const BlockRecordHeader h = block_record_header(id_, key, block);
  const bool ok = write_all(fd, &h, sizeof h) && write_all(fd, block.data(), block.size());
  const int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(p.c_str());
    ++c_.put_errors;
    disable(fmt::format("writing {} failed: {}", p, std::strerror(err)));
    return false;
  }
  files_.insert(key);
  ++c_.puts;
  c_.bytes_written += block.size();
  return true;
}

TierGet DiskTier::get(prefix::BlockKey key, std::span<uint8_t> out) {
  if (!files_.contains(key)) {
    ++c_.misses;
    return TierGet::missing;
  }
  const int fd = ::open(path(key).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    ++c_.errors;
    return TierGet::error;
  }
  BlockRecordHeader h;
  bool ok = read_all(fd, &h, sizeof h) && read_all(fd, out.data(), out.size());
  char extra = 0;
  ok = ok && ::read(fd, &extra, 1) == 0;  // nothing after the payload
  ::close(fd);
  if (!ok || !block_record_matches(h, id_, key, out)) {
    ++c_.rejected;
    return TierGet::rejected;
  }
  ++c_.hits;
  c_.bytes_read += out.size();
  return TierGet::hit;
}

void DiskTier::erase(prefix::BlockKey key) {
  if (!files_.erase(key)) return;
  ::unlink(path(key).c_str());
  ++c_.erases;
}

}  // namespace kvwise
