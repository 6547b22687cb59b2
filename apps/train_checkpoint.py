"""`apps.train_checkpoint` (or `train_checkpoint` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.train_checkpoint` itself (one copy of the code, installed with the package)."""
import sys

from needle.apps import train_checkpoint as _module  # noqa: E402

sys.modules[__name__] = _module
