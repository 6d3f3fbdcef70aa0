#include "model/weights.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "common/status.h"
#include "ggml-cpu.h"
#include "kernels/int8_matmul.h"

namespace vl3 {
namespace {

/** ggml's CPU_REPACK buffer type when the backend is the CPU, else null. */
ggml_backend_buffer_type_t repack_buffer_type(ggml_backend_t backend) {
  if (!ggml_backend_is_cpu(backend)) return nullptr;
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  ggml_backend_reg_t reg = dev != nullptr ? ggml_backend_dev_backend_reg(dev) : nullptr;
  if (reg == nullptr) return nullptr;
  auto get = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
  if (get == nullptr) return nullptr;
  for (ggml_backend_buffer_type_t* p = get(dev); p != nullptr && *p != nullptr; ++p) {
    if (std::strcmp(ggml_backend_buft_name(*p), "CPU_REPACK") == 0) return *p;
  }
  return nullptr;
}

/**
 * Asks Linux to back a host weight buffer with transparent huge pages (where THP is in "madvise"
 * mode, as on most distributions, anonymous memory otherwise gets 4 KiB pages): streaming gigabytes
 * of weights through the matmuls then takes far fewer TLB misses. Advisory; failures are ignored.
 */
void advise_huge_pages(ggml_backend_buffer_t buffer) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (buffer == nullptr || !ggml_backend_buffer_is_host(buffer)) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t base = reinterpret_cast<uintptr_t>(ggml_backend_buffer_get_base(buffer));
  const uintptr_t start = (base + page - 1) / page * page;
  const uintptr_t end = (base + ggml_backend_buffer_get_size(buffer)) / page * page;
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
#else
  (void)buffer;
#endif
}

/**
 * Whether ggml-cpu has an interleaved kernel for this matrix on this build's CPU features. Must
 * agree with ggml's own choice: the repack buffer asserts on a tensor it cannot repack.
 */
bool repackable(const GgufTensorInfo& info) {
  if (info.n_dims != 2 || info.ne[1] % 8 != 0) return false;
  return (info.type == GGML_TYPE_Q4_0 || info.type == GGML_TYPE_Q4_K) && ggml_cpu_has_avx2();
}

/**
 * Whether our kernels (kernels/int8_matmul.h) take this matrix on a CPU backend. They serve
 * get_rows too (layers::get_rows), so tensors read by it (the token embedding) are packed as well.
 */
bool packable(const GgufTensorInfo& info, ggml_backend_t backend) {
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  return dev != nullptr && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU && info.n_dims == 2 &&
         kernels::int8_packable(info.type, info.ne[1], info.ne[0]) && kernels::int8_matmul_enabled();
}

/** Rows [0, rows) of a matrix to rewrite into our packed layout. */
struct PackJob {
  ggml_type type;
  const uint8_t* src;
  uint8_t* dst;
  int64_t rows, cols;
};

/**
 * Runs the jobs on up to 8 threads, in slices of 512 rows: the copy is bound by page faults on the
 * fresh destination memory and by reading the source pages, both of which scale with threads. Each
 * slice's source pages in `map` are dropped once copied, so the peak RSS stays near the copy's size.
 */
void run_packing(const std::vector<PackJob>& jobs, const MappedFile& map) {
  constexpr int64_t kSlice = 512;  // rows; a multiple of 8 (one group)
  std::vector<PackJob> slices;
  for (const PackJob& j : jobs) {
    for (int64_t r = 0; r < j.rows; r += kSlice) {
      slices.push_back({j.type, j.src + r * ggml_row_size(j.type, j.cols),
                        j.dst + kernels::int8_packed_size(j.type, r, j.cols), std::min(kSlice, j.rows - r), j.cols});
    }
  }
  std::atomic<size_t> next{0};
  auto work = [&]() {
    for (size_t i = next++; i < slices.size(); i = next++) {
      const PackJob& s = slices[i];
      kernels::int8_pack(s.type, s.src, s.dst, s.rows, s.cols);
      map.release(static_cast<uint64_t>(s.src - map.data()), ggml_row_size(s.type, s.cols) * s.rows);
    }
  };
  const size_t n = std::min<size_t>({8, std::max(1u, std::thread::hardware_concurrency()), slices.size()});
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
}

/** The parts of `f` in file order, or empty when they cannot be fused (missing, mixed types or widths). */
std::vector<const GgufTensorInfo*> fusible_parts(GgufFile& file, const Weights::Fusion& f,
                                                 const Weights::Placement& place) {
  std::vector<const GgufTensorInfo*> parts;
  for (const std::string& name : f.parts) {
    const GgufTensorInfo* info = file.find_tensor(name);
    if (info == nullptr || info->n_dims < 1 || info->n_dims > 2) return {};
    if (!parts.empty()) {
      const GgufTensorInfo& first = *parts.front();
      if (info->type != first.type || info->n_dims != first.n_dims || (info->n_dims == 2 && info->ne[0] != first.ne[0]) ||
          place(name) != place(first.name)) {
        return {};
      }
    }
    parts.push_back(info);
  }
  return parts;
}

}  // namespace

bool matrix_type_supported(ggml_type type) {
  if (type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) return true;
  if (type < 0 || type >= GGML_TYPE_COUNT || !ggml_is_quantized(type)) return false;
  const ggml_type_traits_cpu* cpu = ggml_get_type_traits_cpu(type);
  return cpu != nullptr && cpu->vec_dot != nullptr && ggml_get_type_traits(type)->to_float != nullptr &&
         ggml_get_type_traits_cpu(cpu->vec_dot_type)->from_float != nullptr;
}

Weights::Weights(GgufFile& file, ggml_backend_t backend, std::initializer_list<const char*> no_repack)
    : Weights(file, [backend](const std::string&) { return backend; }, no_repack) {}

Weights::Weights(GgufFile& file, const Placement& place, std::initializer_list<const char*> no_repack,
                 const std::vector<Fusion>& fusions)
    : path_(file.path()) {
  try {
    load(file, place, no_repack, fusions);
  } catch (...) {
    release();
    throw;
  }
}

void Weights::load(GgufFile& file, const Placement& place, std::initializer_list<const char*> no_repack,
                   const std::vector<Fusion>& fusions) {
  // Where each tensor's bytes go: packed for our kernels (copied from the file into their layout),
  // ggml's CPU_REPACK buffer, used in place in the mapped file (CPU tensors that keep the file's
  // layout), or copied as they are (device memory, or no mapping).
  enum class Layout { Packed, Repacked, Mapped, Copied };
  // Loaded tensors: the file's own, except fused parts, which become one synthetic tensor each.
  struct Loaded {
    GgufTensorInfo info;                       // the fused tensor's shape for a fusion
    std::vector<const GgufTensorInfo*> parts;  // empty: info is the file's tensor
    size_t group = 0;                          // index in groups_
    Layout layout = Layout::Copied;
    ggml_tensor* packed = nullptr;             // Packed: the bytes in our kernels' layout (kernels/int8_matmul.h)
  };
  const std::set<std::string> keep_plain(no_repack.begin(), no_repack.end());
  map_ = MappedFile::open(path_);
  auto in_map = [&](const GgufTensorInfo& info) {
    return map_ != nullptr && info.offset <= map_->size() && info.nbytes <= map_->size() - info.offset;
  };
  auto layout_of = [&](const GgufTensorInfo& info, ggml_backend_t backend) {
    if (packable(info, backend)) return Layout::Packed;
    if (repack_buffer_type(backend) != nullptr && repackable(info) && keep_plain.count(info.name) == 0) {
      return Layout::Repacked;
    }
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    const bool cpu = dev != nullptr && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU;
    return cpu && info.offset % 32 == 0 && in_map(info) ? Layout::Mapped : Layout::Copied;
  };
  std::vector<Loaded> loads;
  std::set<std::string> fused_part, applied;
  for (const Fusion& f : fusions) {
    std::vector<const GgufTensorInfo*> parts = fusible_parts(file, f, place);
    if (parts.empty() || (!f.follows.empty() && applied.count(f.follows) == 0)) continue;
    Loaded l{*parts.front(), parts};
    l.info.name = f.name;
    const int last = l.info.n_dims - 1;  // concatenated dimension
    l.info.ne[last] = 0;
    l.info.nbytes = 0;
    for (const GgufTensorInfo* p : parts) {
      l.info.ne[last] += p->ne[last];
      l.info.nbytes += p->nbytes;
    }
    const ggml_backend_t backend = place(parts.front()->name);
    const Layout fused = layout_of(l.info, backend);
    const bool mapped_parts = layout_of(*parts.front(), backend) == Layout::Mapped && fused != Layout::Packed &&
                              fused != Layout::Repacked;
    if (f.follows.empty() && mapped_parts) continue;  // the parts stay in place in the mapped file
    for (const GgufTensorInfo* p : parts) fused_part.insert(p->name);
    applied.insert(f.name);
    loads.push_back(l);
  }
  for (const auto& info : file.tensors()) {
    if (fused_part.count(info.name) == 0) loads.push_back(Loaded{info, {}});
  }
  ggml_init_params ip{ggml_tensor_overhead() * (loads.size() + 1), nullptr, /*no_alloc=*/true};
  for (Loaded& l : loads) {
    const GgufTensorInfo& info = l.info;
    check(info.name.size() < GGML_MAX_NAME, ErrorCode::InvalidModel,
          format("%s: tensor name %s is too long", path_.c_str(), info.name.c_str()));
    const ggml_backend_t backend = place(l.parts.empty() ? info.name : l.parts.front()->name);
    size_t g = 0;
    while (g < groups_.size() && groups_[g].backend != backend) ++g;
    if (g == groups_.size()) {
      groups_.push_back(Group{backend, repack_buffer_type(backend), ggml_init(ip), ggml_init(ip), ggml_init(ip),
                              nullptr, nullptr, nullptr, ggml_init(ip)});
      check(groups_[g].ctx != nullptr && groups_[g].repack_ctx != nullptr && groups_[g].map_ctx != nullptr &&
                groups_[g].alias_ctx != nullptr,
            ErrorCode::OutOfMemory, "Cannot allocate the weight table");
    }
    l.group = g;
    l.layout = layout_of(info, backend);
    if (l.layout == Layout::Mapped && !l.parts.empty()) l.layout = Layout::Copied;  // fused: one copy of the parts
    ggml_context* ctx = l.layout == Layout::Mapped     ? groups_[g].map_ctx
                        : l.layout == Layout::Repacked ? groups_[g].repack_ctx
                        : l.layout == Layout::Packed   ? groups_[g].alias_ctx
                                                       : groups_[g].ctx;
    ggml_tensor* t = ggml_new_tensor(ctx, info.type, std::max(1, info.n_dims), info.ne);
    if (l.layout == Layout::Packed) {
      l.packed = ggml_new_tensor_1d(groups_[g].ctx, GGML_TYPE_I8,
                                    static_cast<int64_t>(kernels::int8_storage_size(info.type, info.ne[1], info.ne[0])));
    }
    ggml_set_name(t, info.name.c_str());
    check(ggml_nbytes(t) == info.nbytes, ErrorCode::InvalidModel,
          format("%s: tensor %s size does not match its shape", path_.c_str(), info.name.c_str()));
    tensors_[info.name] = t;
  }
  const std::string what = format("Cannot allocate memory for the weights of %s", path_.c_str());
  for (Group& grp : groups_) {
    if (ggml_get_first_tensor(grp.ctx) != nullptr) {
      grp.buffer = ggml_backend_alloc_ctx_tensors(grp.ctx, grp.backend);
      check(grp.buffer != nullptr, ErrorCode::OutOfMemory, what);
      advise_huge_pages(grp.buffer);
      ggml_backend_buffer_set_usage(grp.buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    }
    if (ggml_get_first_tensor(grp.repack_ctx) != nullptr) {
      grp.repack_buffer = ggml_backend_alloc_ctx_tensors_from_buft(grp.repack_ctx, grp.repack_buft);
      check(grp.repack_buffer != nullptr, ErrorCode::OutOfMemory, what);
      advise_huge_pages(grp.repack_buffer);
      ggml_backend_buffer_set_usage(grp.repack_buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    }
    if (ggml_get_first_tensor(grp.map_ctx) != nullptr) {
      grp.map_buffer = ggml_backend_cpu_buffer_from_ptr(const_cast<uint8_t*>(map_->data()), map_->size());
      check(grp.map_buffer != nullptr, ErrorCode::OutOfMemory, what);
      ggml_backend_buffer_set_usage(grp.map_buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    }
  }
  for (const Loaded& l : loads) {  // packed: the alias of the original type goes on its bytes
    if (l.packed == nullptr) continue;
    ggml_tensor* t = tensors_[l.info.name];
    check(ggml_backend_tensor_alloc(groups_[l.group].buffer, t, l.packed->data) == GGML_STATUS_SUCCESS,
          ErrorCode::Internal, format("%s: cannot place tensor %s", path_.c_str(), l.info.name.c_str()));
    kernels::int8_mark(t);
  }
  std::vector<uint8_t> staging;
  std::vector<PackJob> pack_jobs;  // packed matrices copied straight from the mapped file
  auto whole_groups_in_map = [&](const GgufTensorInfo* p) { return in_map(*p) && p->ne[1] % 8 == 0; };
  for (const Loaded& l : loads) {
    const GgufTensorInfo& info = l.info;
    ggml_tensor* t = tensors_[info.name];
    const Group& grp = groups_[l.group];
    if (l.layout == Layout::Mapped) {  // bounds checked by layout_of()
      check(ggml_backend_tensor_alloc(grp.map_buffer, t, const_cast<uint8_t*>(map_->data()) + info.offset) ==
                GGML_STATUS_SUCCESS,
            ErrorCode::InvalidModel, format("%s: cannot place tensor %s", path_.c_str(), info.name.c_str()));
      mapped_bytes_ += info.nbytes;
      continue;
    }
    if (l.layout == Layout::Packed) {
      std::vector<const GgufTensorInfo*> parts = l.parts;
      if (parts.empty()) parts.push_back(&info);
      if (std::all_of(parts.begin(), parts.end(), whole_groups_in_map)) {  // pack each part from the map
        uint8_t* dst = static_cast<uint8_t*>(t->data);
        for (const GgufTensorInfo* p : parts) {
          pack_jobs.push_back({p->type, map_->data() + p->offset, dst, p->ne[1], p->ne[0]});
          dst += kernels::int8_packed_size(p->type, p->ne[1], p->ne[0]);
        }
        continue;
      }
    }
    const bool direct = l.layout == Layout::Copied && ggml_backend_buffer_is_host(grp.buffer);
    // Straight into place on the host; else through staging (device memory, or a layout rewritten
    // as it is copied, which needs the whole tensor at once).
    uint8_t* dst = direct ? static_cast<uint8_t*>(t->data) : nullptr;
    if (!direct) {
      staging.resize(info.nbytes);
      dst = staging.data();
    }
    if (l.parts.empty()) {
      file.read_raw(info, dst);
    } else {
      for (const GgufTensorInfo* p : l.parts) {
        file.read_raw(*p, dst);
        dst += p->nbytes;
      }
    }
    if (l.layout == Layout::Packed) {  // a host buffer (CPU backend)
      kernels::int8_pack(info.type, staging.data(), t->data, info.ne[1], info.ne[0]);
    } else if (!direct) {
      ggml_backend_tensor_set(t, staging.data(), 0, info.nbytes);
    }
  }
  if (!pack_jobs.empty()) run_packing(pack_jobs, *map_);
  if (mapped_bytes_ == 0) map_.reset();
}

Weights::~Weights() { release(); }

void Weights::release() {
  for (Group& g : groups_) {
    if (g.map_buffer != nullptr) ggml_backend_buffer_free(g.map_buffer);
    if (g.map_ctx != nullptr) ggml_free(g.map_ctx);
    if (g.alias_ctx != nullptr) ggml_free(g.alias_ctx);
    if (g.repack_buffer != nullptr) ggml_backend_buffer_free(g.repack_buffer);
    if (g.buffer != nullptr) ggml_backend_buffer_free(g.buffer);
    if (g.repack_ctx != nullptr) ggml_free(g.repack_ctx);
    if (g.ctx != nullptr) ggml_free(g.ctx);
  }
  groups_.clear();
  map_.reset();  // after the buffers that point into it
  mapped_bytes_ = 0;
}

ggml_tensor* Weights::get(const std::string& name, std::initializer_list<int64_t> ne, bool f32_only) const {
  auto it = tensors_.find(name);
  check(it != tensors_.end(), ErrorCode::InvalidModel, format("%s: tensor %s is missing", path_.c_str(), name.c_str()));
  ggml_tensor* t = it->second;
  size_t d = 0;
  bool ok = true;
  for (int64_t n : ne) ok = ok && t->ne[d++] == n;
  for (; d < GGML_MAX_DIMS; ++d) ok = ok && t->ne[d] == 1;
  if (!ok) {
    std::string want, got;
    for (int64_t n : ne) want += (want.empty() ? "" : ", ") + std::to_string(n);
    for (int i = 0; i < ggml_n_dims(t); ++i) got += (got.empty() ? "" : ", ") + std::to_string(t->ne[i]);
    throw Error(ErrorCode::InvalidModel, format("%s: tensor %s has shape [%s], expected [%s]", path_.c_str(),
                                                name.c_str(), got.c_str(), want.c_str()));
  }
  check(!f32_only || t->type == GGML_TYPE_F32, ErrorCode::InvalidModel,
        format("%s: tensor %s must be f32, found %s", path_.c_str(), name.c_str(), ggml_type_name(t->type)));
  check(f32_only || matrix_type_supported(t->type), ErrorCode::InvalidModel,
        format("%s: tensor %s has type %s, which no matrix kernel takes (expected f32, f16, bf16 or a quantized type)",
               path_.c_str(), name.c_str(), ggml_type_name(t->type)));
  return t;
}

size_t Weights::bytes() const {
  size_t n = mapped_bytes_;
  for (const Group& g : groups_) {
    n += (g.buffer != nullptr ? ggml_backend_buffer_get_size(g.buffer) : 0) +
         (g.repack_buffer != nullptr ? ggml_backend_buffer_get_size(g.repack_buffer) : 0);
  }
  return n;
}

}  // namespace vl3
