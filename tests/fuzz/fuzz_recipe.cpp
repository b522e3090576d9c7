// Recipe YAML: the schema, references, cycles and paths, against a small catalogue.
#include "fuzz_util.h"
#include "recipes/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  using K = FieldSpec::Kind;
  static const StepCatalogue catalogue = [] {
    StepTypeSpec make{"make", "Write a value", "", "", {}};
    make.settings = {{"seed", K::Int, true, false, {}, "the value"},
                     {"scale", K::Float, false, false, {}, ""},
                     {"mode", K::String, false, false, {"a", "b"}, ""},
                     {"loud", K::Bool, false, false, {}, ""},
                     {"data", K::String, false, true, {}, ""}};
    StepTypeSpec combine{"combine", "Join outputs", "", "result.txt", {}};
    combine.settings = {{"parts", K::List, true, true, {}, ""}};
    return StepCatalogue{make, combine};
  }();
  fuzz::expect_clean([&] {
    RecipeLoadOptions options;
    options.variables["emo.data"] = fuzz::scratch_dir();
    load_recipe(fuzz::write_input("recipe.yaml", data, size), catalogue, options);
  });
  return 0;
}
