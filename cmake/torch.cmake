# Finds the LibTorch emo builds against and checks it is one emo supports:
#  - Debian's libtorch-dev (1.13, CPU): found with no flags;
#  - the LibTorch inside PyPI's torch wheel (2.x, CUDA): -DCMAKE_PREFIX_PATH=<the torch package
#    directory> (scripts/build --torch pypi passes the references' environment's one).
# Each check stops the configure with one sentence naming both versions, rather than the pages
# of errors a mismatched build would give later.

# The LibTorch config CMake's search would take (Torch_DIR, then CMAKE_PREFIX_PATH, then the
# system), found without running it: the CUDA check has to come first, because
# TorchConfig.cmake itself sets up CUDA.
set(EMO_TORCH_CONFIG_DIR "")
set(_emo_candidates ${Torch_DIR})
foreach(_prefix IN LISTS CMAKE_PREFIX_PATH CMAKE_SYSTEM_PREFIX_PATH)
  foreach(_suffix Torch share/cmake/Torch lib/cmake/Torch lib/${CMAKE_LIBRARY_ARCHITECTURE}/cmake/Torch)
    list(APPEND _emo_candidates "${_prefix}/${_suffix}")
  endforeach()
endforeach()
foreach(_dir IN LISTS _emo_candidates)
  if(EXISTS "${_dir}/TorchConfig.cmake")
    get_filename_component(EMO_TORCH_CONFIG_DIR "${_dir}" ABSOLUTE)
    break()
  endif()
endforeach()
if(NOT EMO_TORCH_CONFIG_DIR)
  message(FATAL_ERROR "LibTorch not found: install Debian's libtorch-dev (scripts/install-deps), or "
                      "pass -DCMAKE_PREFIX_PATH=<a PyTorch package directory> (scripts/build --torch pypi).")
endif()

# A wheel's LibTorch says which CUDA it was built with in the package's version.py; a CUDA
# toolkit of another major version compiles against headers that do not match its libraries.
get_filename_component(_emo_torch_package "${EMO_TORCH_CONFIG_DIR}/../../.." ABSOLUTE)
if(EXISTS "${_emo_torch_package}/version.py")
  file(STRINGS "${_emo_torch_package}/version.py" _emo_cuda_line REGEX "^cuda[^=]*= *'[0-9.]+'")
  if(_emo_cuda_line MATCHES "'([0-9]+)\\.([0-9]+)'")
    set(EMO_TORCH_CUDA "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
    set(_emo_torch_cuda_major "${CMAKE_MATCH_1}")
    find_package(CUDAToolkit QUIET)
    if(NOT CUDAToolkit_FOUND)
      message(FATAL_ERROR "The LibTorch in ${_emo_torch_package} was built with CUDA ${EMO_TORCH_CUDA} "
                          "and no CUDA toolkit was found: install CUDA ${EMO_TORCH_CUDA} or set CUDAToolkit_ROOT.")
    endif()
    if(NOT CUDAToolkit_VERSION_MAJOR STREQUAL _emo_torch_cuda_major)
      message(FATAL_ERROR "The LibTorch in ${_emo_torch_package} was built with CUDA ${EMO_TORCH_CUDA} "
                          "but the CUDA toolkit found is ${CUDAToolkit_VERSION} (${CUDAToolkit_BIN_DIR}): "
                          "use a CUDA ${_emo_torch_cuda_major}.x toolkit (CUDAToolkit_ROOT) or a PyTorch "
                          "built for CUDA ${CUDAToolkit_VERSION_MAJOR}.")
    endif()
  endif()
endif()

# Torch's own config finds its libraries with the system directories searched before its
# own: with Debian's libtorch-dev also installed, a wheel's config would link Debian's
# libtorch.so. Pointing the library search at the package keeps the two apart.
if(EXISTS "${_emo_torch_package}/lib")
  list(PREPEND CMAKE_PREFIX_PATH "${_emo_torch_package}")
endif()
find_package(Torch REQUIRED CONFIG PATHS "${EMO_TORCH_CONFIG_DIR}" NO_DEFAULT_PATH)
if(Torch_VERSION VERSION_LESS 1.13)
  message(FATAL_ERROR "emo needs LibTorch 1.13 or newer, and ${EMO_TORCH_CONFIG_DIR} is LibTorch "
                      "${Torch_VERSION}: install Debian 12's libtorch-dev (1.13) or PyTorch 2.x.")
endif()
get_filename_component(_emo_torch_lib_dir "${TORCH_LIBRARY}" DIRECTORY)
get_filename_component(_emo_torch_lib_dir "${_emo_torch_lib_dir}" REALPATH)
get_filename_component(_emo_torch_prefix "${TORCH_INSTALL_PREFIX}" REALPATH)
string(FIND "${_emo_torch_lib_dir}" "${_emo_torch_prefix}" _emo_at)
if(NOT _emo_at EQUAL 0)
  message(FATAL_ERROR "LibTorch ${Torch_VERSION}'s config is in ${EMO_TORCH_CONFIG_DIR} but its library "
                      "was found at ${TORCH_LIBRARY}, another installation: pass -DCMAKE_PREFIX_PATH="
                      "${TORCH_INSTALL_PREFIX}.")
endif()
set(EMO_TORCH_CUDA_BUILD OFF)
if(TARGET torch_cuda OR TARGET c10_cuda)
  set(EMO_TORCH_CUDA_BUILD ON)
  # Code that names CUDA-only ATen APIs (device properties) compiles only here.
  add_compile_definitions(EMO_WITH_CUDA=1)
endif()
set(_emo_cuda_note "CPU")
if(EMO_TORCH_CUDA_BUILD)
  set(_emo_cuda_note "CUDA ${EMO_TORCH_CUDA}")
endif()
message(STATUS "emo: LibTorch ${Torch_VERSION} (${_emo_cuda_note}) from ${TORCH_INSTALL_PREFIX}")

# PyTorch's wheels export copies of some libstdc++ functions from libtorch.so (std::filesystem,
# std::chrono's time zones: 182 std:: symbols in 2.11) built against another libstdc++. An
# executable that needs libtorch.so before libstdc++.so.6 binds its own std::filesystem calls
# to those copies, and std::filesystem::remove_all jumped to address 0 in every test here.
# Naming libstdc++ first among the needed libraries makes the real one win.
add_link_options("LINKER:--push-state,--no-as-needed" "-lstdc++" "LINKER:--pop-state")
