// The paged, ragged KV store: appends, positions, compaction that really frees pages, accounting.
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "base/error.h"
#include "kv/kv_store.h"
#include "tensor/fp16.h"

namespace kvwise {
namespace {

KvLayout layout(DType t = DType::F32) {
  return KvLayout{2, 4, 2, 8, t, 4};
}

void fill(KvStore& kv, SeqId s, int layer, int head, int n, int32_t pos0 = 0) {
  std::vector<float> k(8), v(8);
  for (int i = 0; i < n; ++i) {
    std::iota(k.begin(), k.end(), static_cast<float>(100 * (pos0 + i)));
    std::iota(v.begin(), v.end(), static_cast<float>(-100 * (pos0 + i)));
    kv.append(s, layer, head, k.data(), v.data(), pos0 + i);
  }
}

TEST(KvStore, AppendsIntoPagesAndKeepsPositions) {
  KvStore kv(layout());
  const SeqId s = kv.create_sequence();
  fill(kv, s, 0, 0, 10);
  EXPECT_EQ(kv.head_len(s, 0, 0), 10);
  EXPECT_EQ(kv.head_pages(s, 0, 0).size(), 3u);  // 4 tokens per page
  EXPECT_EQ(kv.head_len(s, 0, 1), 0);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(kv.slot_position(s, 0, 0, i), i);
  const uint32_t p1 = kv.head_pages(s, 0, 0)[1];
  EXPECT_EQ(static_cast<const float*>(kv.page_k(p1))[8], 500.0f);  // slot 5 = page 1 row 1, K[0]
  EXPECT_EQ(static_cast<const float*>(kv.page_v(p1))[9], -499.0f);
}

TEST(KvStore, RawRowsRoundTripAcrossPageBoundaries) {
  for (DType t : {DType::F32, DType::F16}) {
    KvStore kv(layout(t));
    const SeqId a = kv.create_sequence(), b = kv.create_sequence();
    fill(kv, a, 1, 1, 11);
    const size_t rb = kv.row_bytes();
    std::vector<uint8_t> k(7 * rb), v(7 * rb);
    kv.copy_rows(a, 1, 1, 3, 7, k.data(), v.data());  // slots 3..9: three pages
    fill(kv, b, 1, 1, 2, 3);                          // b's list starts mid-page
    kv.append_rows(b, 1, 1, k.data(), v.data(), 7, 5);
    ASSERT_EQ(kv.head_len(b, 1, 1), 9);
    std::vector<float> ka(8), va(8), kb(8), vb(8);
    for (int i = 0; i < 7; ++i) {
      kv.read_slot(a, 1, 1, 3 + i, ka.data(), va.data());
      kv.read_slot(b, 1, 1, 2 + i, kb.data(), vb.data());
      EXPECT_EQ(ka, kb);
      EXPECT_EQ(va, vb);
      EXPECT_EQ(kv.slot_position(b, 1, 1, 2 + i), 5 + i);
    }
    EXPECT_THROW(kv.copy_rows(a, 1, 1, 8, 4, k.data(), v.data()), Error);
  }
}

TEST(KvStore, RetainCompactsAndReleasesPages) {
  KvStore kv(layout());
  const SeqId s = kv.create_sequence();
  fill(kv, s, 1, 1, 16);
  EXPECT_EQ(kv.pool().pages_in_use(), 4u);
  const std::vector<int> keep{0, 1, 7, 15};
  kv.retain(s, 1, 1, keep);
  EXPECT_EQ(kv.head_len(s, 1, 1), 4);
  EXPECT_EQ(kv.pool().pages_in_use(), 1u);
  EXPECT_EQ(kv.bytes_head(s, 1, 1), kv.pool().page_bytes());
  for (size_t i = 0; i < keep.size(); ++i) EXPECT_EQ(kv.slot_position(s, 1, 1, static_cast<int>(i)), keep[i]);
  const float* k = static_cast<const float*>(kv.page_k(kv.head_pages(s, 1, 1)[0]));
  EXPECT_EQ(k[2 * 8], 700.0f);
  EXPECT_EQ(k[3 * 8 + 1], 1501.0f);
  // New tokens continue at their absolute position, whatever was evicted.
  fill(kv, s, 1, 1, 1, 16);
  EXPECT_EQ(kv.slot_position(s, 1, 1, 4), 16);
  EXPECT_THROW(kv.retain(s, 1, 1, std::vector<int>{2, 1}), Error);
  EXPECT_THROW(kv.retain(s, 1, 1, std::vector<int>{9}), Error);
}

// Random keep sets (runs, gaps, single evictions) against a plain list: every kept slot's key, value
// and position survive compaction; read_slot and rewrite_key see the same data.
TEST(KvStore, RetainMatchesAPlainListOnRandomKeeps) {
  std::mt19937 rng(9);
  for (DType t : {DType::F32, DType::F16}) {
    KvStore kv(layout(t));
    const SeqId s = kv.create_sequence();
    std::vector<int32_t> model;  // positions the head should hold, in order
    int32_t next = 0;
    for (int round = 0; round < 60; ++round) {
      const int add = static_cast<int>(rng() % 9);
      fill(kv, s, 0, 1, add, next);
      for (int i = 0; i < add; ++i) model.push_back(next++);
      std::vector<int> keep;
      const int mode = static_cast<int>(rng() % 3);
      for (int i = 0; i < static_cast<int>(model.size()); ++i) {
        const bool drop =
            mode == 0 ? rng() % 3 == 0 : (mode == 1 ? i == static_cast<int>(rng() % model.size()) : false);
        if (!drop) keep.push_back(i);
      }
      kv.retain(s, 0, 1, keep);
      std::vector<int32_t> kept;
      for (int i : keep) kept.push_back(model[static_cast<size_t>(i)]);
      model = kept;
      ASSERT_EQ(kv.head_len(s, 0, 1), static_cast<int>(model.size()));
      std::vector<float> k(8), v(8);
      for (int i = 0; i < kv.head_len(s, 0, 1); ++i) {
        const int32_t p = model[static_cast<size_t>(i)];
        ASSERT_EQ(kv.slot_position(s, 0, 1, i), p);
        kv.read_slot(s, 0, 1, i, k.data(), v.data());
        const auto stored = [&](float x) { return t == DType::F16 ? fp16_to_fp32(fp32_to_fp16(x)) : x; };
        EXPECT_EQ(k[3], stored(static_cast<float>(100 * p + 3)));
        EXPECT_EQ(v[0], stored(static_cast<float>(-100 * p)));
      }
      EXPECT_EQ(kv.pool().pages_in_use(), (model.size() + 3) / 4);
    }
    if (kv.head_len(s, 0, 1) > 0) {
      std::vector<float> k(8, 2.5f);
      kv.rewrite_key(s, 0, 1, 0, k.data(), -7);
      std::vector<float> back(8), v(8);
      kv.read_slot(s, 0, 1, 0, back.data(), v.data());
      EXPECT_EQ(back, k);
      EXPECT_EQ(kv.slot_position(s, 0, 1, 0), -7);
      EXPECT_EQ(v[0], t == DType::F16 ? fp16_to_fp32(fp32_to_fp16(static_cast<float>(-100 * model[0])))
                                      : static_cast<float>(-100 * model[0]));
    }
  }
}

TEST(KvStore, AccountingIsExactPerHeadLayerSequence) {
  KvStore kv(layout(DType::F16));
  EXPECT_EQ(kv.pool().page_bytes(), 2u * 4 * 8 * 2 + 4 * 4);
  EXPECT_EQ(kv.bytes_per_token_full(), 2u * 2 * 2 * 8 * 2);
  const SeqId a = kv.create_sequence(), b = kv.create_sequence();
  fill(kv, a, 0, 0, 5);
  fill(kv, a, 1, 1, 3);
  fill(kv, b, 0, 1, 9);
  const size_t P = kv.pool().page_bytes();
  EXPECT_EQ(kv.bytes_head(a, 0, 0), 2 * P);
  EXPECT_EQ(kv.bytes_layer(a, 1), P);
  EXPECT_EQ(kv.bytes_sequence(a), 3 * P);
  EXPECT_EQ(kv.bytes_sequence(b), 3 * P);
  EXPECT_EQ(kv.bytes_total(), 6 * P);
  kv.free_sequence(a);
  EXPECT_EQ(kv.bytes_total(), 3 * P);
  kv.free_sequence(b);
  EXPECT_EQ(kv.pool().pages_in_use(), 0u);
  EXPECT_EQ(kv.pool().pages_reserved(), 6u);
  kv.pool().trim();
  EXPECT_EQ(kv.pool().pages_reserved(), 0u);
  EXPECT_FALSE(kv.has_sequence(a));
  EXPECT_THROW(kv.head_len(a, 0, 0), Error);
}

TEST(KvStore, F16StorageRoundsValues) {
  KvStore kv(layout(DType::F16));
  const SeqId s = kv.create_sequence();
  std::vector<float> k(8, 1.0f / 3.0f), v(8, 2.0f);
  kv.append(s, 0, 0, k.data(), v.data(), 0);
  const uint16_t* kh = static_cast<const uint16_t*>(kv.page_k(kv.head_pages(s, 0, 0)[0]));
  EXPECT_EQ(kh[0], 0x3555);  // nearest half to 1/3
}

}  // namespace
}  // namespace kvwise
