// What recipe steps can run: the emo commands that write an output, each described by its
// request's fields (so a recipe setting is exactly a command flag), and one step run in
// this process by building that request from the step's settings.
#pragma once

#include "recipes/runner.h"

namespace emo::cli {

StepCatalogue step_catalogue();
void run_step_in_process(const StepCall& call);

}  // namespace emo::cli
