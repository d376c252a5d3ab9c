#include "kv/page_pool.h"

#include <cstdlib>
#include <new>

#include "base/error.h"

namespace kvwise {

namespace {
uint8_t* allocate_page(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<uint8_t*>(p);
}
}  // namespace

PagePool::PagePool(size_t page_bytes) : page_bytes_(page_bytes) {
  KV_CHECK(page_bytes > 0, "page size must be positive");
}

PagePool::~PagePool() {
  for (uint8_t* p : pages_) std::free(p);
}

uint32_t PagePool::alloc() {
  std::lock_guard<std::mutex> lock(mu_);
  ++in_use_;
  if (in_use_ > peak_) peak_ = in_use_;
  while (!free_.empty()) {
    const uint32_t id = free_.back();
    free_.pop_back();
    if (pages_[id] == nullptr) pages_[id] = allocate_page(page_bytes_);
    return id;
  }
  pages_.push_back(allocate_page(page_bytes_));
  return static_cast<uint32_t>(pages_.size() - 1);
}

void PagePool::release(uint32_t page) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(page);
  --in_use_;
}

size_t PagePool::pages_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

size_t PagePool::peak_pages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

void PagePool::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = in_use_;
}

size_t PagePool::pages_reserved() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const uint8_t* p : pages_) n += p != nullptr;
  return n;
}

void PagePool::trim() {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint32_t id : free_) {
    std::free(pages_[id]);
    pages_[id] = nullptr;
  }
}

}  // namespace kvwise
