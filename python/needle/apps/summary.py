"""`needle-summary`: the layer table of one of the training app's models.

    needle-summary resnet9                      # input 1 x 3 x 32 x 32 (N x C x H x W)
    needle-summary lenet --input-shape 1 1 28 28
"""
import argparse
import sys

import needle as ndl
from needle.apps.train import MODELS, NUM_CLASSES, build_model
from needle.utils import summary

__all__ = ["main"]


def main(argv=None):
    """Print `needle.utils.summary` of a model of the training app; returns the exit code."""
    p = argparse.ArgumentParser(prog="needle-summary", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", choices=MODELS)
    p.add_argument("--input-shape", type=int, nargs=4, metavar=("N", "C", "H", "W"),
                   default=None, help="default: 1 x 3 x 32 x 32, or 1 x 1 x 28 x 28 for "
                                      "lenet and mlp")
    p.add_argument("--num-classes", type=int, default=NUM_CLASSES)
    args = p.parse_args(argv)
    shape = args.input_shape or ((1, 1, 28, 28) if args.model in ("lenet", "mlp")
                                 else (1, 3, 32, 32))
    if min(shape) < 1:
        p.error(f"--input-shape must be positive, got {shape}")
    n, c, h, w = shape
    if args.model == "resnet9" and c != 3:
        p.error("resnet9 takes 3 input channels")
    model = build_model(args.model, c, h, ndl.cpu(), num_classes=args.num_classes)
    try:
        print(summary(model, tuple(shape)))
    except ValueError as e:  # a shape the model cannot take
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
