#include "serve/redis_client.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <thread>

#include "base/error.h"

namespace kvwise {
namespace {

constexpr int kSlots = 16384;
constexpr int kMaxRedirects = 5;

RedisEndpoint parse_endpoint(std::string_view s, const std::string& what) {
  RedisEndpoint ep;
  const size_t colon = s.rfind(':');
  ep.host = std::string(s.substr(0, colon));
  if (colon != std::string_view::npos) {
    const std::string_view p = s.substr(colon + 1);
    int port = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    KV_CHECK(ec == std::errc() && end == p.data() + p.size() && port > 0 && port < 65536, "{}: '{}' is not a port",
             what, std::string(p));
    ep.port = port;
  }
  KV_CHECK(!ep.host.empty(), "{}: no host in '{}'", what, std::string(s));
  return ep;
}

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.kind = RedisReply::Kind::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.kind = RedisReply::Kind::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.kind = RedisReply::Kind::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.kind = RedisReply::Kind::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.kind = RedisReply::Kind::array;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.kind = RedisReply::Kind::nil;
  }
  return out;
}

bool starts_with(const std::string& s, std::string_view p) {
  return s.compare(0, p.size(), p) == 0;
}

}  // namespace

RedisOptions parse_redis_url(const std::string& url) {
  constexpr std::string_view scheme = "redis://";
  KV_CHECK(url.compare(0, scheme.size(), scheme) == 0, "--prefix-cache-redis '{}': expected redis://HOST[:PORT][/DB]",
           url);
  std::string_view rest = std::string_view(url).substr(scheme.size());
  RedisOptions o;
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    if (const size_t colon = cred.find(':'); colon != std::string_view::npos) cred = cred.substr(colon + 1);
    o.password = std::string(cred);
    rest = rest.substr(at + 1);
  }
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view d = rest.substr(slash + 1);
    if (!d.empty()) {
      const auto [end, ec] = std::from_chars(d.data(), d.data() + d.size(), o.db);
      KV_CHECK(ec == std::errc() && end == d.data() + d.size() && o.db >= 0, "--prefix-cache-redis '{}': bad db '{}'",
               url, std::string(d));
    }
    rest = rest.substr(0, slash);
  }
  o.nodes.push_back(parse_endpoint(rest, "--prefix-cache-redis"));
  return o;
}

RedisOptions parse_redis_cluster_nodes(const std::string& list) {
  RedisOptions o;
  o.cluster = true;
  std::string_view rest = list;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    if (!item.empty()) o.nodes.push_back(parse_endpoint(item, "--prefix-cache-redis-cluster"));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  KV_CHECK(!o.nodes.empty(), "--prefix-cache-redis-cluster: expected HOST:PORT[,HOST:PORT...]");
  return o;
}

int redis_key_slot(std::string_view key) {
  // Only the part inside the first {...} is hashed when it is not empty (the cluster specification).
  if (const size_t open = key.find('{'); open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  uint16_t crc = 0;  // CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0
  for (const char ch : key) {
    crc ^= static_cast<uint16_t>(static_cast<uint8_t>(ch)) << 8;
    for (int b = 0; b < 8; ++b) crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : crc << 1;
  }
  return crc % kSlots;
}

RedisClient::RedisClient(RedisOptions options) : opt_(std::move(options)) {
  KV_CHECK(!opt_.nodes.empty(), "a Redis client needs at least one node");
  if (opt_.cluster) slots_.assign(kSlots, std::string());
}

RedisClient::~RedisClient() {
  for (auto& [addr, n] : nodes_)
    if (n->ctx) redisFree(n->ctx);
}

RedisClient::Node* RedisClient::node(const std::string& address) {
  auto it = nodes_.find(address);
  if (it != nodes_.end()) return it->second.get();
  auto n = std::make_unique<Node>();
  n->ep = parse_endpoint(address, "redis node");
  return nodes_.emplace(address, std::move(n)).first->second.get();
}

bool RedisClient::healthy() const {
  return std::none_of(nodes_.begin(), nodes_.end(), [](const auto& kv) { return kv.second->backoff > 0; });
}

void RedisClient::fail(Node& n) {
  if (n.ctx) redisFree(n.ctx);
  n.ctx = nullptr;
  n.backoff = n.backoff == 0 ? opt_.backoff_min : std::min(2 * n.backoff, opt_.backoff_max);
  n.retry_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(n.backoff));
}

bool RedisClient::set_deadline(Node& n, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  timeval tv{static_cast<time_t>(left / 1000000), static_cast<suseconds_t>(left % 1000000)};
  return redisSetTimeout(n.ctx, tv) == REDIS_OK;
}

bool RedisClient::connect(Node& n, Clock::time_point deadline) {
  if (n.ctx) return true;
  const auto now = Clock::now();
  if (now < n.retry_at || now >= deadline) return false;
  const double left = std::chrono::duration<double>(deadline - now).count();
  const double t = std::min(opt_.connect_timeout, left);
  timeval tv{static_cast<time_t>(t), static_cast<suseconds_t>((t - static_cast<double>(static_cast<time_t>(t))) * 1e6)};
  n.ctx = redisConnectWithTimeout(n.ep.host.c_str(), n.ep.port, tv);
  if (!n.ctx || n.ctx->err) {
    fail(n);
    return false;
  }
  const auto setup = [&](std::vector<std::string> argv) {
    std::vector<const char*> a;
    std::vector<size_t> len;
    for (const auto& s : argv) a.push_back(s.data()), len.push_back(s.size());
    if (!set_deadline(n, deadline)) return false;
    auto* r = static_cast<redisReply*>(redisCommandArgv(n.ctx, static_cast<int>(a.size()), a.data(), len.data()));
    const bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
    return ok;
  };
  if ((!opt_.password.empty() && !setup({"AUTH", opt_.password})) ||
      (!opt_.cluster && opt_.db != 0 && !setup({"SELECT", std::to_string(opt_.db)}))) {
    fail(n);
    return false;
  }
  if (n.ever_connected) ++reconnects_;
  n.ever_connected = true;
  n.backoff = 0;
  return true;
}

std::optional<RedisReply> RedisClient::run_on(Node& n, const RedisCommand& c, Clock::time_point deadline, bool asking) {
  if (!connect(n, deadline) || !set_deadline(n, deadline)) return std::nullopt;
  if (asking) redisAppendCommand(n.ctx, "ASKING");
  std::vector<const char*> a;
  std::vector<size_t> len;
  for (const auto& s : c.argv) a.push_back(s.data()), len.push_back(s.size());
  redisAppendCommandArgv(n.ctx, static_cast<int>(a.size()), a.data(), len.data());
  std::optional<RedisReply> out;
  for (int i = 0; i < (asking ? 2 : 1); ++i) {
    void* raw = nullptr;
    if (!set_deadline(n, deadline) || redisGetReply(n.ctx, &raw) != REDIS_OK || !raw) {
      fail(n);
      return std::nullopt;
    }
    out = convert(static_cast<redisReply*>(raw));
    freeReplyObject(raw);
  }
  return out;
}

// Follows MOVED (the slot has a new owner: remember it, re-read the map later) and ASK (the key is
// being migrated: ask the importing node once) until an answer or kMaxRedirects.
std::optional<RedisReply> RedisClient::run_redirected(const RedisCommand& c, RedisReply reply,
                                                      Clock::time_point deadline) {
  for (int hop = 0; hop < kMaxRedirects; ++hop) {
    if (!reply.is_error()) return reply;
    const bool moved = starts_with(reply.str, "MOVED "), ask = starts_with(reply.str, "ASK ");
    if (!moved && !ask) return reply;
    // "MOVED <slot> <host>:<port>"
    const size_t sp = reply.str.find(' ', reply.str.find(' ') + 1);
    if (sp == std::string::npos) return reply;
    const std::string address = reply.str.substr(sp + 1);
    ++redirects_;
    if (moved) {
      const int slot = std::atoi(reply.str.c_str() + reply.str.find(' ') + 1);
      if (slot >= 0 && slot < kSlots) slots_[static_cast<size_t>(slot)] = address;
      slots_known_ = false;  // re-read the whole map before the next batch
    }
    auto next = run_on(*node(address), c, deadline, ask);
    if (!next) return std::nullopt;
    reply = std::move(*next);
  }
  return reply;
}

bool RedisClient::refresh_slots(Clock::time_point deadline) {
  std::vector<std::string> candidates;
  for (const auto& ep : opt_.nodes) candidates.push_back(ep.address());
  for (const auto& [addr, n] : nodes_)
    if (std::find(candidates.begin(), candidates.end(), addr) == candidates.end()) candidates.push_back(addr);
  for (const auto& addr : candidates) {
    Node& n = *node(addr);
    const auto r = run_on(n, {{"CLUSTER", "SLOTS"}, -1}, deadline, false);
    if (!r || r->kind != RedisReply::Kind::array) continue;
    std::vector<std::string> map(kSlots);
    for (const auto& range : r->elements) {
      if (range.elements.size() < 3 || range.elements[2].elements.size() < 2) continue;
      const auto& master = range.elements[2];
      std::string host = master.elements[0].str.empty() ? n.ep.host : master.elements[0].str;
      const std::string address = fmt::format("{}:{}", host, master.elements[1].integer);
      const long long lo = std::max(0LL, range.elements[0].integer);
      const long long hi = std::min<long long>(kSlots - 1, range.elements[1].integer);
      for (long long s = lo; s <= hi; ++s) map[static_cast<size_t>(s)] = address;
    }
    slots_ = std::move(map);
    slots_known_ = true;
    return true;
  }
  return false;
}

std::string RedisClient::address_of(const RedisCommand& c) const {
  if (!opt_.cluster || c.key_arg < 0 || c.key_arg >= static_cast<int>(c.argv.size())) return opt_.nodes[0].address();
  const std::string& owner = slots_[static_cast<size_t>(redis_key_slot(c.argv[static_cast<size_t>(c.key_arg)]))];
  return owner.empty() ? opt_.nodes[0].address() : owner;
}

void RedisClient::scramble_slot_map_for_test(const std::string& address) {
  slots_.assign(kSlots, address);
  slots_known_ = true;
}

std::vector<std::optional<RedisReply>> RedisClient::run(const std::vector<RedisCommand>& commands,
                                                        Clock::time_point deadline) {
  std::vector<std::optional<RedisReply>> out(commands.size());
  if (commands.empty()) return out;
  if (opt_.cluster && !slots_known_) refresh_slots(deadline);  // on failure: seeds, then MOVED
  // Pipelined per node: every command to its node, then every reply.
  std::map<std::string, std::vector<size_t>> by_node;
  for (size_t i = 0; i < commands.size(); ++i) by_node[address_of(commands[i])].push_back(i);
  for (const auto& [address, idx] : by_node) {
    Node& n = *node(address);
    if (!connect(n, deadline)) continue;
    for (size_t i : idx) {
      std::vector<const char*> a;
      std::vector<size_t> len;
      for (const auto& s : commands[i].argv) a.push_back(s.data()), len.push_back(s.size());
      redisAppendCommandArgv(n.ctx, static_cast<int>(a.size()), a.data(), len.data());
    }
    for (size_t i : idx) {
      void* raw = nullptr;
      if (!set_deadline(n, deadline) || redisGetReply(n.ctx, &raw) != REDIS_OK || !raw) {
        fail(n);  // the rest of this node's replies are lost with the connection
        break;
      }
      out[i] = convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
    }
  }
  if (opt_.cluster)
    for (size_t i = 0; i < commands.size(); ++i)
      if (out[i] && out[i]->is_error()) out[i] = run_redirected(commands[i], std::move(*out[i]), deadline);
  return out;
}

std::optional<RedisReply> RedisClient::run(const RedisCommand& command, Clock::time_point deadline) {
  return std::move(run(std::vector<RedisCommand>{command}, deadline)[0]);
}

RedisSubscriber::RedisSubscriber(RedisOptions options, std::string channel)
    : opt_(std::move(options)), channel_(std::move(channel)) {
  KV_CHECK(!opt_.nodes.empty(), "a Redis subscriber needs at least one node");
}

RedisSubscriber::~RedisSubscriber() {
  drop();
}

void RedisSubscriber::drop() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

bool RedisSubscriber::connect() {
  const auto now = RedisClient::Clock::now();
  if (now < retry_at_) return false;
  const RedisEndpoint& ep = opt_.nodes[next_node_++ % opt_.nodes.size()];  // a cluster: any node will do
  const double t = opt_.connect_timeout;
  timeval tv{static_cast<time_t>(t), static_cast<suseconds_t>((t - static_cast<double>(static_cast<time_t>(t))) * 1e6)};
  ctx_ = redisConnectWithTimeout(ep.host.c_str(), ep.port, tv);
  bool ok = ctx_ && !ctx_->err && redisSetTimeout(ctx_, tv) == REDIS_OK;
  const auto command = [&](std::vector<std::string> argv) {
    std::vector<const char*> a;
    std::vector<size_t> len;
    for (const auto& x : argv) a.push_back(x.data()), len.push_back(x.size());
    auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(a.size()), a.data(), len.data()));
    const bool good = r && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
    return good;
  };
  if (ok && !opt_.password.empty()) ok = command({"AUTH", opt_.password});
  if (ok) ok = command({"SUBSCRIBE", channel_});
  if (!ok) {
    drop();
    backoff_ = backoff_ == 0 ? opt_.backoff_min : std::min(2 * backoff_, opt_.backoff_max);
    retry_at_ = now + std::chrono::duration_cast<RedisClient::Clock::duration>(std::chrono::duration<double>(backoff_));
    return false;
  }
  backoff_ = 0;
  ++connects_;
  return true;
}

bool RedisSubscriber::poll(std::vector<std::string>* messages, double timeout_seconds) {
  if (!ctx_ && !connect()) {
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(timeout_seconds, 0.05)));
    return false;
  }
  const auto take = [&] {
    void* raw = nullptr;
    while (redisGetReplyFromReader(ctx_, &raw) == REDIS_OK && raw) {
      const auto* r = static_cast<redisReply*>(raw);
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
          std::string_view(r->element[0]->str, r->element[0]->len) == "message" &&
          r->element[2]->type == REDIS_REPLY_STRING)
        messages->emplace_back(r->element[2]->str, r->element[2]->len);
      freeReplyObject(raw);
      raw = nullptr;
    }
  };
  take();  // replies already read into the buffer
  pollfd p{ctx_->fd, POLLIN, 0};
  const int ready = ::poll(&p, 1, static_cast<int>(timeout_seconds * 1000));
  if (ready > 0) {
    if (redisBufferRead(ctx_) != REDIS_OK) {
      drop();
      return false;
    }
    take();
  }
  return true;
}

}  // namespace kvwise
