#include "core/checkpoint/content_hash.h"

#include <algorithm>

#include "core/checkpoint/provenance.h"

namespace emo {

namespace {
void put_u64(Sha256& h, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = (unsigned char)((v >> (8 * i)) & 0xff);
  h.update(b, 8);
}
void put_field(Sha256& h, const std::string& s) {
  put_u64(h, s.size());  // length-prefixed: no two different field lists hash alike
  h.update(s);
}
}  // namespace

std::string combine_content_hash(const ModelConfig& config, const TensorDigests& digests) {
  Sha256 h;
  put_field(h, kContentHashVersion);
  put_field(h, canonical_json(config.model_defining()));
  put_u64(h, digests.size());
  for (const auto& [name, d] : digests) {  // std::map: name order
    put_field(h, name);
    put_field(h, dtype_name(d.dtype));
    put_field(h, shape_str(d.shape));
    put_u64(h, d.nbytes);
    put_field(h, d.sha256);
  }
  return "sha256:" + h.hex();
}

TensorDigests tensor_digests(const Checkpoint& ck, const std::function<void(uint64_t, uint64_t)>& progress) {
  uint64_t total = 0, done = 0;
  for (const auto& t : ck.tensors()) total += ck.view(t).nbytes;
  TensorDigests out;
  for (const auto& t : ck.tensors()) {
    TensorView v = ck.view(t);
    Sha256 h;
    // Hash in slices and release the pages behind us: a 28 GB checkpoint must not
    // stay mapped into our resident set.
    const uint64_t slice = 64ull << 20;
    for (uint64_t off = 0; off < v.nbytes; off += slice) {
      uint64_t n = std::min(slice, v.nbytes - off);
      h.update(v.data + off, n);
      v.owner->advise_done(size_t(v.data + off - v.owner->data()), size_t(n));
      done += n;
      if (progress) progress(done, total);
    }
    out[t.name] = {v.dtype, v.shape, v.nbytes, h.hex()};
  }
  return out;
}

std::string content_hash(const Checkpoint& ck, const std::function<void(uint64_t, uint64_t)>& progress) {
  return combine_content_hash(ck.config(), tensor_digests(ck, progress));
}

std::string parent_content_hash(const Checkpoint& ck, bool recompute) {
  if (!recompute) {
    auto prov = Provenance::load(ck.dir());
    if (prov && !prov->output_hash.empty()) return prov->output_hash;
  }
  return content_hash(ck);
}

}  // namespace emo
