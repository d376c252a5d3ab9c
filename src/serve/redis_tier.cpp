#include "serve/redis_tier.h"

#include <fmt/format.h>

#include <cstring>

namespace kvwise {
namespace {

using Clock = RedisClient::Clock;
constexpr size_t kWriteBatch = 32;

Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

RedisTier::RedisTier(const RedisTierOptions& options, const BlockIdentity& identity)
    : opt_(options), id_(identity), lookup_(options.redis) {
  key_stem_ = fmt::format("{}@{:016x}@{}t@{:08x}@{}x{}x{}@", opt_.key_prefix, id_.model, id_.block_tokens, id_.kv_tag,
                          id_.n_layers, id_.n_kv_heads, id_.head_dim);
  writer_ = std::thread([this] { writer(); });
}

RedisTier::~RedisTier() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

std::string RedisTier::redis_key(prefix::BlockKey key) const {
  return fmt::format("{}{:016x}", key_stem_, key);
}

bool RedisTier::enqueue(Op op) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (queue_.size() >= opt_.queue_limit) {
      ++c_.queue_drops;
      return false;
    }
    queue_.push_back(std::move(op));
    c_.queue_pending = queue_.size();
  }
  cv_.notify_one();
  return true;
}

bool RedisTier::put(prefix::BlockKey key, std::span<const uint8_t> block) {
  const BlockRecordHeader h = block_record_header(id_, key, block);
  std::string record(sizeof h + block.size(), '\0');
  std::memcpy(record.data(), &h, sizeof h);
  std::memcpy(record.data() + sizeof h, block.data(), block.size());
  return enqueue({Op::put, key, std::move(record)});
}

void RedisTier::erase(prefix::BlockKey key) {
  enqueue({Op::erase, key, {}});
}

void RedisTier::set_instance(const std::string& instance) {
  std::lock_guard<std::mutex> lk(mu_);
  opt_.instance = instance;
}

void RedisTier::publish(const char* kind, prefix::BlockKey key) {
  if (opt_.events_channel.empty()) return;
  std::string message;
  {
    std::lock_guard<std::mutex> lk(mu_);
    message = fmt::format("{} {} {:016x}", kind, opt_.instance, key);
  }
  enqueue({Op::publish, key, std::move(message)});
}

void RedisTier::writer() {
  RedisClient client(opt_.redis);
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty() && stop_) return;
    std::vector<Op> batch;
    while (!queue_.empty() && batch.size() < kWriteBatch) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    in_flight_ = batch.size();
    c_.queue_pending = queue_.size();
    const bool stopping = stop_;
    lk.unlock();
    std::vector<RedisCommand> cmds;
    for (const Op& op : batch) {
      if (op.kind == Op::put)
        cmds.push_back({{"SET", redis_key(op.key), op.payload}, 1});
      else if (op.kind == Op::erase)
        cmds.push_back({{"DEL", redis_key(op.key)}, 1});
      else
        cmds.push_back({{"PUBLISH", opt_.events_channel, op.payload}, -1});
    }
    // Shutting down: one short try, so that a dead Redis never holds the server's exit.
    const bool was_healthy = client.healthy();
    const auto replies = client.run(cmds, after(stopping ? std::min(0.5, opt_.write_deadline) : opt_.write_deadline));
    lk.lock();
    for (size_t i = 0; i < batch.size(); ++i) {
      const bool ok = replies[i] && !replies[i]->is_error();
      if (batch[i].kind == Op::put) {
        if (ok) {
          ++c_.puts;
          c_.bytes_written += batch[i].payload.size() - sizeof(BlockRecordHeader);
          stored_bytes_ += static_cast<int64_t>(id_.payload_bytes);
        } else {
          ++c_.put_errors;
        }
      } else if (batch[i].kind == Op::erase) {
        if (ok) {
          ++c_.erases;
          if (replies[i]->integer > 0) stored_bytes_ -= static_cast<int64_t>(id_.payload_bytes);
        } else {
          ++c_.put_errors;
        }
      } else if (!ok) {
        ++c_.put_errors;
      }
    }
    writer_reconnects_ = client.reconnects();
    // A writer still backing off from an earlier failure says nothing new about Redis (a lookup may
    // have reached it since): only a fresh outcome changes the tier's health.
    if (was_healthy || client.healthy()) healthy_ = client.healthy();
    in_flight_ = 0;
    idle_cv_.notify_all();
  }
}

bool RedisTier::flush(double timeout_seconds) {
  std::unique_lock<std::mutex> lk(mu_);
  return idle_cv_.wait_until(lk, after(timeout_seconds), [&] { return queue_.empty() && in_flight_ == 0; });
}

TierGet RedisTier::get(prefix::BlockKey key, std::span<uint8_t> out) {
  const prefix::BlockKey keys[1] = {key};
  const std::span<uint8_t> outs[1] = {out};
  return get_many(keys, outs, opt_.lookup_deadline)[0];
}

std::vector<TierGet> RedisTier::get_many(std::span<const prefix::BlockKey> keys,
                                         std::span<const std::span<uint8_t>> outs, double deadline_seconds) {
  std::vector<TierGet> r(keys.size(), TierGet::error);
  if (keys.empty()) return r;
  const auto t0 = Clock::now();
  std::vector<RedisCommand> cmds;
  for (const auto key : keys) cmds.push_back({{"GET", redis_key(key)}, 1});
  std::vector<std::optional<RedisReply>> replies;
  bool healthy = false;
  uint64_t reconnects = 0;
  {
    std::lock_guard<std::mutex> lk(lookup_mu_);
    replies = lookup_.run(cmds, after(std::min(deadline_seconds, opt_.lookup_deadline)));
    healthy = lookup_.healthy();
    reconnects = lookup_.reconnects();
  }
  TierCounters d;
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto& rep = replies[i];
    if (!rep || rep->is_error()) {
      ++d.errors;
      continue;
    }
    if (rep->kind != RedisReply::Kind::string) {
      r[i] = TierGet::missing;
      ++d.misses;
      continue;
    }
    const std::string& v = rep->str;
    BlockRecordHeader h;
    const bool sized = v.size() == sizeof h + outs[i].size();
    if (sized) {
      std::memcpy(&h, v.data(), sizeof h);
      std::memcpy(outs[i].data(), v.data() + sizeof h, outs[i].size());
    }
    if (!sized || !block_record_matches(h, id_, keys[i], outs[i])) {
      r[i] = TierGet::rejected;
      ++d.rejected;
      continue;
    }
    r[i] = TierGet::hit;
    ++d.hits;
    d.bytes_read += outs[i].size();
  }
  std::lock_guard<std::mutex> lk(mu_);
  c_.hits += d.hits;
  c_.misses += d.misses;
  c_.rejected += d.rejected;
  c_.errors += d.errors;
  c_.bytes_read += d.bytes_read;
  c_.get_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  healthy_ = healthy;
  lookup_reconnects_ = reconnects;
  return r;
}

size_t RedisTier::bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return static_cast<size_t>(std::max<int64_t>(0, stored_bytes_));
}

TierCounters RedisTier::counters() const {
  std::lock_guard<std::mutex> lk(mu_);
  TierCounters c = c_;
  c.reconnects = writer_reconnects_ + lookup_reconnects_;
  c.healthy = healthy_;
  return c;
}

}  // namespace kvwise
