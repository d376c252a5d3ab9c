// kvwise route: the KV-aware router in front of several kvwise servers (serve/router.h).
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <thread>

#include "base/error.h"
#include "common.h"
#include "serve/router.h"

namespace kvwise::cli {

void add_route(CLI::App& app) {
  struct Opts {
    std::string model;
    RouterOptions r;
    std::string events_url, events_cluster;
  };
  auto o = std::make_shared<Opts>();
  o->r.port = 8000;
  CLI::App* cmd = app.add_subcommand("route",
                                     "OpenAI-compatible router that sends each request to the kvwise server "
                                     "holding most of its prefix");
  cmd->add_option("-m,--model", o->model,
                  "the servers' model or a vocab-only GGUF, to tokenize and hash prompts as they do (default: the "
                  "bundled model)");
  cmd->add_option("--host", o->r.host, "address to listen on");
  cmd->add_option("--port", o->r.port, "port (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--backend", o->r.backends, "http://HOST:PORT of a kvwise serve (repeat for each)")->required();
  cmd->add_option("--routing", o->r.routing, "round-robin, least-load, prefix or cost")
      ->check(CLI::IsMember(prefix::routing_policy_names()));
  cmd->add_option("--block-tokens", o->r.block_tokens, "the servers' --block-tokens")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--overlap-weight", o->r.routing_options.overlap_weight,
                  "cost routing: weight of an uncached prefill block against a decode block (Dynamo's "
                  "overlap_score_weight)")
      ->check(CLI::Range(0.0, 1000.0));
  add_prefix_routing_options(*cmd, o->r.routing_options);
  auto* ev = cmd->add_option("--kv-events", o->events_url,
                             "redis://HOST:PORT whose pub/sub carries the servers' KV events (default: the router's "
                             "own record of where it sent what)");
  auto* evc = cmd->add_option("--kv-events-cluster", o->events_cluster, "HOST:PORT,...: the events on a Redis Cluster");
  ev->excludes(evc);
  cmd->add_option("--kv-events-channel", o->r.events_channel, "the channel the servers publish on");
  cmd->add_option("--health-interval", o->r.health_interval, "seconds between backend health checks")
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--backend-timeout", o->r.backend_timeout, "seconds a backend may take to answer")
      ->check(CLI::Range(1.0, 86400.0));
  cmd->add_option("--max-body", o->r.max_body_bytes, "largest request body in bytes (413 above)");
  cmd->callback([o] {
    install_stop_signals();
    if (!o->events_url.empty()) o->r.events = parse_redis_url(o->events_url);
    if (!o->events_cluster.empty()) o->r.events = parse_redis_cluster_nodes(o->events_cluster);
    ModelOptions m;
    m.model = o->model;
    const auto vocab = GgufFile::open(resolve_model_path(m));
    Router router(*vocab, o->r);
    const int port = router.bind();
    std::fprintf(stderr, "kvwise route: %zu backends, routing %s, prefix locations from %s, on http://%s:%d\n",
                 o->r.backends.size(), o->r.routing.c_str(),
                 o->r.events ? "the servers' KV events" : "the router's own record", o->r.host.c_str(), port);
    std::printf("listening on %s:%d\n", o->r.host.c_str(), port);
    std::fflush(stdout);
    serve_until_signal([&] { router.serve(); }, [&] { router.stop(); });
    std::fprintf(stderr, "kvwise route: stopped\n");
  });
}

}  // namespace kvwise::cli
