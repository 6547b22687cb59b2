"""needle.nn: modules (a real module: `import needle.nn as nn` works)."""
from .nn_basic import *  # noqa: F401,F403
from .nn_norm import *  # noqa: F401,F403
from .nn_conv import *  # noqa: F401,F403
from .nn_sequence import *  # noqa: F401,F403
from .nn_hooks import *  # noqa: F401,F403
from .nn_containers import *  # noqa: F401,F403
from .nn_activation import *  # noqa: F401,F403
from .nn_loss import *  # noqa: F401,F403
from .. import init  # noqa: F401  (torch habit: nn.init.kaiming_uniform_)
