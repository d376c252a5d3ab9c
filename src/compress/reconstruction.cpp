#include "compress/reconstruction.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/timer.h"
#include "compress/stages.h"

namespace kvwise {

ReconstructionPass::ReconstructionPass(ReconstructionConfig cfg, const KvLayout& layout, int32_t prompt_begin,
                                       int32_t prompt_end, int ctx)
    : cfg_(std::move(cfg)), layout_(layout), begin_(prompt_begin), end_(prompt_end), ctx_(ctx) {
  KV_CHECK(cfg_.chunk >= 1, "kvzip: chunk must be at least 1");
  KV_CHECK(ctx_ > 0, "kvzip needs the engine's context length");
  scores_.resize(static_cast<size_t>(layout.n_layers * layout.n_heads));
}

void ReconstructionPass::set_prompt(std::vector<int32_t> tokens) {
  prompt_ = std::move(tokens);
  KV_CHECK(static_cast<int64_t>(end_) + static_cast<int64_t>(prompt_.size()) + 1 <= ctx_,
           "kvzip: a prompt of {} tokens leaves no room in the context of {} for the reconstruction pass (its {} "
           "prompt tokens and at least one repeated token)",
           end_ - begin_, ctx_, prompt_.size());
}

void ReconstructionPass::add_context(std::span<const int32_t> tokens, int32_t first_pos) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t p = first_pos + static_cast<int32_t>(i);
    if (p >= begin_ && p < end_ && p - begin_ == static_cast<int32_t>(context_.size())) context_.push_back(tokens[i]);
  }
}

void ReconstructionPass::start() {
  KV_ASSERT(static_cast<int32_t>(context_.size()) == end_ - begin_, "kvzip saw {} of the prompt's {} tokens",
            context_.size(), end_ - begin_);
  started_ = true;
}

std::vector<int32_t> ReconstructionPass::next() {
  running_ = false;
  if (next_chunk_ >= context_.size()) return {};
  const size_t room = static_cast<size_t>(ctx_ - end_) - prompt_.size();
  const size_t n = std::min({static_cast<size_t>(cfg_.chunk), room, context_.size() - next_chunk_});
  std::vector<int32_t> t = prompt_;
  t.insert(t.end(), context_.begin() + static_cast<long>(next_chunk_),
           context_.begin() + static_cast<long>(next_chunk_ + n));
  next_chunk_ += n;
  running_ = true;
  return t;
}

void ReconstructionPass::accumulate(const KvStore& kv, SeqId seq, const SequenceObserver::Attention& a) {
  const double t0 = now_seconds();
  const int H = layout_.n_heads, G = H / layout_.n_kv_heads, d = layout_.head_dim;
  const int first = static_cast<int>(prompt_.size()), rows = a.T - first;
  if (rows <= 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<HeadKv> heads;
  for (int h = 0; h < layout_.n_kv_heads; ++h) heads.emplace_back(kv, seq, a.layer, h);
  for (const HeadKv& h : heads) (void)h.keys();  // read once, before the threads share them
  auto run = [&](int qh) {
    const HeadKv& hk = heads[static_cast<size_t>(qh / G)];
    const int len = hk.len();
    std::vector<float>& s = scores_[static_cast<size_t>(a.layer * H + qh)];
    if (static_cast<int>(s.size()) < len) s.resize(static_cast<size_t>(len), 0.0f);
    std::vector<float> logit(static_cast<size_t>(rows) * static_cast<size_t>(len));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, len, d, scale, a.q + first * a.stride + qh * d,
                static_cast<int>(a.stride), hk.keys().data(), d, 0.0f, logit.data(), len);
    for (int r = 0; r < rows; ++r) {
      float* row = &logit[static_cast<size_t>(r) * static_cast<size_t>(len)];
      const float m = *std::max_element(row, row + len);
      double sum = 0;
      for (int j = 0; j < len; ++j) sum += std::exp(static_cast<double>(row[j] - m));
      for (int j = 0; j < len; ++j)
        s[static_cast<size_t>(j)] =
            std::max(s[static_cast<size_t>(j)], static_cast<float>(std::exp(static_cast<double>(row[j] - m)) / sum));
    }
  };
  if (a.pool != nullptr)
    a.pool->parallel_for(static_cast<size_t>(H), [&](size_t h0, size_t h1, int) {
      for (size_t h = h0; h < h1; ++h) run(static_cast<int>(h));
    });
  else
    for (int h = 0; h < H; ++h) run(h);
  seconds_ += now_seconds() - t0;
}

std::span<const float> ReconstructionPass::scores(int layer, int q_head) const {
  return scores_[static_cast<size_t>(layer * layout_.n_heads + q_head)];
}

}  // namespace kvwise
