"""needle.optim: SGD, Adam, AdamW with parameter groups and state dicts; lr schedulers.

`optim_basic` holds the Optimizer base class, `optim_algorithms` the update rules and
`lr_scheduler` torch's learning-rate schedules (`needle.optim.lr_scheduler.StepLR`, ...).
"""
from . import lr_scheduler
from .optim_algorithms import SGD, Adam, AdamW
from .optim_basic import Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
