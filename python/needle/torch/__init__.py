"""needle kernels as a PyTorch custom op (the course's conv-extension homework, done both ways).

    from needle.torch import Conv2d, Conv2dFunction   # needs torch (an optional extra)

`Conv2dFunction` is a `torch.autograd.Function` and `Conv2d` an `nn.Module` (padding, stride,
bias) whose forward and backward run needle's convolution on torch tensors:
  float32   needle's own kernels: the implicit-GEMM conv (forward), the transposed conv (input
            gradient) and the weight-gradient GEMM, on needle's cpu device (cuda when the tensor
            is on a GPU and needle was built with CUDA).
  float64   needle's NDArray is float32-only, so float64 tensors (torch.autograd.gradcheck)
            run `reference.py`: the same three maps, written in float64 numpy with the same
            im2col view. gradcheck therefore checks the backward formulas, and the float32
            tests check needle's kernels against F.conv2d.
Tensors cross between torch and needle through numpy (a copy each way).
TODO(dlpack): once needle NDArrays speak DLPack (another branch adds it), swap `_to_needle` /
`_to_torch` for zero-copy `from_dlpack` calls; nothing else changes.
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # torch is optional: only this subpackage needs it
    raise ImportError("needle.torch needs PyTorch: pip install torch") from e

from .conv import Conv2d, Conv2dFunction

__all__ = ["Conv2d", "Conv2dFunction"]
