# Cross-compiles for linux-arm64 (aarch64) with Debian's cross toolchain (g++-aarch64-linux-gnu):
# `node scripts/prebuildify.mjs --arch arm64`. ggml then builds its NEON paths; our AVX2 kernels
# (native/kernels/) compile to their portable fallbacks.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(VL3_CROSS_PREFIX aarch64-linux-gnu- CACHE STRING "Cross toolchain prefix")
set(CMAKE_C_COMPILER ${VL3_CROSS_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${VL3_CROSS_PREFIX}g++)
set(CMAKE_STRIP ${VL3_CROSS_PREFIX}strip)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
