#include "kv/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/fp16.h"
#include "tensor/kernels.h"

namespace kvwise {

namespace {

constexpr int kBlasMinQueries = 16;

float query_scale(const AttentionQuery& a, int hd) {
  return a.scale > 0 ? a.scale : 1.0f / std::sqrt(static_cast<float>(hd));
}

// Number of slots whose position is <= p (slots are in ascending position order).
int count_visible(const KvStore& store, const std::vector<uint32_t>& pages, int len, int32_t p) {
  const int P = store.layout().page_tokens;
  if (len == 0) return 0;
  const auto pos_at = [&](int slot) { return store.page_pos(pages[static_cast<size_t>(slot / P)])[slot % P]; };
  if (pos_at(len - 1) <= p) return len;
  int lo = 0, hi = len - 1;  // invariant: answer in [lo, hi]
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (pos_at(mid) <= p)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

void resize_at_least(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n, 0.0f);
}

// Folds one query's probability row (n_visible entries of a head holding n_total slots) into the taps.
// Only the chunk's last query (last_query) updates last_row: earlier rows would be overwritten anyway.
void record_taps(HeadTaps& t, const TapConfig& cfg, const float* p, int n_visible, int n_total, int32_t qpos,
                 bool last_query) {
  const size_t n = static_cast<size_t>(n_total);
  if (cfg.col_sums) {
    resize_at_least(t.col_sums, n);
    for (int j = 0; j < n_visible; ++j) t.col_sums[static_cast<size_t>(j)] += p[j];
  }
  if (cfg.last_row && last_query) {
    t.last_row.assign(n, 0.0f);
    std::copy(p, p + n_visible, t.last_row.begin());
  }
  const int32_t w0 = cfg.prompt_end - cfg.window;
  if (cfg.window > 0 && qpos >= w0 && qpos < cfg.prompt_end) {
    resize_at_least(t.window_sum, n);
    resize_at_least(t.window_sumsq, n);
    double entropy = 0;
    // During prefill slot j holds position j; entropy covers the prefix columns only.
    const int prefix = cfg.window_entropy ? std::min(n_visible, static_cast<int>(w0)) : 0;
    for (int j = 0; j < n_visible; ++j) {
      t.window_sum[static_cast<size_t>(j)] += p[j];
      t.window_sumsq[static_cast<size_t>(j)] += p[j] * p[j];
      if (j < prefix && p[j] > 0) entropy -= static_cast<double>(p[j] * std::log(p[j]));
    }
    t.window_entropy += entropy;
    if (cfg.keep_window_rows) {
      if (t.window_cols == 0) {
        t.window_cols = std::max<int>(cfg.prompt_end, n_total);
        t.window_rows.assign(static_cast<size_t>(cfg.window) * static_cast<size_t>(t.window_cols), 0.0f);
      }
      const int cols = std::min(n_visible, t.window_cols);
      std::copy(p, p + cols, t.window_rows.begin() + static_cast<int64_t>(qpos - w0) * t.window_cols);
    }
  }
}

// One task of the direct path: queries t of the G query heads of KV head h, over slots [s0, s1).
struct Partial {
  float max = -std::numeric_limits<float>::infinity();
  float sum = 0;
};

// Scores of R query rows over slots [s0, s1) of a low-precision segment: the codes are read directly;
// a slot after row r's position (qpos[r]) is masked; in the first segment, slots with exact rows
// (SpeCache's prefetched pairs) use those instead.
void segment_scores(const KvStore& store, SeqId seq, int layer, int h, int seg_index, const float* Q, int R,
                    float scale, const int32_t* qpos, int s0, int s1, float* S) {
  const int n = s1 - s0;
  const QuantSegment& seg = store.segments(seq, layer, h)[static_cast<size_t>(seg_index)];
  seg.scores(Q, R, scale, s0, s1, S, n);
  const auto& pos = seg.positions();
  for (int r = 0; r < R; ++r) {
    if (seg.max_position() <= qpos[r]) continue;  // decoding: every held token is in the past
    for (int j = s0; j < s1; ++j)
      if (pos[static_cast<size_t>(j)] > qpos[r]) S[r * n + (j - s0)] = -std::numeric_limits<float>::infinity();
  }
  if (seg_index != 0) return;
  const KvStore::ExactRows& ex = store.exact_rows(seq, layer, h);
  const int hd = seg.head_dim();
  const auto lo = std::lower_bound(ex.slots.begin(), ex.slots.end(), s0);
  for (auto it = lo; it != ex.slots.end() && *it < s1; ++it) {
    const int j = *it;
    const size_t i = static_cast<size_t>(it - ex.slots.begin());
    thread_local std::vector<float> one;
    one.resize(static_cast<size_t>(R));
    kernels().kv_scores(true, ex.k.data() + i * static_cast<size_t>(hd), 1, hd, Q, R, scale, one.data(), 1);
    for (int r = 0; r < R; ++r)
      if (pos[static_cast<size_t>(j)] <= qpos[r]) S[r * n + (j - s0)] = one[static_cast<size_t>(r)];
  }
}

void segment_accum(const KvStore& store, SeqId seq, int layer, int h, int seg_index, int R, int s0, int s1, float* P,
                   float* O) {
  const int n = s1 - s0;
  const QuantSegment& seg = store.segments(seq, layer, h)[static_cast<size_t>(seg_index)];
  static const KvStore::ExactRows kNone;
  const KvStore::ExactRows& ex = seg_index == 0 ? store.exact_rows(seq, layer, h) : kNone;
  const auto lo = std::lower_bound(ex.slots.begin(), ex.slots.end(), s0);
  const auto hi = std::lower_bound(lo, ex.slots.end(), s1);
  if (lo == hi) {
    seg.accumulate(P, R, n, s0, s1, O);
    return;
  }
  // Exact rows replace the low-bit values of their slots: their weights are set aside (zero in P while
  // the low-bit values are summed), then the exact rows are added with them and P is restored.
  float* Pw = P;
  thread_local std::vector<float> saved;
  saved.clear();
  for (auto it = lo; it != hi; ++it)
    for (int r = 0; r < R; ++r) {
      float& w = Pw[r * n + (*it - s0)];
      saved.push_back(w);
      w = 0.0f;
    }
  seg.accumulate(P, R, n, s0, s1, O);
  const int hd = seg.head_dim();
  size_t si = 0;
  for (auto it = lo; it != hi; ++it) {
    for (int r = 0; r < R; ++r) Pw[r * n + (*it - s0)] = saved[si++];
    const size_t i = static_cast<size_t>(it - ex.slots.begin());
    kernels().kv_accum(true, ex.v.data() + i * static_cast<size_t>(hd), 1, hd, P + (*it - s0), R, n, O);
  }
}

// The direct path: per KV head, tasks over chunks of its pages and of its segments; every task scores
// all T x G query rows of the head at once (each K/V byte is read once per chunk, whatever T is),
// masks each row causally, and keeps per-row partial softmax sums that a log-sum-exp merge combines.
void attend_direct(ThreadPool& pool, KvStore& store, SeqId seq, int layer, const AttentionQuery& a) {
  const KvLayout& L = store.layout();
  const int H = L.n_heads, HK = L.n_kv_heads, G = H / HK, hd = L.head_dim, P = L.page_tokens;
  const int T = a.T, R = T * G;  // query rows per KV head: row r = t * G + g
  const bool f16 = L.type == DType::F16;
  const float scale = query_scale(a, hd);
  const Kernels& k = kernels();

  // The queries of each KV head, rows contiguous; their positions per row.
  std::vector<float> Qh(static_cast<size_t>(HK) * static_cast<size_t>(R * hd));
  for (int h = 0; h < HK; ++h)
    for (int t = 0; t < T; ++t)
      std::copy_n(a.q + t * a.q_stride + h * G * hd, G * hd, Qh.begin() + (static_cast<int64_t>(h) * R + t * G) * hd);
  std::vector<int32_t> rpos(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r) rpos[static_cast<size_t>(r)] = a.pos[r / G];

  struct Task {
    int h, s0, s1;
    int seg = -1;  // -1: pages; else the segment's index
  };
  std::vector<Task> tasks;
  std::vector<int> first_task, first_seg_task, n_visible;  // per h; n_visible per (h, t) over the pages
  std::vector<int> n_hidden;                               // per (h, t): leading slots outside the sliding window
  int max_len = 0;
  for (int h = 0; h < HK; ++h) max_len = std::max(max_len, store.head_len(seq, layer, h));
  // Chunks of whole pages, enough of them to keep every thread busy even with few KV heads.
  const int want_chunks = std::max(1, 4 * pool.size() / HK);
  const int chunk = std::max(P, (max_len / want_chunks + P - 1) / P * P);
  for (int h = 0; h < HK; ++h) {
    const auto& pages = store.head_pages(seq, layer, h);
    const int len = store.head_len(seq, layer, h);
    first_task.push_back(static_cast<int>(tasks.size()));
    for (int t = 0; t < T; ++t) {
      n_visible.push_back(count_visible(store, pages, len, a.pos[t]));
      n_hidden.push_back(a.window > 0 ? count_visible(store, pages, len, a.pos[t] - a.window) : 0);
    }
    const int nv = *std::max_element(n_visible.end() - T, n_visible.end());
    const int nh = *std::min_element(n_hidden.end() - T, n_hidden.end()) / P * P;  // whole pages nobody sees
    for (int s0 = nh; s0 < nv; s0 += chunk) tasks.push_back({h, s0, std::min(nv, s0 + chunk)});
    if (nv == 0) tasks.push_back({h, 0, 0});
    first_seg_task.push_back(static_cast<int>(tasks.size()));
    const auto& segs = store.segments(seq, layer, h);
    for (size_t si = 0; si < segs.size(); ++si) {
      const int n = segs[si].size(), g = segs[si].format().group;
      const int seg_chunk = std::max(256, (n / want_chunks + g - 1) / g * g);
      for (int s0 = 0; s0 < n; s0 += seg_chunk)
        tasks.push_back({h, s0, std::min(n, s0 + seg_chunk), static_cast<int>(si)});
    }
  }
  first_task.push_back(static_cast<int>(tasks.size()));

  // Scores per (task, row) for the task's slot range; partial outputs per (task, row).
  std::vector<size_t> score_off(tasks.size() + 1, 0);
  for (size_t i = 0; i < tasks.size(); ++i)
    score_off[i + 1] = score_off[i] + static_cast<size_t>(R) * static_cast<size_t>(tasks[i].s1 - tasks[i].s0);
  std::vector<float> scores(score_off.back());
  std::vector<float> partial_out(tasks.size() * static_cast<size_t>(R * hd), 0.0f);
  std::vector<Partial> partial(tasks.size() * static_cast<size_t>(R));

  pool.parallel_tasks(tasks.size(), [&](size_t ti, int) {
    const Task& task = tasks[ti];
    const int n = task.s1 - task.s0;
    if (n == 0) return;
    float* S = scores.data() + score_off[ti];
    const float* Q = Qh.data() + static_cast<size_t>(task.h) * static_cast<size_t>(R * hd);
    float* O = partial_out.data() + ti * static_cast<size_t>(R * hd);
    if (task.seg >= 0) {
      segment_scores(store, seq, layer, task.h, task.seg, Q, R, scale, rpos.data(), task.s0, task.s1, S);
      soft_cap(S, static_cast<size_t>(R) * static_cast<size_t>(n), a.softcap);
      if (a.window > 0) {
        const auto& pos = store.segments(seq, layer, task.h)[static_cast<size_t>(task.seg)].positions();
        for (int r = 0; r < R; ++r)
          for (int j = task.s0; j < task.s1; ++j)
            if (pos[static_cast<size_t>(j)] <= rpos[static_cast<size_t>(r)] - a.window)
              S[r * n + (j - task.s0)] = -std::numeric_limits<float>::infinity();
      }
    } else {
      const auto& pages = store.head_pages(seq, layer, task.h);
      for (int s = task.s0; s < task.s1;) {
        const int in_page = s % P, cnt = std::min(P - in_page, task.s1 - s);
        const uint32_t page = pages[static_cast<size_t>(s / P)];
        const size_t off = static_cast<size_t>(in_page) * static_cast<size_t>(hd) * (f16 ? 2 : 4);
        k.kv_scores(f16, static_cast<const uint8_t*>(store.page_k(page)) + off, cnt, hd, Q, R, scale, S + (s - task.s0),
                    n);
        s += cnt;
      }
      soft_cap(S, static_cast<size_t>(R) * static_cast<size_t>(n), a.softcap);
      for (int r = 0; r < R; ++r) {  // causal: slots past each row's visible count (and before its window)
        const int nv = n_visible[static_cast<size_t>(task.h * T + r / G)];
        const int nh = n_hidden[static_cast<size_t>(task.h * T + r / G)];
        for (int j = std::max(task.s0, nv); j < task.s1; ++j)
          S[r * n + (j - task.s0)] = -std::numeric_limits<float>::infinity();
        for (int j = task.s0; j < std::min(task.s1, nh); ++j)
          S[r * n + (j - task.s0)] = -std::numeric_limits<float>::infinity();
      }
    }
    for (int r = 0; r < R; ++r) {
      float* row = S + r * n;
      Partial& pr = partial[ti * static_cast<size_t>(R) + static_cast<size_t>(r)];
      pr.max = k.max_of(row, n);
      if (pr.max == -std::numeric_limits<float>::infinity()) {  // every slot masked
        std::fill(row, row + n, 0.0f);
        pr.sum = 0;
      } else {
        pr.sum = k.exp_shift_sum(row, n, pr.max);
      }
    }
    if (task.seg >= 0) {
      segment_accum(store, seq, layer, task.h, task.seg, R, task.s0, task.s1, S, O);
      return;
    }
    const auto& pages = store.head_pages(seq, layer, task.h);
    for (int s = task.s0; s < task.s1;) {
      const int in_page = s % P, cnt = std::min(P - in_page, task.s1 - s);
      const uint32_t page = pages[static_cast<size_t>(s / P)];
      const size_t off = static_cast<size_t>(in_page) * static_cast<size_t>(hd) * (f16 ? 2 : 4);
      k.kv_accum(f16, static_cast<const uint8_t*>(store.page_v(page)) + off, cnt, hd, S + (s - task.s0), R, n, O);
      s += cnt;
    }
  });

  // Log-sum-exp merge of the chunks of each (h, row); taps see the final probabilities.
  const TapConfig& cfg = store.tap_config(seq);
  std::vector<float> prob, scale_c;
  std::vector<float> task_weight;  // a chunk's share of each row, for the segment-row sums
  if (cfg.enabled && cfg.segment_rows) task_weight.assign(tasks.size() * static_cast<size_t>(R), 0.0f);
  for (int h = 0; h < HK; ++h) {
    const int t0 = first_task[static_cast<size_t>(h)], t1 = first_task[static_cast<size_t>(h) + 1];
    const int ts = first_seg_task[static_cast<size_t>(h)];
    const auto& segs = store.segments(seq, layer, h);
    const int n_seg0 = segs.empty() ? 0 : segs[0].size();
    if (cfg.enabled && cfg.segment_rows) {
      HeadTaps& first = store.taps(seq, layer, h * G);  // the group's sums live with its first query head
      first.segment_cols = n_seg0;
      first.segment_rows.assign(static_cast<size_t>(T) * static_cast<size_t>(n_seg0), 0.0f);
    }
    for (int r = 0; r < R; ++r) {
      const int t = r / G, g = r % G;
      float M = -std::numeric_limits<float>::infinity();
      for (int ti = t0; ti < t1; ++ti) {
        const Partial& pr = partial[static_cast<size_t>(ti * R + r)];
        if (pr.sum > 0) M = std::max(M, pr.max);
      }
      float Lsum = 0;
      scale_c.resize(static_cast<size_t>(t1 - t0));
      for (int ti = t0; ti < t1; ++ti) {
        const Partial& pr = partial[static_cast<size_t>(ti * R + r)];
        scale_c[static_cast<size_t>(ti - t0)] = pr.sum > 0 ? std::exp(pr.max - M) : 0.0f;
        Lsum += pr.sum * scale_c[static_cast<size_t>(ti - t0)];
      }
      float* out = a.out + t * a.out_stride + (h * G + g) * hd;
      std::fill(out, out + hd, 0.0f);
      for (int ti = t0; ti < t1; ++ti) {
        const float w = Lsum > 0 ? scale_c[static_cast<size_t>(ti - t0)] / Lsum : 0.0f;
        if (w == 0) continue;
        const float* O =
            partial_out.data() + static_cast<size_t>(ti) * static_cast<size_t>(R * hd) + static_cast<size_t>(r * hd);
        for (int c = 0; c < hd; ++c) out[c] += w * O[c];
      }
      if (!cfg.enabled || Lsum <= 0) continue;
      // Page probabilities (the slots policies see).
      const int nv = n_visible[static_cast<size_t>(h * T + t)];
      prob.assign(static_cast<size_t>(nv), 0.0f);
      for (int ti = t0; ti < ts; ++ti) {
        const Task& task = tasks[static_cast<size_t>(ti)];
        const int n = task.s1 - task.s0;
        const float w = scale_c[static_cast<size_t>(ti - t0)] / Lsum;
        const float* S = scores.data() + score_off[static_cast<size_t>(ti)] + static_cast<size_t>(r * n);
        for (int j = 0; j < n && task.s0 + j < nv; ++j) prob[static_cast<size_t>(task.s0 + j)] = S[j] * w;
      }
      HeadTaps& taps = store.taps(seq, layer, h * G + g);
      record_taps(taps, cfg, prob.data(), nv, store.head_len(seq, layer, h), a.pos[t], t == T - 1);
      if (cfg.segment_rows) {
        for (int ti = ts; ti < t1; ++ti)
          task_weight[static_cast<size_t>(ti * R + r)] = scale_c[static_cast<size_t>(ti - t0)] / Lsum;
      }
    }
  }
  if (!cfg.enabled || !cfg.segment_rows) return;
  // The GQA-summed probability rows over the first segment (SpeCache's selection input): one task per
  // segment chunk, each writing its own slots, so the threads share the 16K-wide sums.
  pool.parallel_tasks(tasks.size(), [&](size_t ti, int) {
    const Task& task = tasks[ti];
    if (task.seg != 0) return;
    const int n = task.s1 - task.s0;
    HeadTaps& first = store.taps(seq, layer, task.h * G);
    for (int r = 0; r < R; ++r) {
      const float w = task_weight[ti * static_cast<size_t>(R) + static_cast<size_t>(r)];
      if (w == 0) continue;
      const float* S = scores.data() + score_off[ti] + static_cast<size_t>(r * n);
      float* dst =
          first.segment_rows.data() + static_cast<size_t>(r / G) * static_cast<size_t>(first.segment_cols) + task.s0;
      for (int j = 0; j < n; ++j) dst[j] += S[j] * w;
    }
  });
}

void attend_blas(ThreadPool& pool, KvStore& store, SeqId seq, int layer, const AttentionQuery& a) {
  const KvLayout& L = store.layout();
  const int H = L.n_heads, HK = L.n_kv_heads, G = H / HK, hd = L.head_dim, P = L.page_tokens;
  const bool f16 = L.type == DType::F16;
  const float scale = query_scale(a, hd);
  const Kernels& k = kernels();
  const TapConfig& cfg = store.tap_config(seq);

  // 1. Gather each KV head's pages into contiguous f32 K and V (one task per KV head).
  struct Gathered {
    std::vector<float> K, V;
    std::vector<int32_t> pos;
  };
  std::vector<Gathered> heads(static_cast<size_t>(HK));
  pool.parallel_tasks(static_cast<size_t>(HK), [&](size_t h, int) {
    const int n = store.head_len(seq, layer, static_cast<int>(h));
    const auto& pages = store.head_pages(seq, layer, static_cast<int>(h));
    Gathered& g = heads[h];
    g.K.resize(static_cast<size_t>(n) * static_cast<size_t>(hd));
    g.V.resize(g.K.size());
    g.pos.resize(static_cast<size_t>(n));
    for (size_t pi = 0; pi < pages.size(); ++pi) {
      const int s0 = static_cast<int>(pi) * P, cnt = std::min(P, n - s0);
      const size_t elems = static_cast<size_t>(cnt) * static_cast<size_t>(hd);
      float* kd = g.K.data() + static_cast<size_t>(s0) * static_cast<size_t>(hd);
      float* vd = g.V.data() + static_cast<size_t>(s0) * static_cast<size_t>(hd);
      if (f16) {
        k.f16_to_f32(static_cast<const uint16_t*>(store.page_k(pages[pi])), kd, static_cast<int64_t>(elems));
        k.f16_to_f32(static_cast<const uint16_t*>(store.page_v(pages[pi])), vd, static_cast<int64_t>(elems));
      } else {
        std::copy_n(static_cast<const float*>(store.page_k(pages[pi])), elems, kd);
        std::copy_n(static_cast<const float*>(store.page_v(pages[pi])), elems, vd);
      }
      std::copy_n(store.page_pos(pages[pi]), cnt, g.pos.data() + s0);
    }
  });

  // 2. One task per query head: S = QKᵀ (sgemm), causal softmax, taps, O = PV (sgemm).
  pool.parallel_tasks(static_cast<size_t>(H), [&](size_t qh_index, int) {
    const int qh = static_cast<int>(qh_index), h = qh / G;
    const Gathered& g = heads[static_cast<size_t>(h)];
    const int n = static_cast<int>(g.pos.size());
    if (n == 0) {
      for (int t = 0; t < a.T; ++t) std::fill_n(a.out + t * a.out_stride + qh * hd, hd, 0.0f);
      return;
    }
    thread_local std::vector<float> S;
    S.resize(static_cast<size_t>(a.T) * static_cast<size_t>(n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a.T, n, hd, scale, a.q + qh * hd, static_cast<int>(a.q_stride),
                g.K.data(), hd, 0.0f, S.data(), n);
    for (int t = 0; t < a.T; ++t) {
      float* row = S.data() + static_cast<size_t>(t) * static_cast<size_t>(n);
      const int nv = static_cast<int>(std::upper_bound(g.pos.begin(), g.pos.end(), a.pos[t]) - g.pos.begin());
      const int nh =
          a.window > 0
              ? static_cast<int>(std::upper_bound(g.pos.begin(), g.pos.end(), a.pos[t] - a.window) - g.pos.begin())
              : 0;
      if (nv <= nh) {
        std::fill_n(row, n, 0.0f);
        continue;
      }
      soft_cap(row + nh, static_cast<size_t>(nv - nh), a.softcap);
      const float M = k.max_of(row + nh, nv - nh);
      const float inv = 1.0f / k.exp_shift_sum(row + nh, nv - nh, M);
      for (int j = nh; j < nv; ++j) row[j] *= inv;
      std::fill(row, row + nh, 0.0f);
      std::fill(row + nv, row + n, 0.0f);
      if (cfg.enabled) record_taps(store.taps(seq, layer, qh), cfg, row, nv, n, a.pos[t], t == a.T - 1);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a.T, hd, n, 1.0f, S.data(), n, g.V.data(), hd, 0.0f,
                a.out + qh * hd, static_cast<int>(a.out_stride));
  });
}

}  // namespace

void soft_cap(float* x, size_t n, float cap) {
  if (cap <= 0) return;
  const float inv = 1.0f / cap;
  for (size_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

void attend(ThreadPool& pool, KvStore& store, SeqId seq, int layer, const AttentionQuery& query, AttentionPath path) {
  if (query.T == 0) return;
  const KvLayout& L = store.layout();
  const TapConfig& cfg = store.tap_config(seq);
  if (cfg.enabled && cfg.q_absmax)
    for (int qh = 0; qh < L.n_heads; ++qh) {
      std::vector<float>& m = store.taps(seq, layer, qh).q_absmax;
      m.resize(static_cast<size_t>(L.head_dim), 0.0f);
      for (int t = 0; t < query.T; ++t) {
        const float* q = query.q + t * query.q_stride + qh * L.head_dim;
        for (int c = 0; c < L.head_dim; ++c)
          m[static_cast<size_t>(c)] = std::max(m[static_cast<size_t>(c)], std::fabs(q[c]));
      }
    }
  if (path == AttentionPath::Auto) path = query.T >= kBlasMinQueries ? AttentionPath::Blas : AttentionPath::Direct;
  // The gathered BLAS path reads pages only; heads with low-precision segments go the direct way.
  for (int h = 0; h < L.n_kv_heads && path == AttentionPath::Blas; ++h)
    if (!store.segments(seq, layer, h).empty()) path = AttentionPath::Direct;
  if (path == AttentionPath::Blas)
    attend_blas(pool, store, seq, layer, query);
  else
    attend_direct(pool, store, seq, layer, query);
}

}  // namespace kvwise
