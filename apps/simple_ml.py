"""`apps.simple_ml` (or `simple_ml` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.simple_ml` itself (one copy of the code, installed with the package)."""
import sys

from needle.apps import simple_ml as _module  # noqa: E402

sys.modules[__name__] = _module
