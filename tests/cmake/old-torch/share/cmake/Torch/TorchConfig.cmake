# Stands in for LibTorch 1.12's config: only the variables cmake/torch.cmake reads.
get_filename_component(TORCH_INSTALL_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(TORCH_LIBRARY "${TORCH_INSTALL_PREFIX}/lib/libtorch.so")
set(TORCH_LIBRARIES "${TORCH_LIBRARY}")
set(Torch_FOUND TRUE)
