// What recipe steps can run: the emo commands that write an output, described from
// their own flag definitions (so a recipe setting is exactly a command flag), and
// running one step in this process through a fresh parser of that command.
#pragma once

#include "recipes/runner.h"

namespace emo::cli {

StepCatalogue step_catalogue();
void run_step_in_process(const StepCall& call);

}  // namespace emo::cli
