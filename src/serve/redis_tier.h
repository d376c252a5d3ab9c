// The shared prefix tier: blocks in a Redis server or Redis Cluster that every kvwise server of a
// deployment reads and writes (kvwise serve --prefix-cache-redis / --prefix-cache-redis-cluster).
// A block is one value under a key that carries its whole identity, as LMCache's
// model@world@worker@chunk_hash@dtype keys do:
//   PREFIX@<model fingerprint>@<block tokens>t@<kv tag>@<layers>x<kv heads>x<head dim>@<chain key>
// and the value is a BlockRecordHeader (identity + XXH3 checksum) followed by the block's bytes; a
// value that is missing, truncated, of another identity or corrupt is a miss, counted.
//
// Off the request path: put() and erase() only queue the operation (a bounded queue; a full one drops
// the write and counts it) for a writer thread with its own connection; get_many() runs on the
// caller's thread, pipelined, within a deadline (a late answer is a miss, and the connection is
// dropped). Redis being down, killed, restarted empty, slow or evicting only costs misses: every
// failure backs off and reconnects (redis_client.h). What stays in Redis is Redis's business: its
// maxmemory-policy (allkeys-lru or allkeys-lfu) evicts; kvwise never erases a shared block when its
// own tiers drop it, because other servers may be using it.
//
// KV events: with an events channel set, publish() queues "<kind> <instance> <chain key hex>" on it
// (kind: stored / evicted) for routers (kvwise route) that track where prefixes live.
// Thread-safety: every method may be called from any thread.
#pragma once
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "serve/block_tier.h"
#include "serve/redis_client.h"

namespace kvwise {

struct RedisTierOptions {
  RedisOptions redis;
  std::string key_prefix = "kvwise";
  double lookup_deadline = 0.1;  // seconds for one request's lookups
  double write_deadline = 2.0;   // seconds for one batch of queued writes
  size_t queue_limit = 256;      // queued operations; one more is dropped
  std::string events_channel;    // empty: no KV events
  std::string instance;          // this server in KV events (its URL)
};

class RedisTier final : public BlockTier {
 public:
  RedisTier(const RedisTierOptions& options, const BlockIdentity& identity);
  ~RedisTier() override;

  const std::string& name() const override { return name_; }
  bool put(prefix::BlockKey key, std::span<const uint8_t> block) override;  // false: dropped (queue full)
  TierGet get(prefix::BlockKey key, std::span<uint8_t> out) override;
  std::vector<TierGet> get_many(std::span<const prefix::BlockKey> keys, std::span<const std::span<uint8_t>> outs,
                                double deadline_seconds) override;
  void erase(prefix::BlockKey key) override;
  size_t bytes() const override;
  TierCounters counters() const override;

  void publish(const char* kind, prefix::BlockKey key);
  void set_instance(const std::string& instance);  // once the server knows its URL
  // Blocks until every operation queued so far has been tried (tests, shutdown); false on timeout.
  bool flush(double timeout_seconds);
  std::string redis_key(prefix::BlockKey key) const;
  const RedisTierOptions& options() const { return opt_; }

 private:
  struct Op {
    enum Kind { put, erase, publish } kind;
    prefix::BlockKey key = 0;
    std::string payload;  // put: the record; publish: the message
  };
  bool enqueue(Op op);
  void writer();

  std::string name_ = "redis";
  RedisTierOptions opt_;
  BlockIdentity id_;
  std::string key_stem_;

  mutable std::mutex mu_;  // counters, the queue, the lookup client
  std::condition_variable cv_, idle_cv_;
  std::deque<Op> queue_;
  bool stop_ = false;
  size_t in_flight_ = 0;
  TierCounters c_;
  int64_t stored_bytes_ = 0;
  uint64_t writer_reconnects_ = 0, lookup_reconnects_ = 0;
  bool healthy_ = true;   // how the latest read or write went
  std::mutex lookup_mu_;  // the lookup client (one request's lookups at a time)
  RedisClient lookup_;
  std::thread writer_;
};

}  // namespace kvwise
