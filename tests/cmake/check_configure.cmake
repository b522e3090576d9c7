# Configures emo against a stand-in LibTorch (PREFIX) and checks that CMake stops, exit code
# non-zero, with the one sentence EXPECT (a regular expression) says.
#   cmake -DSOURCE=... -DPREFIX=... -DBINARY=... -DEXPECT=... -P check_configure.cmake
file(REMOVE_RECURSE "${BINARY}")
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE}" -B "${BINARY}" -DEMO_BUILD_TESTS=OFF
                        -DEMO_BUILD_BENCH=OFF "-DCMAKE_PREFIX_PATH=${PREFIX}"
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(REMOVE_RECURSE "${BINARY}")
string(REGEX REPLACE "[ \n]+" " " said "${err}")
if(code EQUAL 0)
  message(FATAL_ERROR "configuring against ${PREFIX} succeeded; expected it to stop with: ${EXPECT}")
endif()
if(NOT said MATCHES "${EXPECT}")
  message(FATAL_ERROR "configuring against ${PREFIX} stopped, but without '${EXPECT}':\n${err}")
endif()
message(STATUS "stopped as expected: ${CMAKE_MATCH_0}")
