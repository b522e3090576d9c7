# A LibTorch older than emo supports (tests/cmake/check_configure.cmake).
set(PACKAGE_VERSION "1.12.1")
set(PACKAGE_VERSION_COMPATIBLE TRUE)
