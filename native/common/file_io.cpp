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
#define vl3_fseek _fseeki64
#define vl3_ftell _ftelli64
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define vl3_fseek fseeko
#define vl3_ftell ftello
#endif

namespace vl3 {

InputFile::InputFile(const std::string& path) : path_(path) {
  // Only regular files: opening a FIFO blocks until a writer appears (pinning a libuv thread), and
  // a device such as /dev/zero never ends.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG) {
    throw Error(ErrorCode::Io, format("Cannot open %s: not a regular file (a %s); pass the path of a model file",
                                      path.c_str(), (st.st_mode & S_IFMT) == S_IFDIR ? "directory" : "FIFO, socket or device"));
  }
  f_ = std::fopen(path.c_str(), "rb");
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
#if defined(_WIN32)
  (void)path;
  return nullptr;
#else
  if (std::getenv("VL3_NO_MMAP") != nullptr) return nullptr;
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
#if !defined(_WIN32)
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
#else
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
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (f_ == nullptr) {
    throw Error(ErrorCode::Io, format("Cannot create %s: %s", tmp_path_.c_str(), std::strerror(errno)));
  }
}

AtomicOutputFile::~AtomicOutputFile() {
  if (f_ != nullptr) {
    std::fclose(f_);
    std::remove(tmp_path_.c_str());
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
#if !defined(_WIN32)
  ok = ok && fsync(fileno(f_)) == 0;
#endif
  ok = (std::fclose(f_) == 0) && ok;
  f_ = nullptr;
  if (!ok) {
    std::remove(tmp_path_.c_str());
    throw Error(ErrorCode::Io, format("Cannot finish writing %s: %s", tmp_path_.c_str(), std::strerror(errno)));
  }
#if defined(_WIN32)
  std::remove(path_.c_str());
#endif
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_path_.c_str());
    throw Error(ErrorCode::Io, format("Cannot rename %s to %s: %s", tmp_path_.c_str(), path_.c_str(),
                                      std::strerror(errno)));
  }
}

}  // namespace vl3
