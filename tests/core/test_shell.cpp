// Command lines as a shell reads them (provenance's command_line, emo run --dry-run).
#include <catch2/catch.hpp>

#include <yaml-cpp/yaml.h>

#include "core/checkpoint/provenance.h"
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

TEST_CASE("a provenance read back and written again keeps its command line word for word", "[shell][provenance]") {
  Provenance p("extract");
  p.argv = {"emo", "extract", "--model=/m", "--set=a=[0,0]", "--name=two words"};
  p.output_hash = "sha256:00";
  const std::string line = "emo extract --model=/m '--set=a=[0,0]' '--name=two words'";
  YAML::Node written = p.to_yaml();
  REQUIRE(written["command_line"].as<std::string>() == line);
  // Twice through a file, as the recipe runner and every child's embedded parent do.
  Provenance once = Provenance::from_yaml(YAML::Load(YAML::Dump(written)), "provenance.yaml");
  Provenance twice = Provenance::from_yaml(YAML::Load(YAML::Dump(once.to_yaml())), "provenance.yaml");
  CHECK(twice.to_yaml()["command_line"].as<std::string>() == line);
}
