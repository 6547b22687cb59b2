"""docs/conv.md: its python blocks run in order, and the functions it defines (the naive loops,
the matmul-per-offset loop, the MAC formula, the full kernel composition) agree with ndl.conv on
cases the page itself does not show."""
import pathlib
import re

import numpy as np
import pytest

import needle as ndl

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "conv.md"


@pytest.fixture(scope="module")
def doc():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 15, "docs/conv.md lost its examples"
    namespace = {"__name__": "docs_conv"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"conv.md[block {i}]", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"docs/conv.md block {i} failed: {e!r}\n{block}") from e
    return namespace


def test_page_covers_the_walkthrough():
    text = PAGE.read_text()
    for needle_text in ["Seven loops", "One matmul per kernel offset", "im2col", "col2im",
                        "scatter_add_", "Ho = floor((H + 2p - d(K-1) - 1) / s) + 1",
                        "multiply-adds = N * Ho * Wo * Cout * KH * KW * Cin / G",
                        "Dilation", "Groups", "depthwise", "first maximum", "p_i - y_i"]:
        assert needle_text in text, needle_text


@pytest.mark.parametrize("shape,k,cout", [((1, 5, 7, 2), 2, 3), ((2, 4, 4, 1), 4, 2)])
def test_doc_loop_convs_match_ndl_conv(doc, device, shape, k, cout):
    rng = np.random.default_rng(5)
    z, w = rng.standard_normal(shape), rng.standard_normal((k, k, shape[3], cout))
    ours = ndl.conv(ndl.Tensor(z, device=device), ndl.Tensor(w, device=device), padding=0)
    np.testing.assert_allclose(doc["conv_naive"](z, w), ours.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(doc["conv_matrix_mult"](z, w), ours.numpy(), rtol=1e-4, atol=1e-4)


def test_doc_mac_formula_counts_the_loops(doc):
    macs = doc["conv_macs"]
    # one multiply-add per (output element, kernel tap, input channel of the group)
    for n, h, cin, cout, k, s, p, g in [(1, 7, 4, 6, 3, 2, 1, 2), (2, 5, 2, 2, 1, 1, 0, 1)]:
        ho = (h + 2 * p - k) // s + 1
        assert macs(n, h, h, cin, cout, k, s, p, g) == n * ho * ho * cout * k * k * (cin // g)


def test_doc_full_kernel_composition_is_symmetric(doc):
    rng = np.random.default_rng(6)
    k1, k2 = rng.standard_normal((3, 2)), rng.standard_normal((2, 4))
    np.testing.assert_allclose(doc["full_conv2d"](k1, k2), doc["full_conv2d"](k2, k1))
    assert doc["full_conv2d"](k1, k2).shape == (4, 5)
