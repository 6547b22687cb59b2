"""`apps.train_tensorboard` (or `train_tensorboard` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.train_tensorboard` itself (one copy of the code, installed with the package)."""
import sys

from needle.apps import train_tensorboard as _module  # noqa: E402

sys.modules[__name__] = _module
