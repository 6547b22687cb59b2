// needle CPU backend: the optimizers' fused updates, one call per parameter.
//
// Hyper-parameters come in a small array (the optimizer rewrites it before each step), not as
// call arguments: a replayed step (ndl.jit, CUDA graphs) then follows lr schedules without
// re-recording its calls. Every product and sum is rounded to float32 on its own (no fused
// multiply-add), in the order docs/backends.md gives, so the numpy backend is the exact spec.
#pragma once

#include <cmath>
#include <cstdint>

#include "cpu_common.h"

namespace needle {
namespace cpu {

// g + w*wd: L2 weight decay added to a gradient.
NEEDLE_NO_FMA inline float PlusDecay(float g, float w, float wd) {
  const float shrink = w * wd;
  return g + shrink;
}

// hyper = [momentum, dampening, neg_lr, weight_decay]:
// g' = g + w*wd (decay); u' = u*momentum + g'*dampening (g'*dampening when !has_u); w' = w + u'*neg_lr.
NEEDLE_NO_FMA inline void SgdRange(const float* pw, const float* pg, const float* pu, float* ow, float* ou,
                                   int64_t i0, int64_t i1, const float* hyper, bool decay, bool has_u) {
  const float m = hyper[0], d = hyper[1], lr = hyper[2], wd = hyper[3];
  for (int64_t i = i0; i < i1; ++i) {
    const float gi = decay ? PlusDecay(pg[i], pw[i], wd) : pg[i];
    const float step = gi * d;
    float ui = step;
    if (has_u) {
      const float keep = pu[i] * m;
      ui = keep + step;
    }
    const float move = ui * lr;
    ou[i] = ui;
    ow[i] = pw[i] + move;
  }
}

enum SgdDirection { kGradient = 0, kMomentum = 1, kNesterov = 2 };

// torch.optim.SGD; hyper = [momentum, 1-dampening, neg_lr, weight_decay]: g' = g + w*wd (decay);
// kGradient: d = g' (u, u_out untouched); else u' = u*momentum + g'*(1-dampening) (g' when !has_u)
// and d = u' (kMomentum) or g' + u'*momentum (kNesterov); w' = w + d*neg_lr.
NEEDLE_NO_FMA inline void SgdTorchRange(const float* pw, const float* pg, const float* pu, float* ow, float* ou,
                                        int64_t i0, int64_t i1, const float* hyper, bool decay, int direction,
                                        bool has_u) {
  const float m = hyper[0], keep = hyper[1], lr = hyper[2], wd = hyper[3];
  for (int64_t i = i0; i < i1; ++i) {
    const float gi = decay ? PlusDecay(pg[i], pw[i], wd) : pg[i];
    float di = gi;
    if (direction != kGradient) {
      float ui = gi;
      if (has_u) {
        const float old = pu[i] * m, step = gi * keep;
        ui = old + step;
      }
      ou[i] = ui;
      di = ui;
      if (direction == kNesterov) {
        const float ahead = ui * m;
        di = gi + ahead;
      }
    }
    const float move = di * lr;
    ow[i] = pw[i] + move;
  }
}

enum AdamDecay { kNoDecay = 0, kL2Decay = 1, kDecoupledDecay = 2 };

// hyper = [lr, b1, 1-b1, b2, 1-b2, eps, wd, 1-lr*wd]; c1 = 1/(1 - b1^t), c2 = 1/(1 - b2^t):
// w0 = w*(1-lr*wd) (decoupled) else w; g' = g + w*wd (L2) else g;
// m' = m*b1 + g'*(1-b1); v' = v*b2 + (g'*g')*(1-b2) (without state: the second terms alone);
// w' = w0 - ((m'*c1)*lr) / (sqrt(v'*c2) + eps).
NEEDLE_NO_FMA inline void AdamRange(const float* pw, const float* pg, const float* pm, const float* pv, float* ow,
                                    float* om, float* ov, int64_t i0, int64_t i1, const float* h, float c1,
                                    float c2, int decay, bool has_state) {
  const float lr = h[0], b1 = h[1], omb1 = h[2], b2 = h[3], omb2 = h[4], eps = h[5], wd = h[6], keep = h[7];
  for (int64_t i = i0; i < i1; ++i) {
    float w0 = pw[i], gi = pg[i];
    if (decay == kDecoupledDecay) w0 = w0 * keep;
    if (decay == kL2Decay) gi = PlusDecay(gi, pw[i], wd);
    const float gm = gi * omb1, gg = gi * gi, gv = gg * omb2;
    float mi = gm, vi = gv;
    if (has_state) {
      const float km = pm[i] * b1, kv = pv[i] * b2;
      mi = km + gm;
      vi = kv + gv;
    }
    const float m_hat = mi * c1, v_hat = vi * c2;
    const float num = m_hat * lr, den = std::sqrt(v_hat) + eps;
    const float move = num / den;
    om[i] = mi;
    ov[i] = vi;
    ow[i] = w0 - move;
  }
}

// 1 / (1 - beta^t) in float32 (Adam's bias correction at step t >= 1).
NEEDLE_NO_FMA inline float BiasCorrection(float beta, float t) {
  const float power = std::pow(beta, t);
  const float rest = 1.0f - power;
  return 1.0f / rest;
}

inline void SgdUpdate(const AlignedArray& w, const AlignedArray& g, const AlignedArray& u, AlignedArray& w_out,
                      AlignedArray& u_out, const AlignedArray& hyper, bool decay, bool has_u) {
  const char* fn = "sgd_update";
  const int64_t n = w_out.size;
  CheckHolds(fn, "w", w.size, n);
  CheckHolds(fn, "grad", g.size, n);
  CheckHolds(fn, "u_out", u_out.size, n);
  if (has_u) CheckHolds(fn, "u", u.size, n);
  CheckHolds(fn, "hyper", hyper.size, 4);
  ParallelRange(n, n, kParallelMinCopy, 16, [&](int64_t i0, int64_t i1) {
    SgdRange(w.ptr, g.ptr, u.ptr, w_out.ptr, u_out.ptr, i0, i1, hyper.ptr, decay, has_u);
  });
}

inline void SgdTorchUpdate(const AlignedArray& w, const AlignedArray& g, const AlignedArray& u,
                           AlignedArray& w_out, AlignedArray& u_out, const AlignedArray& hyper, bool decay,
                           int direction, bool has_u) {
  const char* fn = "sgd_torch_update";
  const int64_t n = w_out.size;
  if (direction < kGradient || direction > kNesterov)
    throw std::invalid_argument(std::string(fn) + ": direction must be 0 (gradient), 1 (momentum) or 2 "
                                "(nesterov), got " + std::to_string(direction));
  CheckHolds(fn, "w", w.size, n);
  CheckHolds(fn, "grad", g.size, n);
  if (direction != kGradient) {
    CheckHolds(fn, "u_out", u_out.size, n);
    if (has_u) CheckHolds(fn, "u", u.size, n);
  }
  CheckHolds(fn, "hyper", hyper.size, 4);
  ParallelRange(n, n, kParallelMinCopy, 16, [&](int64_t i0, int64_t i1) {
    SgdTorchRange(w.ptr, g.ptr, u.ptr, w_out.ptr, u_out.ptr, i0, i1, hyper.ptr, decay, direction, has_u);
  });
}

inline void AdamUpdate(const AlignedArray& w, const AlignedArray& g, const AlignedArray& m, const AlignedArray& v,
                       AlignedArray& w_out, AlignedArray& m_out, AlignedArray& v_out, const AlignedArray& hyper,
                       const AlignedArray& t, int decay, bool has_state) {
  const char* fn = "adam_update";
  const int64_t n = w_out.size;
  CheckHolds(fn, "w", w.size, n);
  CheckHolds(fn, "grad", g.size, n);
  CheckHolds(fn, "m_out", m_out.size, n);
  CheckHolds(fn, "v_out", v_out.size, n);
  if (has_state) {
    CheckHolds(fn, "m", m.size, n);
    CheckHolds(fn, "v", v.size, n);
  }
  CheckHolds(fn, "hyper", hyper.size, 8);
  CheckHolds(fn, "t", t.size, 1);
  if (decay < kNoDecay || decay > kDecoupledDecay)
    throw std::invalid_argument(std::string(fn) + ": decay must be 0 (none), 1 (L2) or 2 (decoupled), got " +
                                std::to_string(decay));
  const float c1 = BiasCorrection(hyper.ptr[1], t.ptr[0]), c2 = BiasCorrection(hyper.ptr[3], t.ptr[0]);
  ParallelRange(n, n, kParallelMinCopy, 16, [&](int64_t i0, int64_t i1) {
    AdamRange(w.ptr, g.ptr, m.ptr, v.ptr, w_out.ptr, m_out.ptr, v_out.ptr, i0, i1, hyper.ptr, c1, c2, decay,
              has_state);
  });
}

}  // namespace cpu
}  // namespace needle
