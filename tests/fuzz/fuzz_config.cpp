// config.json: JSON syntax, then every key the model reads, typed and range-checked.
#include "core/checkpoint/config.h"
#include "core/io/json.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  fuzz::expect_clean([&] {
    Json j = parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
    ModelConfig c = ModelConfig::from_json(j, "config.json");
    (void)c.layers();
  });
  return 0;
}
