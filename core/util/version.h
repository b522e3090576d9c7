// The emo version every provenance record and recipe cache key carries:
// "<project version>+<git describe>", taken when the build ran (cmake/version.cmake).
#pragma once

namespace emo {

const char* emo_version();

}  // namespace emo
