// Eviction policies of the prefix cache behind one interface. A policy sees every resident block of
// its tier from insertion to eviction and orders them its own way; evict() returns a block that no
// running request holds (pinned blocks are skipped, so that walk is bounded by the pinned count).
// Per operation: LRU, FIFO, S3-FIFO, ARC O(1); LFU O(log distinct counts); WA O(categories);
// hazard O(classes); GDSF and the offline Belady O(log n).
// Thread-safety: none; a policy belongs to one PrefixCache tier, whose owner serialises every call.
#pragma once
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "prefix/block_table.h"

namespace kvwise::prefix {

// Workload-aware policy (Wang et al., ATC'25). Every [R] detail of the spec is one of these knobs.
struct WaOptions {
  double horizon = 30.0;               // T: the upcoming window the reuse probability is for (s) [R]
  double fit_window = 600.0;           // reuse intervals from this much recent time are fitted (s) [R]
  double refit_interval = 60.0;        // how often the per-category fit is redone (s)
  double life_quantile = 0.95;         // lifespan = this quantile of a category's reuse intervals [R]
  int min_samples = 20;                // fewer reuse intervals: the category uses the pooled fit
  double default_lambda = 1.0 / 60.0;  // before any fit: mean reuse interval of a minute [R]
  bool use_lifespan = true;            // ablation switches
  bool use_probability = true;         // false: P ignores p_w (distribution only)
  // Equal P (typically 0: past the lifespan) across categories: evict the older block first, and
  // use the larger offset only among equally old blocks (one request's blocks). false: offset
  // first, as the spec's tie rule reads literally.
  bool ties_by_age = true;
  // true: a block moves to the category of the request that last used it (as a per-category free
  // queue that requests release their blocks into would do); false: it keeps the category of the
  // request that created it. [R] false measured better on both the synthetic and Mooncake traces.
  bool category_follows_last_use = false;
  // Fixed per-category models (lambda, p, lifespan) instead of online fitting: e.g. fitted on a
  // previous period, as the paper does with the previous hour. Empty = fit online.
  struct Model {
    double lambda, p, life;
  };
  std::map<uint16_t, Model> fixed_models;
};

// Learned reuse hazard ("hazard"): every block access falls into a class (the request's category;
// how often its key was used before, capped; whether it is the last block of its prompt). Per class, the policy learns
// online the distribution of the time to the key's next use from the past accesses it has seen, and scores a resident
// block by P(used within the next `horizon` s | its class, idle for its age so far). The lowest score is evicted.
// Learning uses only the past (the replay's own history); nothing is fitted offline. See docs/results/prefix-cache.md
// for what each knob does on the traces.
struct HazardOptions {
  double horizon = 0;  // H: the score is the reuse probability within this much time (s);
                       // 0: horizon_scale x the mean idle time of evicted blocks (adapts)
  double horizon_scale = 2.0;
  double window = 900.0;         // gaps up to this long are binned; longer ones count as "not within" (s)
  double half_life = 600.0;      // the histograms halve this often, so the model follows the workload (s)
  double refit_interval = 10.0;  // how often the score tables are recomputed (s)
  int max_uses = 2;              // use counts 0..max_uses-1 are classes of their own, more share one
  bool last_block_class = true;  // the last block of a prompt (partial, rarely reused) is a class
  // The request's category (kvwise sim --categories, the server's per-request category) is part of
  // the class too; categories beyond the first `max_categories` seen share one slot. 0: ignored.
  int max_categories = 16;
  int bins = 40;         // log-spaced age bins from min_gap to `window`
  double min_gap = 0.5;  // seconds; shorter gaps share the first bin
};

struct PolicyOptions {
  size_t capacity = 0;              // blocks in the tier (S3-FIFO and ARC size their queues from it)
  double s3fifo_small_ratio = 0.1;  // S3-FIFO's small queue, as a share of the capacity (the paper's 10 %)
  int s3fifo_threshold = 1;         // hits in the small queue that move a block to main (1-3; libCacheSim: 2)
  bool gdsf_position_cost = false;  // cost of a block = its offset + 1 (recompute grows with position)
  WaOptions wa;
  HazardOptions hazard;
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual std::string name() const = 0;
  void attach(const BlockTable* table) { table_ = table; }

  // Every access of a block key by a request, cached or not, in request order (WA fits on these).
  virtual void observe(BlockKey, uint16_t /*category*/, double /*now*/) {}
  // A request's whole prompt, before its blocks are looked up; by default observe() per block.
  virtual void observe_request(std::span<const BlockKey> keys, uint16_t category, double now) {
    for (BlockKey k : keys) observe(k, category, now);
  }
  // The next time the block's key will be used (offline policies only; +inf when never).
  virtual void set_next_use(BlockId, double) {}
  virtual void on_insert(BlockId b, double now) = 0;   // new resident block (pinned by its request)
  virtual void on_hit(BlockId b, double now) = 0;      // found by a lookup
  virtual void on_release(BlockId b, double now) = 0;  // its last holder released it
  // Chooses a victim among unpinned blocks and forgets it; kNoBlock when every block is pinned.
  // `incoming` is the key about to be inserted (ARC adapts on it).
  virtual BlockId evict(double now, BlockKey incoming) = 0;
  virtual void on_remove(BlockId b) = 0;              // left the tier for another reason (promotion)
  virtual size_t bytes() const = 0;                   // metadata the policy holds about resident blocks
  virtual size_t history_bytes() const { return 0; }  // about keys that need not be resident

 protected:
  bool pinned(BlockId b) const { return table_->pinned(b); }
  const BlockMeta& meta(BlockId b) const { return (*table_)[b]; }
  const BlockTable* table_ = nullptr;
};

// One entry per policy: its name, what it is, whether it needs the future (offline: simulator only)
// and its builder. A new policy is its own file plus one line in eviction_policy.cpp's table.
struct PolicyInfo {
  std::string name;
  std::string summary;
  bool offline = false;
  std::unique_ptr<EvictionPolicy> (*build)(const PolicyOptions&);
  bool in_all = true;  // false: an analysis bound that `all` leaves out (named explicitly when wanted)
};
const std::vector<PolicyInfo>& policy_catalog();

// Any name of policy_catalog(); throws kvwise::Error otherwise, listing the known names.
std::unique_ptr<EvictionPolicy> make_policy(const std::string& name, const PolicyOptions& options);
std::vector<std::string> policy_names();          // every policy, online ones first, in catalog order
std::vector<std::string> online_policy_names();   // those the live server can run
bool is_offline_policy(const std::string& name);  // a catalog policy that needs the future
// Expands "all" into every online policy plus the offline optimum (belady), not the analysis bounds
// (lru-oracle); other names pass through.
std::vector<std::string> expand_policy_names(const std::vector<std::string>& names);

}  // namespace kvwise::prefix
