"""Winograd F(m x m, 3 x 3) tile transforms of NHWC NDArrays, one backend call each (the
transform matrices are small NDArrays; see needle/ops/ops_conv_algos.py for the algorithm)."""
from .ndarray import NDArray

__all__ = ["winograd_input_transform", "winograd_input_transform_adjoint",
           "winograd_output_transform", "winograd_output_transform_adjoint"]


def _tiles(size, m):
    return -(-size // m)


def winograd_input_transform(x, bt, out_hw, padding, m):
    """x (N x H x W x C), bt (alpha x alpha) -> V (alpha^2 x N*th*tw x C): B^T d B of every
    alpha x alpha input patch; the tiles cover an output of out_hw = (Ho, Wo)."""
    n, h, w, c = x.shape
    alpha = bt.shape[0]
    th, tw = _tiles(out_hw[0], m), _tiles(out_hw[1], m)
    out = NDArray.make((alpha * alpha, n * th * tw, c), device=x.device)
    x.device.winograd_input_transform(x.compact()._handle, bt.compact()._handle, out._handle, n, h,
                                      w, c, padding[0], padding[1], m, alpha, th, tw)
    return out


def winograd_input_transform_adjoint(dv, bt, in_shape, out_hw, padding, m):
    """The adjoint of winograd_input_transform: dv (alpha^2 x T x C) -> N x H x W x C."""
    n, h, w, c = in_shape
    alpha = bt.shape[0]
    th, tw = _tiles(out_hw[0], m), _tiles(out_hw[1], m)
    dinp = NDArray.make(tuple(in_shape), device=dv.device)
    dv.device.winograd_input_transform_adjoint(dv.compact()._handle, bt.compact()._handle,
                                               dinp._handle, n, h, w, c, padding[0], padding[1],
                                               m, alpha, th, tw)
    return dinp


def winograd_output_transform(mm, at, out_shape):
    """mm (alpha^2 x T x K), at (m x alpha) -> the N x Ho x Wo x K output (A^T M A per tile)."""
    n, ho, wo, k = out_shape
    m, alpha = at.shape
    out = NDArray.make(tuple(out_shape), device=mm.device)
    mm.device.winograd_output_transform(mm.compact()._handle, at.compact()._handle, out._handle,
                                        n, ho, wo, k, m, alpha, _tiles(ho, m), _tiles(wo, m))
    return out


def winograd_output_transform_adjoint(dout, at):
    """The adjoint of winograd_output_transform: dout (N x Ho x Wo x K) -> alpha^2 x T x K."""
    n, ho, wo, k = dout.shape
    m, alpha = at.shape
    th, tw = _tiles(ho, m), _tiles(wo, m)
    dm = NDArray.make((alpha * alpha, n * th * tw, k), device=dout.device)
    dout.device.winograd_output_transform_adjoint(dout.compact()._handle, at.compact()._handle,
                                                  dm._handle, n, ho, wo, k, m, alpha, th, tw)
    return dm
