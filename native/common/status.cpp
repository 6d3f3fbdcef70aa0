#include "common/status.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "ggml.h"

namespace vl3 {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::InvalidModel: return "INVALID_MODEL";
    case ErrorCode::UnsupportedModel: return "UNSUPPORTED_MODEL";
    case ErrorCode::Io: return "IO_ERROR";
    case ErrorCode::Aborted: return "ABORTED";
    case ErrorCode::OutOfMemory: return "OUT_OF_MEMORY";
    case ErrorCode::DeviceUnavailable: return "DEVICE_UNAVAILABLE";
    case ErrorCode::Internal: return "INTERNAL";
  }
  return "INTERNAL";
}

std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  const int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string out;
  if (n > 0) {
    std::vector<char> buf(static_cast<size_t>(n) + 1);
    std::vsnprintf(buf.data(), buf.size(), fmt, ap2);
    out.assign(buf.data(), static_cast<size_t>(n));
  }
  va_end(ap2);
  return out;
}

namespace {

void quiet_log(enum ggml_log_level level, const char* text, void*) {
  // ggml reports parse failures of user files as errors; we re-raise them as vl3::Error with
  // our own message, so only surface its warnings and errors when debugging is asked for.
  static const bool verbose = std::getenv("VL3_DEBUG") != nullptr;
  if (verbose || level == GGML_LOG_LEVEL_NONE) std::fputs(text, stderr);
}

}  // namespace

void install_ggml_hooks() {
  static std::once_flag once;
  std::call_once(once, [] { ggml_log_set(quiet_log, nullptr); });
}

}  // namespace vl3
