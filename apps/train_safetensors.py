"""`apps.train_safetensors` (or `train_safetensors` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.train_safetensors` itself (one copy of the code, installed with the package)."""
import sys

from needle.apps import train_safetensors as _module  # noqa: E402

sys.modules[__name__] = _module
