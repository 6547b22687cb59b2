"""needle.ops: autograd operators and their functional wrappers."""
from .ops_mathematic import *  # noqa: F401,F403
from .ops_tuple import *  # noqa: F401,F403
from .ops_conv import *  # noqa: F401,F403
from .ops_pool import *  # noqa: F401,F403
from .ops_softmax import *  # noqa: F401,F403
from .ops_norm import *  # noqa: F401,F403
from .ops_special import *  # noqa: F401,F403
