"""needle.init (contract §6): values, shapes, dtypes, devices, and exactly one numpy draw each."""
import math

import numpy as np
import pytest

import needle as ndl
from needle import init
from needle.testing import assert_close


def _after(seed, draw):
    """The values a direct numpy draw gives after np.random.seed(seed)."""
    np.random.seed(seed)
    return draw()


def _next_draw():
    return np.random.rand()


@pytest.mark.parametrize("make,draw,affine", [
    (lambda d: init.rand(3, 4, device=d), lambda: np.random.rand(3, 4), lambda v: v),
    (lambda d: init.rand(3, 4, low=-2.0, high=3.0, device=d), lambda: np.random.rand(3, 4),
     lambda v: v * 5.0 - 2.0),
    (lambda d: init.randn(2, 5, device=d), lambda: np.random.randn(2, 5), lambda v: v),
    (lambda d: init.randn(2, 5, mean=1.0, std=0.5, device=d), lambda: np.random.randn(2, 5),
     lambda v: v * 0.5 + 1.0),
    (lambda d: init.randb(4, 4, p=0.3, device=d, dtype="float32"), lambda: np.random.rand(4, 4),
     lambda v: (v <= 0.3).astype(np.float32)),
    (lambda d: init.xavier_uniform(3, 5, gain=2.0, device=d), lambda: np.random.rand(3, 5),
     lambda v: v * 2 * 2.0 * math.sqrt(6 / 8) - 2.0 * math.sqrt(6 / 8)),
    (lambda d: init.xavier_normal(3, 5, gain=1.5, device=d), lambda: np.random.randn(3, 5),
     lambda v: v * 1.5 * math.sqrt(2 / 8)),
    (lambda d: init.kaiming_uniform(6, 4, device=d), lambda: np.random.rand(6, 4),
     lambda v: v * 2 * math.sqrt(6 / 6) - math.sqrt(6 / 6)),
    (lambda d: init.kaiming_uniform(27, 8, shape=(3, 3, 3, 8), device=d),
     lambda: np.random.rand(3, 3, 3, 8), lambda v: v * 2 * math.sqrt(6 / 27) - math.sqrt(6 / 27)),
    (lambda d: init.kaiming_normal(6, 4, device=d), lambda: np.random.randn(6, 4),
     lambda v: v * math.sqrt(2) / math.sqrt(6)),
], ids=["rand", "rand_lowhigh", "randn", "randn_meanstd", "randb", "xavier_uniform",
        "xavier_normal", "kaiming_uniform", "kaiming_uniform_shape", "kaiming_normal"])
def test_random_init_matches_one_numpy_draw(device, make, draw, affine):
    np.random.seed(7)
    t = make(device)
    after_ours = _next_draw()
    np.random.seed(7)
    raw = draw()
    after_direct = _next_draw()
    expected = affine(raw)
    # Exactly one draw of the same shape: the global stream continues identically.
    assert after_ours == after_direct
    assert t.shape == raw.shape and t.dtype == "float32" and t.device == device
    assert not t.requires_grad
    assert_close(t, expected, rtol=1e-5, atol=1e-6)


def test_randn_float32_rounding_matches_reference(device):
    # Reference order: the draw is cast to float32 first, then scaled in float32.
    np.random.seed(3)
    t = init.randn(4, mean=0.25, std=3.0, device=device)
    np.random.seed(3)
    v = np.random.randn(4).astype(np.float32)
    np.testing.assert_array_equal(t.numpy(), v * np.float32(3.0) + np.float32(0.25))


def test_kaiming_uniform_bound_uses_given_fan_in(device):
    t = init.kaiming_uniform(4, 100, shape=(50, 50), device=device).numpy()
    bound = math.sqrt(2) * math.sqrt(3 / 4)
    assert t.shape == (50, 50) and np.abs(t).max() <= bound and np.abs(t).max() > 0.9 * bound


def test_constant_ones_zeros_make_no_draw(device):
    np.random.seed(1)
    c = init.constant(2, 3, c=2.5, device=device)
    o = init.ones(3, device=device, requires_grad=True)
    z = init.zeros(1, 2, device=device)
    assert _next_draw() == _after(1, _next_draw)
    assert_close(c, np.full((2, 3), 2.5))
    assert_close(o, np.ones(3)) and o.requires_grad
    assert_close(z, np.zeros((1, 2)))
    assert c.device == device and c.dtype == "float32"


def test_like_functions(device):
    t = ndl.Tensor(np.random.randn(2, 3), device=device)
    z = init.zeros_like(t)
    o = ndl.ones_like(t, requires_grad=True)
    assert z.shape == (2, 3) and z.device == device and z.dtype == t.dtype
    assert_close(z, np.zeros((2, 3)))
    assert_close(o, np.ones((2, 3))) and o.requires_grad


def test_one_hot(device):
    labels = ndl.Tensor(np.array([2, 0, 1, 2]), device=device)
    out = init.one_hot(3, labels, device=device)
    assert out.shape == (4, 3) and out.device == device
    assert_close(out, np.eye(3)[[2, 0, 1, 2]])
    out2 = init.one_hot(4, ndl.Tensor(np.array([[1.0, 3.0]]), device=device), device=device)
    assert out2.shape == (1, 2, 4)
    assert_close(init.one_hot(3, [0, 2], device=device), np.eye(3)[[0, 2]])


def test_randb_default_dtype_in_ndarray_mode(device):
    np.random.seed(2)
    mask = init.randb(3, 4, p=0.25, device=device)  # dtype "bool" becomes a float32 1/0 mask
    np.random.seed(2)
    assert mask.dtype == "float32"
    assert_close(mask, (np.random.rand(3, 4) <= 0.25).astype(np.float32))


def test_default_device_is_cpu():
    assert init.zeros(2).device == ndl.cpu()
    np.random.seed(0)
    assert init.rand(2).device == ndl.cpu()


def test_kaiming_rejects_other_nonlinearity(device):
    with pytest.raises(ValueError, match="relu"):
        init.kaiming_uniform(3, 3, nonlinearity="tanh", device=device)


def test_init_in_numpy_mode_subprocess(run_numpy_mode):
    import textwrap
    script = textwrap.dedent("""
        import numpy as np
        import needle as ndl
        from needle import init
        np.random.seed(5)
        t = init.rand(3, 2, low=-1.0, high=1.0)
        nxt = np.random.rand()
        np.random.seed(5)
        v = np.random.rand(3, 2)
        assert nxt == np.random.rand()
        assert t.dtype == np.float32 and type(t.cached_data) is np.ndarray
        assert np.array_equal(t.numpy(), (v * 2.0 - 1.0).astype(np.float32))
        b = init.randb(5, p=0.5)
        assert b.dtype == np.bool_
        assert init.randn(2, dtype="float64").dtype == np.float64
        oh = init.one_hot(3, ndl.Tensor(np.array([2, 0], dtype=np.uint8)))
        assert oh.numpy().tolist() == [[0, 0, 1], [1, 0, 0]] and oh.dtype == np.float32
        print("ok")
    """)
    run_numpy_mode(script, "ok")
