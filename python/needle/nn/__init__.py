"""needle.nn: modules (a real module: `import needle.nn as nn` works)."""
from .nn_basic import *  # noqa: F401,F403
from .nn_conv import *  # noqa: F401,F403
from .nn_sequence import *  # noqa: F401,F403
