// tokenizer.json: the BPE model (vocabulary, merges), pre-tokenizer and special tokens;
// when one loads, encoding and decoding must not fail either.
#include "core/text/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  fuzz::expect_clean([&] {
    Tokenizer t = Tokenizer::load(fuzz::write_input("tokenizer.json", data, size));
    auto ids = t.encode("Hello, world! 12 + 30 = 42\n  def f(x):\treturn x");
    (void)t.decode(ids);
  });
  return 0;
}
