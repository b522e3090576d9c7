# A PyTorch wheel built for a CUDA no toolkit has (tests/cmake/check_configure.cmake).
set(PACKAGE_VERSION "2.11.0")
set(PACKAGE_VERSION_COMPATIBLE TRUE)
