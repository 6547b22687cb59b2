// nvcuda::wmma m16n16k8 TF32 on the emulator. Every lane holds the whole fragment (real
// hardware spreads it over the warp in a layout that portable code cannot see), so a
// warp-collective call is each lane doing the whole tile between warp barriers: a lane that
// skips the call deadlocks its warp, as on a GPU.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_emu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

// Rounds to TF32 (10 explicit mantissa bits) to nearest, ties away from zero, like
// cvt.rna.tf32.f32; the result is still a float with the low 13 bits zero.
inline float __float_to_tf32(float x) {
  if (!std::isfinite(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x1000u) & 0xffffe000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

template <typename Use, int M, int N, int K, typename T = float, typename Layout = void>
struct fragment;
template <int M, int N, int K, typename T, typename L>
struct fragment<matrix_a, M, N, K, T, L> {
  static constexpr int rows = M, cols = K, num_elements = M * K;
  using layout = L;
  float x[M * K];
};
template <int M, int N, int K, typename T, typename L>
struct fragment<matrix_b, M, N, K, T, L> {
  static constexpr int rows = K, cols = N, num_elements = K * N;
  using layout = L;
  float x[K * N];
};
template <int M, int N, int K, typename T>
struct fragment<accumulator, M, N, K, T, void> {
  static constexpr int rows = M, cols = N, num_elements = M * N;
  float x[M * N];
};

template <typename F>
inline void fill_fragment(F& f, float v) {
  for (float& e : f.x) e = v;
}

template <typename F>
inline void load_matrix_sync(F& f, const float* p, unsigned ldm) {
  __syncwarp();
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || ldm % 4 != 0)
    throw cuda_emu::KernelError("wmma::load_matrix_sync: pointer not 256-bit aligned or ldm " +
                                std::to_string(ldm) + " not a multiple of 4");
  constexpr bool kColMajor = std::is_same<typename F::layout, col_major>::value;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = kColMajor ? p[c * ldm + r] : p[r * ldm + c];
  __syncwarp();
}

template <typename F>
inline void store_matrix_sync(float* p, const F& f, unsigned ldm, layout_t layout) {
  __syncwarp();
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || ldm % 4 != 0)
    throw cuda_emu::KernelError("wmma::store_matrix_sync: pointer not 256-bit aligned or ldm " +
                                std::to_string(ldm) + " not a multiple of 4");
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      (layout == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r * F::cols + c];
  __syncwarp();
}

// d = a @ b + c with the operands rounded to TF32 and FP32 accumulation.
template <typename D, typename A, typename Bf, typename C>
inline void mma_sync(D& d, const A& a, const Bf& b, const C& c) {
  __syncwarp();
  float out[A::rows * Bf::cols];
  for (int i = 0; i < A::rows; ++i)
    for (int j = 0; j < Bf::cols; ++j) {
      float s = c.x[i * Bf::cols + j];
      for (int k = 0; k < A::cols; ++k)
        s += __float_to_tf32(a.x[i * A::cols + k]) * __float_to_tf32(b.x[k * Bf::cols + j]);
      out[i * Bf::cols + j] = s;
    }
  std::memcpy(d.x, out, sizeof(out));
}

}  // namespace wmma
}  // namespace nvcuda
