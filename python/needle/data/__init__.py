"""needle.data: datasets, transforms and the DataLoader."""
from .data_basic import *  # noqa: F401,F403
from .data_loader import *  # noqa: F401,F403
from .data_transforms import *  # noqa: F401,F403
from .data_mnist import *  # noqa: F401,F403
from .data_cifar import *  # noqa: F401,F403
from .data_digits import *  # noqa: F401,F403
from .data_ptb import *  # noqa: F401,F403
from .data_download import *  # noqa: F401,F403
