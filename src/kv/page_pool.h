// Fixed-size pages from one pool. Every (sequence, layer, KV head) list takes its pages from here, so
// heads can hold different numbers of tokens and a freed page is reusable by any other list at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace kvwise {

class PagePool {
 public:
  explicit PagePool(size_t page_bytes);
  ~PagePool();
  PagePool(const PagePool&) = delete;
  PagePool& operator=(const PagePool&) = delete;

  uint32_t alloc();
  void release(uint32_t page);
  uint8_t* data(uint32_t page) { return pages_[page]; }
  const uint8_t* data(uint32_t page) const { return pages_[page]; }

  size_t page_bytes() const { return page_bytes_; }
  size_t pages_in_use() const;
  size_t bytes_in_use() const { return pages_in_use() * page_bytes_; }
  // High-water mark of pages in use since construction or the last reset_peak().
  size_t peak_pages() const;
  size_t peak_bytes() const { return peak_pages() * page_bytes_; }
  void reset_peak();
  // Pages held from the system (in use + idle on the free list).
  size_t pages_reserved() const;
  // Gives the memory of idle pages back to the system.
  void trim();

 private:
  size_t page_bytes_;
  mutable std::mutex mu_;
  std::vector<uint8_t*> pages_;  // nullptr once trimmed
  std::vector<uint32_t> free_;
  size_t in_use_ = 0;
  size_t peak_ = 0;
};

}  // namespace kvwise
