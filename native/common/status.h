// Library errors. Every failure a user can cause becomes a vl3::Error with a stable code;
// addon/ turns it into a JavaScript VideoLlama3Error with the same `code`.
#pragma once

#include <stdexcept>
#include <string>

namespace vl3 {

/** Stable error codes, mirrored by ErrorCode in lib/errors.ts. */
enum class ErrorCode {
  InvalidArgument,   // a caller-supplied value is out of range or malformed
  InvalidModel,      // model files are missing, corrupt, truncated or of the wrong shape
  UnsupportedModel,  // a well-formed model of an architecture we do not implement
  Io,                // the operating system refused a read or write
  Aborted,           // the caller cancelled the work
  OutOfMemory,       // an allocation failed
  DeviceUnavailable, // the GPU asked for is missing (no CUDA build, driver or device) or failed
  Internal,          // a bug in this library
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }
  const char* code_name() const { return error_code_name(code_); }

 private:
  ErrorCode code_;
};

/** Throws Error(code, message) unless cond holds. For checks on user-controlled data. */
inline void check(bool cond, ErrorCode code, const std::string& message) {
  if (!cond) throw Error(code, message);
}

/** Installs ggml log and abort hooks once; ggml's own logs go to the vl3 log sink. */
void install_ggml_hooks();

/** printf-style formatting into a std::string. */
std::string format(const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

}  // namespace vl3
