// explicit: the experts listed in an experts file (--experts), checked against the model.
// It takes no budget: the list is the module (choose_module refuses --keep and its kin).
// Layers the file does not list keep every expert; with --exclude, every expert but the
// listed ones, in the listed layers only.
#include "surgery/selection.h"

#include "core/util/error.h"

namespace emo {

namespace {
class Explicit : public SelectionMethod {
 public:
  std::string name() const override { return "explicit"; }
  std::string description() const override { return "the experts listed in --experts FILE"; }
  std::string reference() const override { return "user-provided list"; }
  bool needs_stats() const override { return false; }
  bool uses_budget() const override { return false; }
  ExpertSelection select(const SelectionInput& in) const override {
    if (!in.listed) fail("--method explicit", "--experts", "needs an experts file");
    return *in.listed;
  }
};
}  // namespace

std::unique_ptr<SelectionMethod> make_explicit() { return std::make_unique<Explicit>(); }

}  // namespace emo
