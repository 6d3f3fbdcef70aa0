// Minimal 64-bit-safe file access used by the converter and the GGUF reader.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace vl3 {

/** A read-only file with positioned reads; every failure throws vl3::Error naming the file. */
class InputFile {
 public:
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  /** Reads exactly n bytes at offset; `what` names the data in the error message. */
  void read_at(uint64_t offset, void* dst, uint64_t n, const std::string& what);

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  uint64_t size_ = 0;
};

/**
 * A whole file mapped read-only into memory (POSIX mmap; on Windows a read-only view of a file
 * mapping): its pages are the page cache's, shared with other processes and read in on first
 * touch. open() returns null where mapping fails or VL3_NO_MMAP is set; callers then read the file
 * instead. The file must not be truncated while mapped (the kernel would signal SIGBUS on access),
 * as with any mmap-based loader; Windows refuses to replace or truncate a mapped file instead.
 * Paths are UTF-8 everywhere (on Windows files are opened by their UTF-16 names).
 */
class MappedFile {
 public:
  static std::unique_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  /**
   * Drops the pages of bytes [offset, offset + n) from this process (they stay in the page cache and
   * are read back in if touched again): for ranges copied out, so they stop counting in RSS.
   */
  void release(uint64_t offset, uint64_t n) const;

 private:
  MappedFile(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  const uint8_t* data_;
  uint64_t size_;
};

/** A file written under a temporary name and renamed into place by commit(); removed otherwise. */
class AtomicOutputFile {
 public:
  explicit AtomicOutputFile(const std::string& path);
  ~AtomicOutputFile();
  AtomicOutputFile(const AtomicOutputFile&) = delete;
  AtomicOutputFile& operator=(const AtomicOutputFile&) = delete;

  void write(const void* data, uint64_t n);
  void write_zeros(uint64_t n);
  uint64_t position() const { return pos_; }
  void commit();

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* f_ = nullptr;
  uint64_t pos_ = 0;
};

}  // namespace vl3
