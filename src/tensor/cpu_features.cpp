#include <cstdlib>
#include <string>

#include "base/error.h"
#include "tensor/kernels.h"

namespace kvwise {

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return true;
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::Avx512:
      return isa_supported(Isa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
  return false;
}

const Kernels& kernels_for(Isa isa) {
  KV_CHECK(isa_supported(isa), "this CPU does not support the requested instruction set");
  switch (isa) {
    case Isa::Avx512:
      return kernels_avx512();
    case Isa::Avx2:
      return kernels_avx2();
    default:
      return kernels_scalar();
  }
}

namespace {
const Kernels& select_kernels() {
  if (const char* env = std::getenv("KVWISE_ISA"); env && *env) {
    const std::string want = env;
    if (want == "scalar") return kernels_for(Isa::Scalar);
    if (want == "avx2") return kernels_for(Isa::Avx2);
    if (want == "avx512") return kernels_for(Isa::Avx512);
    fail("KVWISE_ISA must be scalar, avx2 or avx512, not '{}'", want);
  }
  if (isa_supported(Isa::Avx512)) return kernels_avx512();
  if (isa_supported(Isa::Avx2)) return kernels_avx2();
  return kernels_scalar();
}
}  // namespace

const Kernels& kernels() {
  static const Kernels& k = select_kernels();
  return k;
}

}  // namespace kvwise
