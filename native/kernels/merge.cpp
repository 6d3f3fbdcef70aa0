// CPU reference of the m×m token merge (see kernels.h; GPU twin in merge.cu).
#include "common/status.h"
#include "kernels/kernels.h"

namespace vl3::kernels {

void merge_tokens_cpu(const float* x, int64_t rows, int64_t dim, int m, float* out) {
  check(rows > 0 && dim > 0 && m > 0 && rows % (static_cast<int64_t>(m) * m) == 0, ErrorCode::InvalidArgument,
        format("merge_tokens: %lld rows of %lld values do not split into %dx%d blocks", static_cast<long long>(rows),
               static_cast<long long>(dim), m, m));
  const int64_t group = static_cast<int64_t>(m) * m, tokens = rows / group;
  const float scale = 1.0f / static_cast<float>(group);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t d = 0; d < dim; ++d) {
      float sum = 0.0f;
      for (int64_t r = 0; r < group; ++r) sum += x[(t * group + r) * dim + d];
      out[t * dim + d] = sum * scale;
    }
  }
}

}  // namespace vl3::kernels
