// The Qwen2 / Qwen2.5 tokenizer: byte-level BPE read from llm.gguf, giving the same ids as
// Hugging Face `tokenizers` with the model's tokenizer.json (NFC normalizer aside: callers pass
// NFC text; lib/ does String.normalize('NFC')).
//
// encode = added-token split -> pre-tokenizer (the Qwen2 split regex, as a hand-written scanner)
//          -> GPT-2 byte-level mapping -> BPE merges by rank.
//
// Invalid UTF-8 is not an error: each byte of a malformed sequence is one "other" symbol (like
// punctuation) and is kept as that byte, so decode(encode(bytes)) returns the same bytes. HF
// cannot see such input at all (its strings are valid UTF-8); from JavaScript it never arrives
// either, as N-API replaces lone surrogates with U+FFFD.
//
// Unicode classes come from native/model/unicode_tables.h (Node's Unicode 17). HF's Oniguruma
// tables are older, so code points assigned after Unicode 14 may split differently there.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace vl3 {

class GgufFile;

class Tokenizer {
 public:
  /** Token types of tokenizer.ggml.token_type (llama.cpp's numbering). */
  enum Type : uint8_t { Normal = 1, Control = 3, UserDefined = 4, Unused = 5 };

  /**
   * Reads tokenizer.ggml.{model,pre,tokens,token_type,merges} of `llm`. Throws
   * vl3::Error(InvalidModel) naming the file when they are missing or inconsistent, and
   * UnsupportedModel for a tokenizer other than gpt2 / qwen2.
   */
  explicit Tokenizer(const GgufFile& llm);

  /**
   * Token ids of `utf8` (NFC text). With `parse_special`, every control and user-defined token
   * text (`<|im_start|>`, `<tool_call>`, ...) found in the text becomes its id, longest match
   * first; without it they are ordinary text. Never throws on content; InvalidArgument past 2 GiB.
   */
  std::vector<int32_t> encode(std::string_view utf8, bool parse_special) const;

  /**
   * The bytes of `ids` joined: byte-level tokens mapped back to their bytes, control and
   * user-defined tokens as their text, unused tokens as nothing. The result is UTF-8 only when
   * the ids end on a character boundary. Throws InvalidArgument for an id outside the vocabulary.
   */
  std::string decode(const int32_t* ids, size_t n) const;

  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  /** The id whose vocabulary text (byte-level form, e.g. "Ġworld") is `token_text`; -1 if none. */
  int32_t token_id(std::string_view token_text) const;
  /** True for control tokens (type 3, e.g. <|im_end|>). */
  bool is_special(int32_t id) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t id;  // the merged token
  };
  struct AddedToken {
    std::string text;
    int32_t id;
  };
  struct Scratch;

  void encode_text(std::string_view text, Scratch& s, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, Scratch& s, std::vector<int32_t>& out) const;
  const Merge* find_merge(int32_t left, int32_t right) const;

  std::vector<std::string> tokens_;     // vocabulary text of each id
  std::vector<uint8_t> types_;          // Type of each id
  std::vector<std::string> bytes_;      // what decode() emits for each id
  std::unordered_map<std::string, int32_t> ids_;
  std::array<int32_t, 256> byte_token_{};  // id of the one-byte token of each byte
  std::unordered_map<uint64_t, Merge> merges_;  // key: left id << 32 | right id
  std::vector<AddedToken> added_;       // control + user-defined tokens, longest first
  std::array<bool, 256> added_first_{};  // whether some added token starts with this byte
};

}  // namespace vl3
