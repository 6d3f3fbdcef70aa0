#include "common/file_io.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/status.h"

#include <sys/stat.h>
#include <sys/types.h>

#if defined(_WIN32)
#include <io.h>
#include <windows.h>  // NOMINMAX, WIN32_LEAN_AND_MEAN: CMakeLists.txt defines them for the whole build
#define vl3_fseek _fseeki64
#define vl3_ftell _ftelli64
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#define vl3_fseek fseeko
#define vl3_ftell ftello
#endif

namespace vl3 {
namespace {

#if defined(_WIN32)
// Paths arrive as UTF-8 (from JavaScript strings); the narrow CRT functions would read them in the
// ANSI code page, so on Windows files are opened by their UTF-16 names, as ggml_fopen does for
// the GGUF reader.
std::wstring wide(const std::string& path) {
  if (path.empty()) return std::wstring();
  const int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path.data(), static_cast<int>(path.size()), nullptr, 0);
  if (n <= 0) throw Error(ErrorCode::InvalidArgument, format("Path %s is not valid UTF-8", path.c_str()));
  std::wstring out(static_cast<size_t>(n), L'\0');
  MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path.data(), static_cast<int>(path.size()), &out[0], n);
  return out;
}

std::string last_error_text() {
  const DWORD code = GetLastError();
  char buf[256] = {0};
  const DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr, code, 0, buf,
                                 sizeof(buf), nullptr);
  std::string text(buf, n);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '.')) text.pop_back();
  return text.empty() ? format("Windows error %lu", static_cast<unsigned long>(code)) : text;
}
#endif

std::FILE* open_file(const std::string& path, const char* mode) {
#if defined(_WIN32)
  const std::wstring wmode(mode, mode + std::strlen(mode));
  return _wfopen(wide(path).c_str(), wmode.c_str());
#else
  return std::fopen(path.c_str(), mode);
#endif
}

int remove_file(const std::string& path) {
#if defined(_WIN32)
  return _wremove(wide(path).c_str());
#else
  return std::remove(path.c_str());
#endif
}

}  // namespace

InputFile::InputFile(const std::string& path) : path_(path) {
  // Only regular files: opening a FIFO blocks until a writer appears (pinning a libuv thread), and
  // a device such as /dev/zero never ends.
#if defined(_WIN32)
  struct _stat64 st {};
  const bool known = _wstat64(wide(path).c_str(), &st) == 0;
#else
  struct stat st {};
  const bool known = ::stat(path.c_str(), &st) == 0;
#endif
  if (known && (st.st_mode & S_IFMT) != S_IFREG) {
    throw Error(ErrorCode::Io, format("Cannot open %s: not a regular file (a %s); pass the path of a model file",
                                      path.c_str(), (st.st_mode & S_IFMT) == S_IFDIR ? "directory" : "FIFO, socket or device"));
  }
  f_ = open_file(path, "rb");
  if (f_ == nullptr) {
    throw Error(ErrorCode::Io, format("Cannot open %s: %s", path.c_str(), std::strerror(errno)));
  }
  if (vl3_fseek(f_, 0, SEEK_END) != 0) {
    std::fclose(f_);
    throw Error(ErrorCode::Io, format("Cannot seek in %s: %s", path.c_str(), std::strerror(errno)));
  }
  size_ = static_cast<uint64_t>(vl3_ftell(f_));
}

InputFile::~InputFile() {
  if (f_ != nullptr) std::fclose(f_);
}

std::unique_ptr<MappedFile> MappedFile::open(const std::string& path) {
  if (std::getenv("VL3_NO_MMAP") != nullptr) return nullptr;
#if defined(_WIN32)
  // A read-only view of the whole file; the view keeps the file and the section referenced, so
  // both handles close at once. Any failure: null, and the caller reads the file instead.
  std::wstring wpath;
  try {
    wpath = wide(path);
  } catch (const Error&) {
    return nullptr;
  }
  HANDLE file = CreateFileW(wpath.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                            FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file == INVALID_HANDLE_VALUE) return nullptr;
  LARGE_INTEGER size{};
  void* p = nullptr;
  if (GetFileSizeEx(file, &size) && size.QuadPart > 0 &&
      static_cast<unsigned long long>(size.QuadPart) <= static_cast<unsigned long long>(SIZE_MAX)) {
    HANDLE section = CreateFileMappingW(file, nullptr, PAGE_READONLY, 0, 0, nullptr);
    if (section != nullptr) {
      p = MapViewOfFile(section, FILE_MAP_READ, 0, 0, 0);
      CloseHandle(section);
    }
  }
  CloseHandle(file);
  if (p == nullptr) return nullptr;
  return std::unique_ptr<MappedFile>(new MappedFile(static_cast<const uint8_t*>(p), static_cast<uint64_t>(size.QuadPart)));
#else
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st {};
  void* p = MAP_FAILED;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  }
  ::close(fd);  // the mapping keeps the file referenced
  if (p == MAP_FAILED) return nullptr;
  posix_madvise(p, static_cast<size_t>(st.st_size), POSIX_MADV_WILLNEED);  // start reading ahead
  return std::unique_ptr<MappedFile>(new MappedFile(static_cast<const uint8_t*>(p), static_cast<uint64_t>(st.st_size)));
#endif
}

MappedFile::~MappedFile() {
#if defined(_WIN32)
  UnmapViewOfFile(data_);
#else
  munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
#endif
}

void MappedFile::release(uint64_t offset, uint64_t n) const {
#if defined(__linux__)  // (glibc's posix_madvise ignores DONTNEED; elsewhere the pages just stay)
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page;  // whole pages around the range: re-reading one is harmless
  const uint64_t end = std::min(size_, (offset + n + page - 1) / page * page);
  if (offset <= size_ && end > begin) {
    madvise(const_cast<uint8_t*>(data_) + begin, static_cast<size_t>(end - begin), MADV_DONTNEED);
  }
#else  // (macOS, Windows: the pages stay mapped until the file is unmapped)
  (void)offset;
  (void)n;
#endif
}

void InputFile::read_at(uint64_t offset, void* dst, uint64_t n, const std::string& what) {
  if (offset > size_ || n > size_ - offset) {
    throw Error(ErrorCode::InvalidModel,
                format("%s is truncated: %s needs bytes %llu..%llu but the file has %llu bytes",
                       path_.c_str(), what.c_str(), static_cast<unsigned long long>(offset),
                       static_cast<unsigned long long>(offset + n), static_cast<unsigned long long>(size_)));
  }
  if (vl3_fseek(f_, static_cast<int64_t>(offset), SEEK_SET) != 0 ||
      std::fread(dst, 1, static_cast<size_t>(n), f_) != static_cast<size_t>(n)) {
    throw Error(ErrorCode::Io, format("Read of %s from %s failed: %s", what.c_str(), path_.c_str(),
                                      std::strerror(errno)));
  }
}

AtomicOutputFile::AtomicOutputFile(const std::string& path) : path_(path), tmp_path_(path + ".partial") {
  f_ = open_file(tmp_path_, "wb");
  if (f_ == nullptr) {
    throw Error(ErrorCode::Io, format("Cannot create %s: %s", tmp_path_.c_str(), std::strerror(errno)));
  }
}

AtomicOutputFile::~AtomicOutputFile() {
  if (f_ != nullptr) {
    std::fclose(f_);
    remove_file(tmp_path_);
  }
}

void AtomicOutputFile::write(const void* data, uint64_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, static_cast<size_t>(n), f_) != static_cast<size_t>(n)) {
    throw Error(ErrorCode::Io, format("Write to %s failed: %s", tmp_path_.c_str(), std::strerror(errno)));
  }
  pos_ += n;
}

void AtomicOutputFile::write_zeros(uint64_t n) {
  static const std::vector<char> zeros(4096, 0);
  while (n > 0) {
    const uint64_t k = n < zeros.size() ? n : zeros.size();
    write(zeros.data(), k);
    n -= k;
  }
}

void AtomicOutputFile::commit() {
  bool ok = std::fflush(f_) == 0;
#if defined(_WIN32)
  ok = ok && _commit(_fileno(f_)) == 0;  // FlushFileBuffers
#else
  ok = ok && fsync(fileno(f_)) == 0;
#endif
  ok = (std::fclose(f_) == 0) && ok;
  f_ = nullptr;
  if (!ok) {
    remove_file(tmp_path_);
    throw Error(ErrorCode::Io, format("Cannot finish writing %s: %s", tmp_path_.c_str(), std::strerror(errno)));
  }
#if defined(_WIN32)
  // rename() refuses an existing target on Windows; MoveFileEx replaces it in one step.
  if (!MoveFileExW(wide(tmp_path_).c_str(), wide(path_).c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
    const std::string why = last_error_text();
    remove_file(tmp_path_);
    throw Error(ErrorCode::Io, format("Cannot rename %s to %s: %s", tmp_path_.c_str(), path_.c_str(), why.c_str()));
  }
#else
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    remove_file(tmp_path_);
    throw Error(ErrorCode::Io, format("Cannot rename %s to %s: %s", tmp_path_.c_str(), path_.c_str(),
                                      std::strerror(errno)));
  }
#endif
}

}  // namespace vl3
