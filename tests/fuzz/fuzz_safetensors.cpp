// The safetensors format: the 8-byte header length, the JSON header (dtypes, shapes,
// offsets), and the data section's bounds, through the same open() a checkpoint uses.
#include "core/io/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  fuzz::expect_clean([&] {
    // The header parser alone, against a data section of a plausible size...
    parse_safetensors_header(std::string_view(reinterpret_cast<const char*>(data), size), 1 << 16, "fuzz");
  });
  fuzz::expect_clean([&] {
    // ... and the whole file: length prefix, header, data section, every tensor's view.
    auto file = SafetensorsFile::open(fuzz::write_input("model.safetensors", data, size));
    for (const auto& t : file->tensors()) (void)file->view(t);
  });
  return 0;
}
