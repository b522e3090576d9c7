// JSONL datasets (corpus, GSM8K, task examples): every line read as the trainers read it.
#include "core/io/jsonl.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  fuzz::expect_clean([&] {
    JsonlReader reader(fuzz::write_input("data.jsonl", data, size));
    Json record;
    while (reader.next(record)) {
    }
  });
  return 0;
}
