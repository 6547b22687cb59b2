"""Random-number streams: `manual_seed` and `Generator`.

needle's contract (§11) fixes every random draw to numpy's *global* stream (`np.random.rand`,
`randn`, `randint`, `permutation`), so the default stays that stream. A `Generator` is a private
stream for code that must not disturb (or be disturbed by) the global one: pass it as
`generator=` to `init.rand` / `randn` / `randb` / the initialisers, `nn.Dropout`,
`DataLoader` and `data.RandomSampler`.

A `Generator` seeded with s draws exactly what the global stream draws after
`np.random.seed(s)` (both are a Mersenne Twister seeded the same way), so code can switch
between the two without changing its numbers.

Example:
    >>> g = ndl.Generator().manual_seed(0)
    >>> w = ndl.init.rand(3, 4, generator=g)        # the global stream is untouched
    >>> ndl.manual_seed(0)                          # == np.random.seed(0)
"""
from typing import Optional

import numpy as np

__all__ = ["Generator", "default_generator", "manual_seed", "resolve_generator"]


def _check_seed(seed, where: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{where}: seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2 ** 32:
        raise ValueError(f"{where}: seed must lie in [0, 2**32), got {seed}")
    return int(seed)


class Generator:
    """A random stream with numpy's RandomState draw methods (rand, randn, randint,
    permutation, ...).

    Args:
        seed: optional initial seed (an int in [0, 2**32)); without one the stream starts from
            fresh OS entropy, as `np.random.RandomState()` does.

    `Generator(s)` and `Generator().manual_seed(s)` give the same stream, equal to the global
    stream after `np.random.seed(s)`.
    """

    def __init__(self, seed: Optional[int] = None):
        self._state = np.random.RandomState(
            None if seed is None else _check_seed(seed, "Generator"))
        self._global = False

    def manual_seed(self, seed: int) -> "Generator":
        """Reseed this stream; returns self (torch style: `g = Generator().manual_seed(0)`)."""
        self._state.seed(_check_seed(seed, "Generator.manual_seed"))
        return self

    def get_state(self):
        """The stream state (numpy's RandomState tuple)."""
        return self._state.get_state()

    def set_state(self, state) -> None:
        """Restore a state returned by `get_state()`."""
        self._state.set_state(state)

    def __getattr__(self, name):
        # Draw methods (rand, randn, randint, permutation, ...) are numpy's own.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.__dict__["_state"], name)

    def __repr__(self):
        return "Generator(global numpy stream)" if self._global else "Generator()"

    def __getstate__(self):
        if self._global:
            raise TypeError("Generator: the default (global numpy) generator cannot be pickled; "
                            "pass a Generator of your own to worker processes")
        return self.__dict__


def _global_generator() -> Generator:
    g = Generator.__new__(Generator)
    # numpy's global functions (np.random.rand, ...) are methods of this RandomState object.
    g._state = np.random.mtrand._rand
    g._global = True
    return g


default_generator = _global_generator()


def manual_seed(seed: int) -> Generator:
    """Seed the global stream (exactly `np.random.seed(seed)`); returns `default_generator`."""
    np.random.seed(_check_seed(seed, "manual_seed"))
    return default_generator


def resolve_generator(generator, where: str) -> Generator:
    """`generator` if it is a Generator, the global stream for None; TypeError otherwise."""
    if generator is None:
        return default_generator
    if isinstance(generator, Generator):
        return generator
    if isinstance(generator, np.random.RandomState):
        # Accept a bare RandomState too (what a Generator wraps).
        g = Generator.__new__(Generator)
        g._state, g._global = generator, False
        return g
    raise TypeError(f"{where}: generator must be an ndl.Generator or None, "
                    f"got {type(generator).__name__}")
