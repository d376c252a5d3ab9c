#include "compress/specache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>

#include "base/error.h"
#include "base/private_files.h"
#include "base/thread_pool.h"
#include "compress/select.h"

namespace kvwise {

namespace {
std::atomic<int> g_file_counter{0};
}  // namespace

ColdTier::ColdTier(const SpeCacheConfig& cfg, int n_layers, int n_kv_heads, size_t row_bytes, int max_tokens)
    : n_kv_(n_kv_heads), row_bytes_(row_bytes), max_tokens_(max_tokens) {
  if (!cfg.cold_in_file) {
    memory_.resize(static_cast<size_t>(n_layers * n_kv_heads));
    return;
  }
  if (!cfg.path.empty()) {
    // A file the CLI's user named (never a request: the registry refuses path= there). Symlinks are
    // not followed.
    path_ = cfg.path;
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    KV_CHECK(fd_ >= 0, "SpeCache cold tier: cannot open {}: {}", path_, std::strerror(errno));
    return;
  }
  // A new file in a directory of kvwise's own (mode 0700): the process's, or a fresh one inside dir=.
  if (!cfg.dir.empty()) own_dir_ = make_private_dir(cfg.dir, "kvwise-specache");
  path_ = fmt::format("{}/cold-{}.kv", own_dir_.empty() ? process_private_dir() : own_dir_, g_file_counter++);
  remove_ = true;
  fd_ = create_exclusive(path_);
  if (fd_ < 0 && !own_dir_.empty()) remove_private_dir(own_dir_);
  KV_CHECK(fd_ >= 0, "SpeCache cold tier: cannot create {}: {}", path_, std::strerror(errno));
}

ColdTier::~ColdTier() {
  if (fd_ >= 0) ::close(fd_);
  if (remove_) ::unlink(path_.c_str());
  if (!own_dir_.empty()) remove_private_dir(own_dir_);
}

size_t ColdTier::offset(int layer, int head, int index) const {
  return ((static_cast<size_t>(layer) * static_cast<size_t>(n_kv_) + static_cast<size_t>(head)) *
              static_cast<size_t>(max_tokens_) +
          static_cast<size_t>(index)) *
         2 * row_bytes_;
}

void ColdTier::check_present() const {
  if (fd_ < 0) return;
  struct stat st {};
  KV_CHECK(::fstat(fd_, &st) == 0, "SpeCache cold tier {}: {}", path_, std::strerror(errno));
  KV_CHECK(st.st_nlink > 0, "SpeCache cold tier file {} was removed while in use; the full-precision KV is gone",
           path_);
}

void ColdTier::write(int layer, int head, int index0, int n, const uint8_t* k, const uint8_t* v) {
  if (n <= 0) return;
  KV_CHECK(index0 >= 0 && index0 + n <= max_tokens_, "SpeCache cold tier: token {} beyond the context of {}",
           index0 + n - 1, max_tokens_);
  const size_t pair = 2 * row_bytes_;
  std::vector<uint8_t> buf(static_cast<size_t>(n) * pair);
  for (int i = 0; i < n; ++i) {
    std::memcpy(buf.data() + static_cast<size_t>(i) * pair, k + static_cast<size_t>(i) * row_bytes_, row_bytes_);
    std::memcpy(buf.data() + static_cast<size_t>(i) * pair + row_bytes_, v + static_cast<size_t>(i) * row_bytes_,
                row_bytes_);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) {
    auto& m = memory_[static_cast<size_t>(layer * n_kv_ + head)];
    const size_t at = static_cast<size_t>(index0) * pair;
    if (m.size() < at + buf.size()) m.resize(at + buf.size());
    std::memcpy(m.data() + at, buf.data(), buf.size());
  } else {
    const off_t off = static_cast<off_t>(offset(layer, head, index0));
    const ssize_t w = ::pwrite(fd_, buf.data(), buf.size(), off);
    KV_CHECK(w == static_cast<ssize_t>(buf.size()), "SpeCache cold tier: writing {} bytes to {} failed: {}", buf.size(),
             path_, w < 0 ? std::strerror(errno) : "short write (is the disk full?)");
  }
  written_ += static_cast<size_t>(n);
}

void ColdTier::read(int layer, int head, std::span<const int> idx, uint8_t* k, uint8_t* v) {
  // Wanted rows closer than kMaxGap apart are read with one call (the rows between are read and
  // dropped): a few KiB more per call costs less than another system call.
  constexpr int kMaxGap = 16;
  const size_t pair = 2 * row_bytes_;
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < idx.size();) {
    size_t last = i;
    while (last + 1 < idx.size() && idx[last + 1] - idx[last] <= kMaxGap) ++last;
    const int first_row = idx[i], rows = idx[last] - first_row + 1;
    buf.resize(static_cast<size_t>(rows) * pair);
    if (fd_ < 0) {
      std::lock_guard<std::mutex> lock(mu_);
      const auto& m = memory_[static_cast<size_t>(layer * n_kv_ + head)];
      const size_t at = static_cast<size_t>(first_row) * pair;
      KV_CHECK(at + buf.size() <= m.size(), "SpeCache cold tier: token {} was never written", idx[last]);
      std::memcpy(buf.data(), m.data() + at, buf.size());
    } else {
      const ssize_t n = ::pread(fd_, buf.data(), buf.size(), static_cast<off_t>(offset(layer, head, first_row)));
      KV_CHECK(n == static_cast<ssize_t>(buf.size()), "SpeCache cold tier: reading {} failed: {}", path_,
               n < 0 ? std::strerror(errno) : "short read (was the file truncated?)");
    }
    for (size_t r = i; r <= last; ++r) {
      const size_t at = static_cast<size_t>(idx[r] - first_row) * pair;
      std::memcpy(k + r * row_bytes_, buf.data() + at, row_bytes_);
      std::memcpy(v + r * row_bytes_, buf.data() + at + row_bytes_, row_bytes_);
    }
    read_bytes_ += buf.size();
    i = last + 1;
  }
}

SpeCache::SpeCache(const SpeCacheConfig& cfg, const KvLayout& layout, int max_tokens)
    : cfg_(cfg),
      layout_(layout),
      cold_(cfg, layout.n_layers, layout.n_kv_heads, static_cast<size_t>(layout.head_dim) * 2, max_tokens) {
  KV_CHECK(layout.type == DType::F16, "specache needs the f16 KV store");
  const auto per_layer = std::vector<int>(static_cast<size_t>(layout.n_kv_heads), 0);
  written_.assign(static_cast<size_t>(layout.n_layers), per_layer);
  seen_.assign(static_cast<size_t>(layout.n_layers), per_layer);
  jobs_.resize(static_cast<size_t>(layout.n_layers));  // (the prefetch thread starts on first use)
}

SpeCache::~SpeCache() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SpeCache::capture(KvStore& kv, SeqId seq, int layer) {
  std::vector<uint8_t> k, v;
  for (int h = 0; h < layout_.n_kv_heads; ++h) {
    const auto& segs = kv.segments(seq, layer, h);
    const int nseg = segs.empty() ? 0 : segs[0].size(), len = kv.head_len(seq, layer, h);
    int& w = written_[static_cast<size_t>(layer)][static_cast<size_t>(h)];
    KV_CHECK(w >= nseg, "specache: tokens reached the low-bit copy without a cold-tier copy");
    const int n = nseg + len - w;
    if (n <= 0) continue;
    k.resize(static_cast<size_t>(n) * kv.row_bytes());
    v.resize(k.size());
    kv.copy_rows(seq, layer, h, w - nseg, n, k.data(), v.data());
    cold_.write(layer, h, w, n, k.data(), v.data());
    w += n;
  }
}

void SpeCache::after_layer(KvStore& kv, SeqId seq, int layer, int T, int speculative, ThreadPool* pool) {
  const int HK = layout_.n_kv_heads, G = layout_.n_heads / HK;
  if (layer == 0 && T == 2) ++stats_.steps;
  const bool read_now = !use_thread(pool);
  Job next;
  next.slots.resize(static_cast<size_t>(HK));
  if (read_now) {
    next.k.resize(static_cast<size_t>(HK));
    next.v.resize(static_cast<size_t>(HK));
  }
  std::vector<double> overlap(static_cast<size_t>(HK), -1.0);  // sampled steps: overlap per head
  std::vector<std::exception_ptr> errors(static_cast<size_t>(HK));
  const auto per_head = [&](size_t hi, int) {
    try {
      const int h = static_cast<int>(hi);
      select_head(kv, seq, layer, h, G, T, speculative, next.slots[hi], overlap[hi]);
      if (read_now) read_head(layer, h, next.slots[hi], next.k[hi], next.v[hi]);
    } catch (...) {
      errors[hi] = std::current_exception();  // rethrown on the engine's thread below
    }
  };
  // Threads pay off on long rows only: waking them costs more than selecting among a few thousand.
  constexpr int kParallelTokens = 4096;
  const auto& segs0 = kv.segments(seq, layer, 0);
  if (pool && !segs0.empty() && segs0[0].size() >= kParallelTokens)
    pool->parallel_tasks(static_cast<size_t>(HK), per_head);
  else
    for (int h = 0; h < HK; ++h) per_head(static_cast<size_t>(h), 0);
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  for (double o : overlap)
    if (o >= 0) {
      stats_.overlap_sum += o;
      ++stats_.overlap_count;
    }
  if (read_now) {
    std::lock_guard<std::mutex> lock(mu_);
    Job& j = jobs_[static_cast<size_t>(layer)];
    j = std::move(next);
    j.queued = j.reading = j.done = true;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    Job& j = jobs_[static_cast<size_t>(layer)];
    j = std::move(next);
    j.gen = ++gen_;
    j.queued = true;
    j.reading = false;
    j.done = false;
    queue_.push_back(layer);
  }
  cv_.notify_all();
}

bool SpeCache::use_thread(const ThreadPool* pool) {
  using P = SpeCacheConfig::Prefetch;
  bool thread = cfg_.prefetch == P::Thread;
  if (cfg_.prefetch == P::Auto) {
    static const int cores = usable_cores();  // affinity and cgroup quota (reads /sys and /proc: once)
    thread = cores > (pool ? pool->size() : 1);
  }
  if (thread && !thread_.joinable()) thread_ = std::thread([this] { worker(); });
  stats_.thread_prefetch = thread;
  return thread;
}

void SpeCache::select_head(const KvStore& kv, SeqId seq, int layer, int h, int G, int T, int speculative,
                           std::vector<int>& pick, double& overlap) const {
  const auto& segs = kv.segments(seq, layer, h);
  const int n_now = segs.empty() ? 0 : segs[0].size();
  // GQA-summed probability rows over the segment as it was during attention.
  const HeadTaps& taps = kv.taps(seq, layer, h * G);
  const int n_at = taps.segment_cols;
  const auto row = [&](int r) {
    KV_CHECK(taps.segment_rows.size() >= static_cast<size_t>((r + 1) * n_at), "specache: segment taps missing");
    return std::span<const float>(taps.segment_rows.data() + static_cast<size_t>(r) * static_cast<size_t>(n_at),
                                  static_cast<size_t>(n_at));
  };
  if (T == 2 && speculative == 1 && n_at > 0 && cfg_.top_k > 0 && stats_.steps % cfg_.hit_every == 0) {
    // The real token's own top-k against the set prefetched for it.
    const int kk = std::min(cfg_.top_k, n_at);
    const std::vector<int> truth = top_k_indices(row(0), kk);  // ascending
    const auto& have = kv.exact_rows(seq, layer, h).slots;
    std::vector<int> both;
    std::set_intersection(truth.begin(), truth.end(), have.begin(), have.end(), std::back_inserter(both));
    overlap = static_cast<double>(both.size()) / static_cast<double>(kk);
  }
  // Next step's set: top-k of the last (speculative) row; tokens demoted since that attention first.
  std::vector<float> score(static_cast<size_t>(n_now), std::numeric_limits<float>::infinity());
  if (n_at > 0) std::copy_n(row(T - 1).begin(), n_at, score.begin());
  pick = top_k_indices(score, std::min(cfg_.top_k, n_now));  // ascending
}

void SpeCache::install(KvStore& kv, SeqId seq, int layer) {
  if (layer == 0) cold_.check_present();
  std::unique_lock<std::mutex> lock(mu_);
  Job& j = jobs_[static_cast<size_t>(layer)];
  if (!j.queued) return;
  if (!j.reading && !j.done) {
    // The worker has not started this one (both cores busy): read it here rather than wait.
    queue_.erase(std::find(queue_.begin(), queue_.end(), layer));
    j.reading = true;
    ++stats_.inline_reads;
    const std::vector<std::vector<int>> slots = j.slots;
    lock.unlock();
    std::vector<std::vector<uint8_t>> k, v;
    read_job(layer, slots, k, v);  // errors propagate from here directly
    lock.lock();
    j.k = std::move(k);
    j.v = std::move(v);
    j.done = true;
  }
  cv_.wait(lock, [&] { return j.done || error_; });
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    j.queued = false;
    std::rethrow_exception(e);
  }
  j.queued = false;
  const size_t halves = static_cast<size_t>(layout_.head_dim);
  for (int h = 0; h < layout_.n_kv_heads; ++h) {
    KvStore::ExactRows rows;
    rows.slots = std::move(j.slots[static_cast<size_t>(h)]);
    rows.k.resize(rows.slots.size() * halves);
    rows.v.resize(rows.k.size());
    if (!rows.k.empty()) {  // (memcpy of nothing from an empty vector's null data is still UB)
      std::memcpy(rows.k.data(), j.k[static_cast<size_t>(h)].data(), rows.k.size() * 2);
      std::memcpy(rows.v.data(), j.v[static_cast<size_t>(h)].data(), rows.v.size() * 2);
    }
    kv.set_exact_rows(seq, layer, h, std::move(rows));
  }
}

void SpeCache::worker() {
  for (;;) {
    int layer;
    long gen;
    std::vector<std::vector<int>> slots;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      layer = queue_.front();
      queue_.erase(queue_.begin());
      Job& j = jobs_[static_cast<size_t>(layer)];
      j.reading = true;
      slots = j.slots;
      gen = j.gen;
    }
    std::vector<std::vector<uint8_t>> k, v;
    std::exception_ptr err;
    try {
      read_job(layer, slots, k, v);
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      Job& j = jobs_[static_cast<size_t>(layer)];
      if (j.gen != gen) continue;  // superseded while it was being read
      j.k = std::move(k);
      j.v = std::move(v);
      j.done = true;
      if (err) error_ = err;
    }
    cv_.notify_all();
  }
}

void SpeCache::read_job(int layer, const std::vector<std::vector<int>>& slots, std::vector<std::vector<uint8_t>>& k,
                        std::vector<std::vector<uint8_t>>& v) {
  k.assign(slots.size(), {});
  v.assign(slots.size(), {});
  for (size_t h = 0; h < slots.size(); ++h) read_head(layer, static_cast<int>(h), slots[h], k[h], v[h]);
}

void SpeCache::read_head(int layer, int head, const std::vector<int>& slots, std::vector<uint8_t>& k,
                         std::vector<uint8_t>& v) {
  k.resize(slots.size() * static_cast<size_t>(layout_.head_dim) * 2);
  v.resize(k.size());
  cold_.read(layer, head, slots, k.data(), v.data());
}

void SpeCache::on_guess(bool hit) {
  ++stats_.guesses;
  if (hit) ++stats_.guess_hits;
}

const SpeCacheStats& SpeCache::stats() {
  stats_.cold_bytes = cold_.bytes();
  stats_.cold_bytes_read = cold_.bytes_read();
  return stats_;
}

}  // namespace kvwise
