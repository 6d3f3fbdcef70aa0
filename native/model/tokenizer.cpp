#include "model/tokenizer.h"

#include <algorithm>

#include "common/status.h"
#include "model/gguf_file.h"
#include "model/unicode_tables.h"

namespace vl3 {
namespace {

// ---------------------------------------------------------------------------------------------
// GPT-2 byte-level alphabet: every byte is shown as one printable code point, so that BPE works on
// text without spaces or control characters. Printable Latin-1 bytes stand for themselves; the
// other 68 bytes (controls, space, 0x7F-0xA0, soft hyphen) become U+0100.. in byte order.

bool byte_is_printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

std::array<uint32_t, 256> make_byte_to_cp() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) map[b] = byte_is_printable(b) ? static_cast<uint32_t>(b) : next++;
  return map;
}

const std::array<uint32_t, 256>& byte_to_cp() {
  static const std::array<uint32_t, 256> map = make_byte_to_cp();
  return map;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/**
 * Decodes one code point from s[0..n) (n >= 1) into `cp` and returns its length in bytes, or 0
 * when the bytes there are not well-formed UTF-8 (overlong forms and surrogates included).
 */
size_t utf8_next(const unsigned char* s, size_t n, uint32_t& cp) {
  const unsigned char b0 = s[0];
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((s[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[k] & 0x3F);
  }
  return len;
}

/** Decodes a whole token text; false unless it is well-formed UTF-8. */
bool utf8_decode(std::string_view text, std::vector<uint32_t>& cps) {
  cps.clear();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    const size_t len = utf8_next(s + i, text.size() - i, cp);
    if (len == 0) return false;
    cps.push_back(cp);
    i += len;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Character classes of the pre-tokenizer regex. A code point is in at most one of them (the
// Unicode categories L and N do not overlap White_Space); everything else is "other".

enum Class : uint8_t { kOther, kLetter, kNumber, kSpace };

template <size_t N>
bool in_table(const unicode::CodeRange (&table)[N], uint32_t cp) {
  // The first range whose end is >= cp holds cp if it starts at or before it.
  const auto* it = std::lower_bound(table, table + N, cp,
                                    [](const unicode::CodeRange& r, uint32_t c) { return r.hi < c; });
  return it != table + N && it->lo <= cp;
}

Class classify(uint32_t cp) {
  if (cp < 0x80) {  // fast path for ASCII, the bulk of prompts
    if ((cp | 0x20) - 'a' < 26) return kLetter;
    if (cp - '0' < 10) return kNumber;
    if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return kSpace;
    return kOther;
  }
  if (in_table(unicode::kWhiteSpace, cp)) return kSpace;
  if (in_table(unicode::kLetter, cp)) return kLetter;
  if (in_table(unicode::kNumber, cp)) return kNumber;
  return kOther;
}

/** A decoded character of the text being pre-tokenized; malformed bytes are one each. */
struct Char {
  uint32_t cp;      // kNoCodePoint for a malformed byte
  uint32_t offset;  // byte offset in the segment
  Class cls;
};
constexpr uint32_t kNoCodePoint = 0xFFFFFFFF;

/** Case-insensitive letter as Oniguruma folds it for (?i:...): ASCII, plus long s (U+017F) = s. */
uint32_t fold(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp == 0x17F) return 's';
  return cp;
}

/**
 * End (exclusive character index) of the match of the Qwen2 split regex
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * that starts at t[i]. The leftmost alternative that matches wins, each as greedy as it can be.
 * One always matches, so the pieces tile the text.
 */
size_t match_end(const std::vector<Char>& t, size_t i) {
  const size_t n = t.size();
  auto is = [&](size_t k, Class c) { return k < n && t[k].cls == c; };
  auto is_newline = [&](size_t k) { return k < n && (t[k].cp == '\r' || t[k].cp == '\n'); };

  // 1. Contractions: 's 't 'm 'd, then 're 've 'll.
  if (t[i].cp == '\'' && i + 1 < n) {
    const uint32_t a = fold(t[i + 1].cp);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      const uint32_t b = fold(t[i + 2].cp);
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  // 2. A word, with at most one leading non-letter, non-digit, non-newline character (" the").
  size_t j = i;
  if ((t[i].cls == kOther || t[i].cls == kSpace) && !is_newline(i) && is(i + 1, kLetter)) j = i + 1;
  if (is(j, kLetter)) {
    while (is(j, kLetter)) ++j;
    return j;
  }
  // 3. A single digit.
  if (t[i].cls == kNumber) return i + 1;
  // 4. Punctuation, with at most one leading space, then any newlines.
  j = (t[i].cp == ' ' && is(i + 1, kOther)) ? i + 1 : i;
  if (is(j, kOther)) {
    while (is(j, kOther)) ++j;
    while (is_newline(j)) ++j;
    return j;
  }
  // Only whitespace starts here now. `end` is the end of its run.
  size_t end = i;
  while (is(end, kSpace)) ++end;
  // 5. \s*[\r\n]+ : greedy \s* backs off to the run's last newline, which [\r\n]+ then takes.
  for (size_t k = end; k > i; --k) {
    if (is_newline(k - 1)) return k;
  }
  // 6. \s+(?!\S) : the whole run at the end of the text, else the run minus the last character
  //    (which is then left to start " word" or " !" pieces), if that leaves something.
  if (end == n) return end;
  if (end - i >= 2) return end - 1;
  // 7. \s+
  return end;
}

}  // namespace

// Buffers reused across the pieces of one encode() call (never shared between calls).
struct Tokenizer::Scratch {
  std::vector<Char> chars;
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> symbols;
  struct Candidate {
    int32_t rank;
    int32_t pos;  // index of the left symbol
    int32_t left;
    int32_t right;
    int32_t merged;
  };
  std::vector<Candidate> heap;
};

// ---------------------------------------------------------------------------------------------
// Loading

Tokenizer::Tokenizer(const GgufFile& llm) {
  const std::string& path = llm.path();
  auto fail = [&](const std::string& what) { throw Error(ErrorCode::InvalidModel, path + ": " + what); };

  const std::string model = llm.get_string("tokenizer.ggml.model");
  check(model == "gpt2", ErrorCode::UnsupportedModel,
        format("%s: tokenizer.ggml.model is \"%s\"; only \"gpt2\" (byte-level BPE) is supported", path.c_str(),
               model.c_str()));
  if (llm.has("tokenizer.ggml.pre")) {
    // The pre-tokenizer regex differs between BPE families; ours is Qwen2's.
    const std::string pre = llm.get_string("tokenizer.ggml.pre");
    check(pre == "qwen2", ErrorCode::UnsupportedModel,
          format("%s: tokenizer.ggml.pre is \"%s\"; only \"qwen2\" is supported", path.c_str(), pre.c_str()));
  }

  tokens_ = llm.get_strings("tokenizer.ggml.tokens");
  const std::vector<int64_t> types = llm.get_ints("tokenizer.ggml.token_type");
  if (tokens_.empty()) fail("tokenizer.ggml.tokens is empty");
  if (tokens_.size() > static_cast<size_t>(INT32_MAX)) fail("tokenizer.ggml.tokens has more than 2^31 entries");
  if (types.size() != tokens_.size()) {
    fail(format("tokenizer.ggml.token_type has %zu entries but tokenizer.ggml.tokens has %zu", types.size(),
                tokens_.size()));
  }

  const std::array<uint32_t, 256>& b2c = byte_to_cp();
  std::array<int16_t, 324> cp_to_byte;  // inverse of b2c; the alphabet ends at U+0143
  cp_to_byte.fill(-1);
  for (int b = 0; b < 256; ++b) cp_to_byte[b2c[b]] = static_cast<int16_t>(b);

  const int32_t n = static_cast<int32_t>(tokens_.size());
  types_.resize(n);
  bytes_.resize(n);
  ids_.reserve(n);
  std::vector<uint32_t> cps;
  for (int32_t id = 0; id < n; ++id) {
    const std::string& text = tokens_[id];
    const int64_t type = types[id];
    if (type != Normal && type != Control && type != UserDefined && type != Unused) {
      fail(format("token %d has type %lld; expected 1 (normal), 3 (control), 4 (user-defined) or 5 (unused)", id,
                  static_cast<long long>(type)));
    }
    types_[id] = static_cast<uint8_t>(type);
    auto [it, fresh] = ids_.emplace(text, id);
    if (!fresh) fail(format("token text \"%s\" appears twice (ids %d and %d)", text.c_str(), it->second, id));

    if (type == Normal) {
      // A normal token is a string over the byte alphabet; store the bytes it stands for.
      bool ok = !text.empty() && utf8_decode(text, cps);
      for (size_t k = 0; ok && k < cps.size(); ++k) {
        ok = cps[k] < cp_to_byte.size() && cp_to_byte[cps[k]] >= 0;
        if (ok) bytes_[id] += static_cast<char>(cp_to_byte[cps[k]]);
      }
      if (!ok) fail(format("token %d (\"%s\") is not a byte-level BPE token", id, text.c_str()));
    } else if (type == Control || type == UserDefined) {
      bytes_[id] = text;  // added tokens decode to their own text
      if (!text.empty()) added_.push_back({text, id});
    }
    // Unused tokens ([PAD<id>] filler rows) decode to nothing.
  }

  std::string one;
  for (int b = 0; b < 256; ++b) {
    one.clear();
    append_utf8(one, b2c[b]);
    const int32_t id = token_id(one);
    if (id < 0 || types_[id] != Normal) fail(format("the vocabulary has no normal token for byte 0x%02X", b));
    byte_token_[b] = id;
  }

  const std::vector<std::string> merges = llm.get_strings("tokenizer.ggml.merges");
  if (merges.size() > static_cast<size_t>(INT32_MAX)) fail("tokenizer.ggml.merges has more than 2^31 entries");
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& m = merges[rank];
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == m.size() || m.find(' ', sp + 1) != std::string::npos) {
      fail(format("merge %zu (\"%s\") is not two tokens separated by one space", rank, m.c_str()));
    }
    const int32_t left = token_id(std::string_view(m).substr(0, sp));
    const int32_t right = token_id(std::string_view(m).substr(sp + 1));
    const int32_t merged = token_id(m.substr(0, sp) + m.substr(sp + 1));
    if (left < 0 || right < 0 || merged < 0) {
      fail(format("merge %zu (\"%s\") names a token that is not in the vocabulary", rank, m.c_str()));
    }
    // Like Hugging Face, a pair listed twice keeps its last rank.
    merges_[(static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right)] = {static_cast<int32_t>(rank), merged};
  }

  // Longest first, so that "<|im_start|>" wins over any token that is a prefix of it.
  std::stable_sort(added_.begin(), added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.text.size() > b.text.size(); });
  for (const AddedToken& a : added_) added_first_[static_cast<unsigned char>(a.text[0])] = true;
}

// ---------------------------------------------------------------------------------------------
// Encoding

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  // Offsets and symbol positions are 32-bit; JavaScript strings never come close.
  check(text.size() < static_cast<size_t>(INT32_MAX), ErrorCode::InvalidArgument,
        format("text of %zu bytes is too long to tokenize (the limit is 2 GiB)", text.size()));
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  Scratch s;
  if (!parse_special || added_.empty()) {
    encode_text(text, s, out);
    return out;
  }
  // Added tokens are found in the raw text first (Hugging Face's AddedVocabulary): the text
  // between them is pre-tokenized on its own, so "a<|im_end|>b" never merges across the token.
  size_t start = 0;
  for (size_t p = 0; p < text.size(); ++p) {
    if (!added_first_[static_cast<unsigned char>(text[p])]) continue;
    const std::string_view rest = text.substr(p);
    for (const AddedToken& a : added_) {
      if (rest.size() < a.text.size() || rest.compare(0, a.text.size(), a.text) != 0) continue;
      encode_text(text.substr(start, p - start), s, out);
      out.push_back(a.id);
      start = p + a.text.size();
      p = start - 1;
      break;
    }
  }
  encode_text(text.substr(start), s, out);
  return out;
}

void Tokenizer::encode_text(std::string_view text, Scratch& s, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<Char>& chars = s.chars;
  chars.clear();
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    size_t len = utf8_next(bytes + i, text.size() - i, cp);
    Class cls;
    if (len == 0) {
      cp = kNoCodePoint;  // a malformed byte: one "other" character, kept as that byte
      len = 1;
      cls = kOther;
    } else {
      cls = classify(cp);
    }
    chars.push_back({cp, static_cast<uint32_t>(i), cls});
    i += len;
  }
  for (size_t i = 0; i < chars.size();) {
    const size_t end = match_end(chars, i);
    const size_t from = chars[i].offset;
    const size_t to = end < chars.size() ? chars[end].offset : text.size();
    encode_piece(text.substr(from, to - from), s, out);
    i = end;
  }
}

const Tokenizer::Merge* Tokenizer::find_merge(int32_t left, int32_t right) const {
  const auto it = merges_.find((static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right));
  return it == merges_.end() ? nullptr : &it->second;
}

// BPE on one piece: start from one token per byte and repeatedly apply the lowest-ranked merge
// (leftmost first on ties), as Hugging Face does. A heap of candidate pairs keeps this
// O(n log n), so a 100k-letter "word" is no slower per byte than a short one.
void Tokenizer::encode_piece(std::string_view piece, Scratch& s, std::vector<int32_t>& out) const {
  using Symbol = Scratch::Symbol;
  using Candidate = Scratch::Candidate;
  const int32_t n = static_cast<int32_t>(piece.size());
  if (n == 1) {
    out.push_back(byte_token_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  std::vector<Symbol>& sym = s.symbols;
  sym.resize(n);
  for (int32_t k = 0; k < n; ++k) {
    sym[k] = {byte_token_[static_cast<unsigned char>(piece[k])], k - 1, k + 1 < n ? k + 1 : -1};
  }

  // std heap functions keep the largest on top: "largest" = lowest rank, then leftmost.
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::vector<Candidate>& heap = s.heap;
  heap.clear();
  auto consider = [&](int32_t pos) {
    const int32_t next = sym[pos].next;
    if (const Merge* m = find_merge(sym[pos].id, sym[next].id)) {
      heap.push_back({m->rank, pos, sym[pos].id, sym[next].id, m->id});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int32_t k = 0; k + 1 < n; ++k) consider(k);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = sym[c.pos];
    // Skip candidates made stale by an earlier merge of either symbol.
    if (left.id != c.left || left.next < 0 || sym[left.next].id != c.right) continue;
    Symbol& right = sym[left.next];
    left.id = c.merged;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = c.pos;
    right.id = -1;
    if (left.prev >= 0) consider(left.prev);
    if (left.next >= 0) consider(c.pos);
  }
  for (int32_t k = 0; k >= 0; k = sym[k].next) out.push_back(sym[k].id);
}

// ---------------------------------------------------------------------------------------------
// Decoding and lookups

std::string Tokenizer::decode(const int32_t* ids, size_t n) const {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    check(id >= 0 && id < vocab_size(), ErrorCode::InvalidArgument,
          format("token id %d is outside the vocabulary [0, %d)", id, vocab_size()));
    out += bytes_[id];
  }
  return out;
}

int32_t Tokenizer::token_id(std::string_view token_text) const {
  const auto it = ids_.find(std::string(token_text));
  return it == ids_.end() ? -1 : it->second;
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && types_[id] == Control; }

}  // namespace vl3
