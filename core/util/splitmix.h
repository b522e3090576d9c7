// splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
// 2014): the mixing function behind every seeded draw in emo (initial weights, data order,
// EMO's pool sizes), so that a draw is the same on every machine and needs no generator
// object, only a key.
#pragma once

#include <cstdint>

namespace emo {

constexpr uint64_t kSplitmixGamma = 0x9e3779b97f4a7c15ull;

// The value of key `x`.
inline uint64_t splitmix64(uint64_t x) {
  x += kSplitmixGamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The generator form: the next value of the stream `state`, which it advances.
inline uint64_t splitmix64_next(uint64_t& state) {
  const uint64_t r = splitmix64(state);
  state += kSplitmixGamma;
  return r;
}

}  // namespace emo
