// Token sampling from logits: greedy, temperature, top-k, top-p, min-p and repetition penalty,
// with a seeded generator so the same seed gives the same text.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace vl3 {

struct SamplingParams {
  float temperature = 0.0f;          // 0 = greedy (argmax)
  int32_t top_k = 0;                 // 0 = off
  float top_p = 1.0f;                // 1 = off
  float min_p = 0.0f;                // 0 = off
  float repetition_penalty = 1.0f;   // 1 = off (HF semantics: divide positive logits, multiply negative)
  uint64_t seed = 0;
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  /** Changes the parameters but keeps the random stream (same seed, same text). */
  void set_params(const SamplingParams& params) { p_ = params; }

  /**
   * Picks the next token. `history` holds the ids the repetition penalty applies to (prompt
   * and generated text, as HF does). When `top_logprobs` > 0, fills `top` with that many
   * (id, log-softmax) pairs of the raw logits, most likely first.
   *
   * `mask` (structured output), when not null, is a bitmask of ceil(vocab / 32) words: bit
   * (id % 32) of word (id / 32) set = token `id` allowed. Disallowed tokens get logit -inf first,
   * before the repetition penalty, temperature, top-k/top-p/min-p and the log-probs, so `top`
   * holds log-probs of the constrained distribution (disallowed tokens never appear in it, so it
   * may be shorter than `top_logprobs`). Throws InvalidArgument when the mask allows no token.
   */
  int32_t sample(std::vector<float>& logits, const std::vector<int32_t>& history, int top_logprobs,
                 std::vector<TokenLogprob>* top, const std::vector<uint32_t>* mask = nullptr);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

/**
 * The `k` largest entries of log_softmax(logits), most likely first (ties: lower id first); with
 * `only` (not null), among those ids alone (the others are -inf).
 */
std::vector<TokenLogprob> top_logprobs(const std::vector<float>& logits, int k, const std::vector<int32_t>* only = nullptr);

/** Sets the logits of tokens `mask` disallows to -inf and returns the allowed ids (ascending). */
std::vector<int32_t> apply_token_mask(std::vector<float>& logits, const std::vector<uint32_t>& mask);

}  // namespace vl3
