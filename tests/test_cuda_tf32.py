"""The opt-in TF32 tensor-core GEMM (NEEDLE_CUDA_TF32=1) on cuda: the GPU, or the emulator with
NEEDLE_CUDA_EMULATOR=1, whose wmma rounds operands to TF32 as the hardware does.

Tolerances come from TF32's 10-bit mantissa: each operand is rounded with relative error at most
u = 2^-11, so a product is off by at most ~2u and a dot product of length K by at most
(2u + K * 2^-24) * (|A| @ |B|) elementwise (the last term: FP32 accumulation). Random data then
gives a relative error vs float64 of ~1e-3 * sqrt(K) or less. The variable is read once per
process, hence the subprocess."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import needle.backend_ndarray as nd

pytestmark = pytest.mark.skipif(not nd.cuda().enabled(),
                                reason="no CUDA device (NEEDLE_CUDA_EMULATOR=1 runs these on the CPU emulator)")

SCRIPT = r"""
import json, sys
import numpy as np
import needle.backend_ndarray as nd

mod = nd.cuda().mod
rng = np.random.default_rng(0)

def put(x):
    buf = mod.Array(x.size)
    mod.from_numpy(np.ascontiguousarray(x, dtype=np.float32).ravel(), buf)
    return buf

def get(buf, n):
    return mod.to_numpy(buf, (n,), (1,), 0)

def errors(c, a64, b64):
    exact, scale = a64 @ b64, np.abs(a64) @ np.abs(b64)
    return {"elem": float((np.abs(c - exact) / np.maximum(scale, 1e-30)).max()),
            "rel": float(np.linalg.norm(c - exact) / np.linalg.norm(exact))}

out = {}
for m, k, p in [(64, 64, 64), (130, 200, 70), (33, 1000, 17), (1, 16, 1)]:
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, p)).astype(np.float32)
    c = mod.Array(m * p)
    mod.matmul(put(a), put(b), c, m, k, p)
    out[f"matmul {m}x{k}x{p}"] = dict(errors(get(c, m * p).reshape(m, p), a.astype(float), b.astype(float)), k=k)

for ta in (False, True):
    for tb in (False, True):
        batch, m, k, p = 3, 40, 96, 36
        a = rng.standard_normal((batch, m, k)).astype(np.float32)
        b = rng.standard_normal((batch, k, p)).astype(np.float32)
        sa = np.swapaxes(a, 1, 2) if ta else a
        sb = np.swapaxes(b, 1, 2) if tb else b
        c = mod.Array(batch * m * p)
        mod.gemm(put(sa), put(sb), c, batch, m, k, p, 0, m * k, ta, 0, k * p, tb)
        got = get(c, batch * m * p).reshape(batch, m, p)
        e = [errors(got[i], a[i].astype(float), b[i].astype(float)) for i in range(batch)]
        out[f"gemm ta={ta} tb={tb}"] = {"elem": max(x["elem"] for x in e), "rel": max(x["rel"] for x in e), "k": k}

# an NHWC 3x3 convolution as the implicit GEMM: A is the im2col view of x
N, H, W, C, F = 2, 8, 8, 16, 24
x = rng.standard_normal((N, H + 2, W + 2, C)).astype(np.float32)
w = rng.standard_normal((3 * 3 * C, F)).astype(np.float32)
shape = (N, H, W, 3, 3, C)
strides = ((H + 2) * (W + 2) * C, (W + 2) * C, C, (W + 2) * C, C, 1)
m, k = N * H * W, 9 * C
c = mod.Array(m * F)
mod.gemm_strided_a(put(x), put(w), c, m, k, F, shape, strides, 0, 3, 0, False)
view = np.lib.stride_tricks.as_strided(x, shape, [s * 4 for s in strides]).reshape(m, k)
out["gemm_strided_a conv3x3"] = dict(errors(get(c, m * F).reshape(m, F), view.astype(float), w.astype(float)), k=k)

# matmul_tiled always stays FP32
t, k = 16, 512
a = rng.standard_normal((t, k)).astype(np.float32)
b = rng.standard_normal((k, t)).astype(np.float32)
tile = nd.cuda().mod.__tile_size__
at = a.reshape(t // tile, tile, k // tile, tile).transpose(0, 2, 1, 3)
bt = b.reshape(k // tile, tile, t // tile, tile).transpose(0, 2, 1, 3)
c = mod.Array(t * t)
mod.matmul_tiled(put(at), put(bt), c, t, k, t)
ct = get(c, t * t).reshape(t // tile, t // tile, tile, tile).transpose(0, 2, 1, 3).reshape(t, t)
out["matmul_tiled fp32"] = dict(errors(ct, a.astype(float), b.astype(float)), k=k)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tf32_errors():
    env = dict(os.environ, NEEDLE_CUDA_TF32="1")
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                         timeout=600, check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


U = 2.0 ** -11  # TF32 unit roundoff: 10 explicit mantissa bits, round to nearest


@pytest.mark.parametrize("case", ["matmul 64x64x64", "matmul 130x200x70", "matmul 33x1000x17", "matmul 1x16x1",
                                  "gemm ta=False tb=False", "gemm ta=False tb=True", "gemm ta=True tb=False",
                                  "gemm ta=True tb=True", "gemm_strided_a conv3x3"])
def test_tf32_error_within_the_10_bit_mantissa_bound(tf32_errors, case):
    e = tf32_errors[case]
    assert e["elem"] <= 2 * U + e["k"] * 2.0 ** -24, e  # elementwise, relative to |A| @ |B|
    assert e["rel"] <= 1e-3 * np.sqrt(e["k"]), e


@pytest.mark.parametrize("case", ["matmul 130x200x70", "matmul 33x1000x17", "gemm ta=True tb=True"])
def test_tf32_is_really_on(tf32_errors, case):
    """Errors far above FP32's (~1e-7): the TF32 kernel ran, not the FP32 one."""
    assert tf32_errors[case]["rel"] > 1e-5, tf32_errors[case]


def test_matmul_tiled_stays_fp32(tf32_errors):
    assert tf32_errors["matmul_tiled fp32"]["rel"] < 1e-5, tf32_errors["matmul_tiled fp32"]
