"""Winograd F(2x2,3x3) / F(4x4,3x3) and FFT convolution (ops_conv_algos): the transform
matrices, forward and both gradients against the im2col ops and torch on every device, finite
differences and second order, the native transforms against the numpy spec, the multiplication
counts, and the errors for configurations they cannot run."""
import numpy as np
import pytest

import needle as ndl
import needle.backend_ndarray as nd
from needle.ops.ops_conv_algos import AlgoConvInputGrad, winograd_matrices, winograd_multiplications
from needle.testing import assert_close, gradient_check

from conv_reference import conv2d_loops

ALGOS = ["winograd", "winograd4", "fft"]
CASES = [((2, 9, 7, 5), 3, 1), ((1, 8, 8, 3), 3, 0), ((2, 6, 11, 4), 3, 2), ((1, 5, 4, 2), 3, 1)]
FFT_ONLY = [((1, 12, 10, 3), 5, 2), ((2, 9, 9, 2), 7, 0)]


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, dtype=np.float32), device=device, requires_grad=requires_grad)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_matrices_compute_the_1d_correlation_exactly(m):
    at, g, bt = winograd_matrices(m, dtype=np.float64)
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, w = rng.standard_normal(m + 2), rng.standard_normal(3)
        np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), np.correlate(d, w, "valid"),
                                   atol=1e-12)
    assert np.all(bt == np.round(bt))  # integer input transform


def test_multiplication_counts_match_the_formula():
    # mu(F(m x m, 3 x 3)) = (m + 2)^2 multiplications per m x m tile, against 9 m^2 direct
    assert winograd_multiplications((8, 8), 1, 1, 2) == (16 * 16, 64 * 9)
    assert winograd_multiplications((8, 8), 1, 1, 4) == (4 * 36, 64 * 9)
    wino, direct = winograd_multiplications((32, 32), 64, 64, 4)
    assert direct / wino == pytest.approx(4.0)
    wino, direct = winograd_multiplications((32, 32), 64, 64, 2)
    assert direct / wino == pytest.approx(2.25)


def _cases(algo):
    return CASES + (FFT_ONLY if algo == "fft" else [])


@pytest.mark.parametrize("algo", ALGOS)
def test_forward_and_gradients_match_im2col_and_loops(algo, device):
    tol = 2e-4 if algo == "winograd4" else 1e-4
    for xs, k, p in _cases(algo):
        x, w = np.random.randn(*xs), np.random.randn(k, k, xs[3], 3)
        xn, wn = T(x, device), T(w, device)
        y = ndl.conv(xn, wn, padding=p, algo=algo)
        assert_close(y, conv2d_loops(x, w, 1, p), rtol=tol, atol=tol, what=f"{algo} forward {xs}")
        go = np.random.randn(*y.shape)
        y.backward(T(go, device, False))
        xr, wr = T(x, device), T(w, device)
        ndl.conv(xr, wr, padding=p).backward(T(go, device, False))
        assert_close(xn.grad, xr.grad.numpy(), rtol=tol, atol=tol, what=f"{algo} grad x {xs}")
        assert_close(wn.grad, wr.grad.numpy(), rtol=tol, atol=10 * tol,
                     what=f"{algo} grad w {xs}")


@pytest.mark.parametrize("algo", ALGOS)
def test_against_torch(algo, device):
    torch = pytest.importorskip("torch")
    x, w = np.random.randn(2, 10, 9, 4), np.random.randn(3, 3, 4, 6)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt.permute(0, 3, 1, 2), wt.permute(3, 2, 0, 1), padding=1)
    yt = yt.permute(0, 2, 3, 1)
    go = np.random.randn(*yt.shape)
    yt.backward(torch.tensor(go))
    xn, wn = T(x, device), T(w, device)
    yn = ndl.conv(xn, wn, padding=1, algo=algo)
    yn.backward(T(go, device, False))
    assert_close(yn, yt.detach().numpy(), rtol=2e-4, atol=2e-4, what="forward")
    assert_close(xn.grad, xt.grad.numpy(), rtol=2e-4, atol=2e-4, what="grad of input")
    assert_close(wn.grad, wt.grad.numpy(), rtol=2e-4, atol=2e-3, what="grad of weight")


@pytest.mark.parametrize("algo", ALGOS)
def test_gradient_check_first_and_second_order(algo, device):
    x, w = np.random.randn(1, 5, 6, 2), np.random.randn(3, 3, 2, 2)
    gradient_check(lambda a, b: ndl.conv(a, b, padding=1, algo=algo), T(x, device),
                   T(w, device), tol=3e-2, op_name=f"conv {algo}")

    def grad_x(a, b):  # the input gradient as a function of (x, w): exercises the grad ops
        y = ndl.conv(a, b, padding=1, algo=algo)
        return AlgoConvInputGrad(y.op.engine, (1, 1), a.shape)(y, b)

    gradient_check(grad_x, T(x, device), T(w, device), tol=3e-2, op_name=f"{algo} input grad")


def test_native_transforms_match_the_numpy_spec():
    at, _, bt = winograd_matrices(4)
    x = np.random.randn(2, 7, 9, 3).astype(np.float32)
    g = np.random.randn(2, 7, 9, 5).astype(np.float32)
    outs = []
    devices = [nd.cpu_numpy(), nd.cpu()] + ([nd.cuda()] if nd.cuda().enabled() else [])
    for dev in devices:
        B, A = nd.array(bt, device=dev), nd.array(at, device=dev)
        v = nd.winograd_input_transform(nd.array(x, device=dev), B, (7, 9), (1, 1), 4)
        xa = nd.winograd_input_transform_adjoint(v, B, x.shape, (7, 9), (1, 1), 4)
        dm = nd.winograd_output_transform_adjoint(nd.array(g, device=dev), A)
        y = nd.winograd_output_transform(dm, A, g.shape)
        outs.append([a.numpy() for a in (v, xa, dm, y)])
    for got in outs[1:]:
        for name, a, b in zip(("input", "input adjoint", "output adjoint", "output"), got,
                              outs[0]):
            assert_close(a, b, rtol=1e-4, atol=1e-3, what=name)


def test_errors_name_the_op_and_the_configuration():
    x, w3, w5 = T(np.zeros((1, 8, 8, 2)), None), T(np.zeros((3, 3, 2, 2)), None), T(
        np.zeros((5, 5, 2, 2)), None)
    with pytest.raises(ValueError, match=r"conv: algo='winograd' needs a 3x3 kernel, stride 1.*"
                                         r"stride \(2, 2\)"):
        ndl.conv(x, w3, stride=2, algo="winograd")
    with pytest.raises(ValueError, match=r"conv: algo='winograd4' needs a 3x3 kernel.*\(5, 5\)"):
        ndl.conv(x, w5, algo="winograd4")
    with pytest.raises(ValueError, match=r"conv: algo='fft' needs stride 1.*dilation \(2, 2\)"):
        ndl.conv(x, w3, dilation=2, algo="fft")
    with pytest.raises(ValueError, match=r"conv: algo must be one of"):
        ndl.conv(x, w3, algo="direct")
    with pytest.raises(ValueError, match=r"conv: kernel \(9, 9\) .* larger than the padded input"):
        ndl.conv(x, T(np.zeros((9, 9, 2, 2)), None), padding=0, algo="fft")
    # auto falls back to im2col where Winograd cannot run (and matches it everywhere)
    y = ndl.conv(x, w5, stride=2, padding=2, algo="auto")
    assert y.shape == (1, 4, 4, 2)
