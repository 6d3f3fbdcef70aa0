#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "common/status.h"

namespace vl3 {

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) {}

std::vector<TokenLogprob> top_logprobs(const std::vector<float>& logits, int k, const std::vector<int32_t>* only) {
  std::vector<int32_t> idx;
  if (only != nullptr) {
    idx = *only;
  } else {
    idx.resize(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
  }
  if (idx.empty()) return {};
  float mx = -INFINITY;
  for (int32_t i : idx) mx = std::max(mx, logits[static_cast<size_t>(i)]);
  double sum = 0;
  for (int32_t i : idx) sum += std::exp(static_cast<double>(logits[static_cast<size_t>(i)] - mx));
  const float lse = mx + static_cast<float>(std::log(sum));
  const size_t kk = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), idx.size());
  std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(kk), idx.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
           (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  });
  std::vector<TokenLogprob> out;
  for (size_t i = 0; i < kk; ++i) out.push_back({idx[i], logits[static_cast<size_t>(idx[i])] - lse});
  return out;
}

std::vector<int32_t> apply_token_mask(std::vector<float>& logits, const std::vector<uint32_t>& mask) {
  std::vector<int32_t> allowed;
  const size_t n = logits.size();
  for (size_t w = 0; w * 32 < n; ++w) {
    const uint32_t bits = w < mask.size() ? mask[w] : 0;
    const size_t end = std::min(n, w * 32 + 32);
    for (size_t i = w * 32; i < end; ++i) {
      if ((bits >> (i - w * 32)) & 1u) {
        allowed.push_back(static_cast<int32_t>(i));
      } else {
        logits[i] = -INFINITY;
      }
    }
  }
  return allowed;
}

int32_t Sampler::sample(std::vector<float>& logits, const std::vector<int32_t>& history, int want_top,
                        std::vector<TokenLogprob>* top, const std::vector<uint32_t>* mask) {
  // Structured output: disallowed tokens are gone before anything else looks at the logits.
  std::vector<int32_t> allowed;
  if (mask != nullptr) {
    allowed = apply_token_mask(logits, *mask);
    check(!allowed.empty(), ErrorCode::InvalidArgument, "The grammar allows no next token");
  }
  const std::vector<int32_t>* only = mask != nullptr ? &allowed : nullptr;
  if (top != nullptr) *top = want_top > 0 ? top_logprobs(logits, want_top, only) : std::vector<TokenLogprob>{};
  if (p_.repetition_penalty != 1.0f) {
    std::unordered_set<int32_t> seen(history.begin(), history.end());
    for (int32_t id : seen) {
      if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
      float& l = logits[static_cast<size_t>(id)];
      l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
    }
  }
  if (p_.temperature <= 0.0f) {
    // Greedy: first maximum, like torch.argmax.
    if (only != nullptr) {
      int32_t best = allowed[0];
      for (int32_t i : allowed) {
        if (logits[static_cast<size_t>(i)] > logits[static_cast<size_t>(best)]) best = i;
      }
      return best;
    }
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates (the allowed tokens under a mask) sorted by logit (descending), then top-k,
  // softmax at temperature, top-p, min-p.
  std::vector<int32_t> cand;
  if (only != nullptr) {
    cand = std::move(allowed);
  } else {
    cand.resize(logits.size());
    std::iota(cand.begin(), cand.end(), 0);
  }
  size_t n = cand.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < n) n = static_cast<size_t>(p_.top_k);
  std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(n), cand.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
  });
  cand.resize(n);
  std::vector<double> prob(n);
  const double mx = logits[static_cast<size_t>(cand[0])];
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    prob[i] = std::exp((logits[static_cast<size_t>(cand[i])] - mx) / p_.temperature);
    sum += prob[i];
  }
  for (double& q : prob) q /= sum;
  size_t keep = n;
  if (p_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0.0f) {
    const double floor_p = prob[0] * p_.min_p;
    size_t i = 1;
    while (i < keep && prob[i] >= floor_p) ++i;
    keep = i;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += prob[i];
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r <= 0) return cand[i];
  }
  return cand[keep - 1];
}

}  // namespace vl3
