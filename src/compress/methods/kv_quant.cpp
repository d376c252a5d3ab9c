// Uniform KV quantisation (llama.cpp's q8_0/q4_0 KV types; KIVI, arXiv:2402.02750): every token but
// the recent residual lives low-bit; the budget does not apply.
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

namespace {

MethodInfo uniform(std::string name, std::string summary, std::string bits, bool bits_param) {
  std::vector<ParamSchema> params;
  if (bits_param) params.push_back(ParamSchema::text("bits", bits, "f16, bf16, int8, int4, int2 or int1"));
  for (ParamSchema s :
       {ParamSchema::text("k", "", "precision of keys"), ParamSchema::text("v", "", "precision of values"),
        ParamSchema::choice("keys", "token", {"token", "channel"}), ParamSchema::integer("group", 32, 8, 4096),
        ParamSchema::integer("residual", 32, 0, kMaxPolicyWindow)})
    params.push_back(s);
  return {.name = std::move(name),
          .summary = std::move(summary),
          .paper = "arXiv:2402.02750",
          .group = "low-precision",
          .params = params,
          .budget = BudgetUse::Ignored,
          .build = [bits, bits_param](KvPolicy& p, MethodArgs& a) {
            const std::string b = bits_param ? a.text("bits") : bits;
            QuantFormat f;
            const std::string k = a.text("k"), v = a.text("v");
            f.key = parse_precision(k.empty() ? b : k);
            f.value = parse_precision(v.empty() ? b : v);
            f.key_per_channel = a.choice("keys") == "channel";
            f.group = a.integer("group");
            p.residual = a.integer("residual");
            f.validate(f.group);  // what can be checked before the model's head_dim is known
            p.scorer = make_position_scorer();
            p.disposition = make_demote({f, std::nullopt, false});
            p.decode = make_fifo();
          }};
}

}  // namespace

KVWISE_METHODS(kv_quant) {
  registry.add(uniform("kv-int8",
                       "uniform 8-bit KV (per-group scale and zero), recent residual exact; ignores the budget", "int8",
                       false));
  registry.add(uniform("kv-int4", "uniform 4-bit KV, as kv-int8", "int4", false));
  registry.add(uniform("kv-int2", "uniform 2-bit KV, as kv-int8", "int2", false));
  registry.add(uniform("kv-quant", "uniform KV quantisation of any precision (f16, bf16, int8, int4, int2, int1)",
                       "int4", true));
}

}  // namespace kvwise
