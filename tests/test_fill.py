"""Backend `fill` on every device: +0.0 (memset on the cpu backend), -0.0 (sign kept), other
values and NaN, at sizes below and above the parallel threshold."""
import needle.backend_ndarray as nd
import numpy as np
import pytest


@pytest.mark.parametrize("value", [0.0, -0.0, 1.5, float("nan")], ids=["zero", "neg_zero", "1.5", "nan"])
@pytest.mark.parametrize("size", [0, 1, 17, 65536, 331776, 400001])
def test_backend_fill(device, value, size):
    buf = device.Array(size)
    device.fill(buf, value)
    got = device.to_numpy(buf, (size,), (1,), 0)
    want = np.full(size, value, np.float32)
    np.testing.assert_array_equal(got, want)
    assert (np.signbit(got) == np.signbit(want)).all()
