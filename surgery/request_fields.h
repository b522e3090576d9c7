// Field groups that several requests share (core/util/fields.h): where the task examples
// come from and how they are routed, and the budget of a module. emo extract's request
// takes both; emo route, select and eval sweep make their flags from the same rows.
#pragma once

#include <vector>

#include "core/util/fields.h"
#include "surgery/examples.h"
#include "surgery/module.h"

namespace emo {

const std::vector<Field<ExampleRequest>>& example_fields();  // --data --text-field --domain --format --shots ...
const std::vector<Field<BudgetRequest>>& budget_fields();    // --keep --keep-fraction ... --per-layer

}  // namespace emo
