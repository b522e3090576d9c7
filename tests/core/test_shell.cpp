// Command lines as a shell reads them (provenance's command_line, emo run --dry-run).
#include <catch2/catch.hpp>

#include "core/util/shell.h"

using namespace emo;

TEST_CASE("shell_words quotes exactly the words a shell would change", "[shell]") {
  CHECK(shell_words({"emo", "pretrain", "--set=num_experts=64", "--lr=2e-3", "--out=/tmp/a_b-c.d"}) ==
        "emo pretrain --set=num_experts=64 --lr=2e-3 --out=/tmp/a_b-c.d");
  CHECK(shell_quote("--scratch=standard MoE=out/moe-8") == "'--scratch=standard MoE=out/moe-8'");
  CHECK(shell_quote("--set=num_experts_per_layer=[0,0]") == "'--set=num_experts_per_layer=[0,0]'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("$HOME") == "'$HOME'");
  CHECK(shell_quote("") == "''");
}
