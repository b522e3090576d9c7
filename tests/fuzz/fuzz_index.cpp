// A sharded checkpoint's model.safetensors.index.json (weight_map: tensor -> shard), as
// a checkpoint directory is opened.
#include "core/io/tensor_store.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  static const std::string dir = [] {
    std::string d = fuzz::scratch_dir() + "/index";
    fs::create_directories(d);
    return d;
  }();
  fuzz::write_input("index/model.safetensors.index.json", data, size);
  fuzz::expect_clean([&] { TensorStore::open_dir(dir); });
  return 0;
}
