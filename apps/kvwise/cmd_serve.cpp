// kvwise serve: the OpenAI-compatible HTTP server over the continuous-batching scheduler.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <thread>

#include "base/error.h"
#include "base/private_files.h"
#include "common.h"
#include "compress/baklava.h"
#include "compress/duo_profile.h"
#include "compress/gate.h"
#include "serve/http_server.h"
#include "serve/redis_tier.h"

namespace kvwise::cli {

void add_serve(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    PolicyOptions pol;
    ServerOptions s;
    SchedulerOptions sched;
    LivePrefixOptions prefix;
    size_t prefix_bytes = 0;
    double prefix_share = 0.10;
    bool no_prefix_cache = false;
    std::vector<std::string> gates, profiles;
    std::string redis_url, redis_cluster, instance_url, events_url;
    RedisTierOptions redis;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  add_model_options(*cmd, o->m);
  add_policy_options(*cmd, o->pol);
  cmd->add_option("--host", o->s.host, "address to listen on (default: loopback only)");
  cmd->add_option("--port", o->s.port, "port (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", o->s.api_key, "require Authorization: Bearer KEY on /v1/*");
  cmd->add_option("--model-name", o->s.model_name, "model id reported by /v1/models (default: general.name)");
  cmd->add_option("--max-batch,--parallel", o->sched.max_batch,
                  "sequences running (prefilled and decoded) together; llama.cpp's -np/--parallel")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-queue", o->sched.max_queue,
                  "requests that may wait while all --max-batch slots are busy; one more gets a 503 (0: none wait)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--max-kv-bytes", o->sched.max_kv_bytes, "admit requests only while hot KV stays below this");
  cmd->add_option("--max-body", o->s.max_body_bytes, "largest request body in bytes (413 above)");
  auto* blocks = cmd->add_option("--prefix-cache-blocks", o->prefix.memory_blocks,
                                 "prefix cache capacity in blocks (default: --prefix-cache-share of the memory; "
                                 "--no-prefix-cache for none)")
                     ->check(CLI::Range(size_t{1}, size_t{1} << 40));
  auto* bytes = cmd->add_option("--prefix-cache-bytes", o->prefix_bytes, "prefix cache capacity in KV bytes");
  auto* share = cmd->add_option("--prefix-cache-share", o->prefix_share,
                                "prefix cache capacity as a share of the machine's memory (or its cgroup limit)")
                    ->check(CLI::Range(0.0001, 0.9));
  auto* off = cmd->add_flag("--no-prefix-cache", o->no_prefix_cache, "compute every prompt in full (no prefix cache)");
  blocks->excludes(bytes)->excludes(share)->excludes(off);
  bytes->excludes(share)->excludes(off);
  share->excludes(off);
  cmd->add_option("--block-tokens", o->prefix.block_tokens, "tokens per prefix-cache block")
      ->check(CLI::Range(1, 1 << 16));
  auto* eviction = cmd->add_option("--eviction", o->prefix.eviction,
                                   "prefix cache eviction policy: lru, fifo, lfu, s3fifo, gdsf, arc or wa");
  auto* disk = cmd->add_option("--prefix-cache-disk", o->prefix.disk_dir,
                               "directory for a second tier that evicted blocks are demoted to");
  cmd->add_option("--prefix-cache-dtype", o->prefix.dtype,
                  "how cached blocks hold KV: f16 (as the KV store), int8 or int4 (1.8x / 3.2x the blocks in the "
                  "same bytes; rows are dequantised when a block is loaded)")
      ->check(CLI::IsMember({"f16", "int8", "int4"}));
  cmd->add_option("--prefix-cache-group", o->prefix.group, "channels per quantisation group of int8/int4 blocks")
      ->check(CLI::IsMember({8, 16, 32, 64, 128}));
  cmd->add_option("--prefix-cache-disk-blocks", o->prefix.disk_blocks, "capacity of the disk tier in blocks");
  auto* redis = cmd->add_option("--prefix-cache-redis", o->redis_url,
                                "redis://HOST[:PORT][/DB]: a tier shared with other servers below memory and disk "
                                "(Redis's maxmemory-policy evicts it)");
  auto* cluster = cmd->add_option("--prefix-cache-redis-cluster", o->redis_cluster,
                                  "HOST:PORT,...: the shared tier on a Redis Cluster (seed nodes)");
  redis->excludes(cluster);
  off->excludes(eviction)->excludes(disk)->excludes(redis)->excludes(cluster);
  cmd->add_option("--prefix-cache-redis-timeout", o->redis.lookup_deadline,
                  "seconds one request's shared-tier lookups may take (a later answer is a miss)")
      ->check(CLI::Range(0.001, 60.0));
  cmd->add_option("--prefix-cache-redis-queue", o->redis.queue_limit,
                  "shared-tier writes that may wait; one more is dropped (counted)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  cmd->add_option("--prefix-cache-redis-prefix", o->redis.key_prefix, "first part of every shared-tier key");
  o->redis.events_channel = "kvwise-kv-events";
  cmd->add_option("--kv-events-channel", o->redis.events_channel,
                  "Redis channel this server publishes its block stored/evicted events on, for kvwise route "
                  "(empty: none)");
  auto* events = cmd->add_option("--kv-events", o->events_url,
                                 "redis://HOST[:PORT]: publish KV events there (for kvwise route) with or without a "
                                 "shared tier (default: on the --prefix-cache-redis server, when given)");
  off->excludes(events);
  cmd->add_option("--instance-url", o->instance_url,
                  "how this server names itself in KV events (default http://HOST:PORT; the URL a router uses)");
  cmd->add_option("--gate", o->gates, "NAME=FILE: a gate GGUF that requests select by kv_policy gate(name=NAME)");
  cmd->add_option(
      "--profile", o->profiles,
      "NAME=FILE: a BaKlaVa or DuoAttention profile that requests select by kv_policy baklava(profile=NAME) "
      "or duoattention(profile=NAME)");
  cmd->add_option("--cold-dir", o->s.policy_files.cold_dir,
                  "where requests' SpeCache cold-tier files go (a private directory is made inside; default $TMPDIR)");
  cmd->add_option("--request-deadline", o->s.request_deadline,
                  "seconds a client has to send a request's headers and body")
      ->check(CLI::Range(0.1, 3600.0));
  cmd->callback([o] {
    install_stop_signals();  // SIGINT/SIGTERM end the server cleanly, even during the start
    const auto policy = resolve_policy(o->pol);
    check_eviction_name(o->prefix.eviction);
    auto model = Model::load(resolve_model_path(o->m));
    // Operator files that requests refer to by name, checked now so that a bad one stops the start.
    const auto named = [](const std::string& item, const char* flag) {
      const size_t eq = item.find('=');
      KV_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < item.size(), "{} {}: expected NAME=FILE", flag, item);
      return std::pair(item.substr(0, eq), item.substr(eq + 1));
    };
    for (const std::string& g : o->gates) {
      auto [name, file] = named(g, "--gate");
      GateModel::load_cached(file, model->config());
      o->s.policy_files.gates[name] = file;
    }
    for (const std::string& p : o->profiles) {
      auto [name, file] = named(p, "--profile");
      try {  // a BaKlaVa or a DuoAttention profile; a bad one stops the start
        BaklavaProfile::load(file);
      } catch (const Error& baklava) {
        try {
          DuoProfile::load(file);
        } catch (const Error& duo) {
          fail("--profile {}: neither a BaKlaVa profile ({}) nor a DuoAttention profile ({})", name, baklava.what(),
               duo.what());
        }
      }
      o->s.policy_files.profiles[name] = file;
    }
    if (!o->s.policy_files.cold_dir.empty()) checked_private_dir(o->s.policy_files.cold_dir);
    Engine engine(*model, engine_options(o->m));
    std::shared_ptr<RedisTier> shared, publisher;
    o->sched.prefill_chunk = o->m.prefill_chunk;
    o->s.default_policy = policy;
    if (!o->no_prefix_cache) {
      const size_t block = LivePrefixCache::block_bytes_for(engine.kv().layout(), o->prefix);
      std::string sized = "--prefix-cache-blocks";
      if (o->prefix_bytes > 0) {
        o->prefix.memory_blocks = o->prefix_bytes / block;
        sized = "--prefix-cache-bytes";
        KV_CHECK(o->prefix.memory_blocks > 0, "--prefix-cache-bytes {} is less than one block ({} bytes)",
                 o->prefix_bytes, block);
      } else if (o->prefix.memory_blocks == 0) {
        const size_t memory = machine_memory_bytes();
        o->prefix.memory_blocks = std::max<size_t>(1, static_cast<size_t>(o->prefix_share * memory) / block);
        sized = fmt::format("{:.0f}% of {} memory", 100 * o->prefix_share, human_bytes(static_cast<double>(memory)));
      }
      o->prefix.model_fingerprint = model->file().fingerprint();
      if (!o->redis_url.empty() || !o->redis_cluster.empty()) {
        o->redis.redis =
            o->redis_url.empty() ? parse_redis_cluster_nodes(o->redis_cluster) : parse_redis_url(o->redis_url);
        shared =
            std::make_shared<RedisTier>(o->redis, LivePrefixCache::block_identity(engine.kv().layout(), o->prefix));
        o->prefix.shared = shared;
        o->prefix.shared_deadline = o->redis.lookup_deadline;
      }
      publisher = shared;
      if (!o->events_url.empty()) {  // events only: a tier whose queue carries nothing but PUBLISH
        RedisTierOptions e = o->redis;
        e.redis = parse_redis_url(o->events_url);
        publisher = std::make_shared<RedisTier>(e, LivePrefixCache::block_identity(engine.kv().layout(), o->prefix));
      }
      if (publisher && !o->redis.events_channel.empty())
        o->prefix.on_event = [tier = publisher.get()](const char* kind, prefix::BlockKey key) {
          tier->publish(kind, key);
        };
      o->sched.prefix_cache = std::make_shared<LivePrefixCache>(engine.kv().layout(), o->prefix);
      std::fprintf(stderr, "kvwise serve: prefix cache %zu %s blocks of %d tokens = %s (%s; --no-prefix-cache: off)\n",
                   o->prefix.memory_blocks, o->prefix.dtype.c_str(), o->prefix.block_tokens,
                   human_bytes(static_cast<double>(o->prefix.memory_blocks * block)).c_str(), sized.c_str());
    }
    Scheduler scheduler(engine, o->sched);
    HttpServer server(engine, scheduler, o->s);
    const int port = server.bind();
    if (publisher)
      publisher->set_instance(o->instance_url.empty() ? fmt::format("http://{}:{}", o->s.host, port) : o->instance_url);
    if (shared) {
      std::fprintf(
          stderr, "kvwise serve: shared prefix tier on Redis %s%s (lookups within %.3f s, KV events on %s)\n",
          o->redis_url.empty() ? "cluster " : "",
          o->redis_url.empty() ? o->redis_cluster.c_str() : o->redis.redis.nodes[0].address().c_str(),
          o->redis.lookup_deadline,
          o->redis.events_channel.empty() || publisher != shared ? "no channel" : o->redis.events_channel.c_str());
    }
    if (publisher && publisher != shared)
      std::fprintf(stderr, "kvwise serve: KV events on Redis %s, channel %s\n",
                   publisher->options().redis.nodes[0].address().c_str(), o->redis.events_channel.c_str());
    const std::string cache = o->sched.prefix_cache ? fmt::format("{} blocks of {} tokens, {}", o->prefix.memory_blocks,
                                                                  o->prefix.block_tokens, o->prefix.eviction)
                                                    : std::string("off");
    std::fprintf(stderr, "kvwise serve: %s on http://%s:%d (batch %d, queue %d, policy %s, prefix cache %s)\n",
                 model->file().path().c_str(), o->s.host.c_str(), port, o->sched.max_batch, o->sched.max_queue,
                 policy->spec.c_str(), cache.c_str());
    std::printf("listening on %s:%d\n", o->s.host.c_str(), port);
    std::fflush(stdout);
    serve_until_signal([&] { server.serve(); }, [&] { server.stop(); });
    std::fprintf(stderr, "kvwise serve: stopped\n");
  });
}

}  // namespace kvwise::cli
