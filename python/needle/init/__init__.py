"""needle.init: tensor creation and weight initialisers (each random one makes exactly one numpy draw)."""
from .init_basic import *  # noqa: F401,F403
from .init_initializers import *  # noqa: F401,F403
from .init_inplace import *  # noqa: F401,F403
