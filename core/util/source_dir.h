// The source tree this emo was built from: where a build that is not installed finds
// data/ (the CLI's data_root), and the tests and benchmarks their files. One generated
// file defines it (core/CMakeLists.txt), so that no other object's compile line names the
// clone: every other object is the same wherever the clone is, and ccache serves CI's
// fresh clone from an earlier one's build.
#pragma once

namespace emo {

const char* build_source_dir();

}  // namespace emo
