// config.json: JSON syntax, then every key the model reads, typed and range-checked, and
// a module's "emo_module" block.
#include "core/checkpoint/config.h"
#include "core/checkpoint/module_info.h"
#include "core/checkpoint/summary.h"
#include "core/io/json.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  fuzz::expect_clean([&] {
    Json j = parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
    ModelConfig c = ModelConfig::from_json(j, "config.json");
    (void)c.layers();
    (void)count_params(c);  // every tensor's shape from the config, with checked sizes
    (void)ModuleInfo::of(c);  // a module's record of where its experts came from
  });
  return 0;
}
