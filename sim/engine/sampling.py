"""Block-sampled random variates from configuration distributions.

A :class:`Sampler` draws a block of variates with numpy and hands them out one
at a time, in order, as Python floats: numpy's vectorised generators are far cheaper per
variate than scalar calls, and Python floats keep the hot path's arithmetic and
heap comparisons fast (numpy scalars lose half the gain, see docs/design.md#speed).
"""

from __future__ import annotations

import itertools

import numpy as np

from sim.config.distributions import Constant, Empirical, Exponential, Gamma, Lognormal, Uniform

BLOCK = 4096

#: The first block's size. Blocks double up to ``BLOCK``, so a stream that is
#: drawn from rarely (one of a large fleet's thousand backends, say) costs a
#: little, not 4,096 variates up front. Splitting draws this way gives the same
#: values: numpy's Generator fills an array one variate at a time, in order.
FIRST_BLOCK = 64


def draw_block(dist, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` variates of ``dist`` from ``rng`` as a float64 array."""
    if isinstance(dist, Exponential):
        return rng.exponential(dist.mean_value, n)
    if isinstance(dist, Lognormal):
        return rng.lognormal(dist.mu, dist.sigma, n)
    if isinstance(dist, Gamma):
        return rng.gamma(dist.shape, dist.scale, n)
    if isinstance(dist, Uniform):
        return rng.uniform(dist.low, dist.high, n)
    if isinstance(dist, Empirical) or hasattr(dist, "quantiles"):  # also a signed TimerError table
        ps = np.array([p for p, _ in dist.quantiles])
        vs = np.array([v for _, v in dist.quantiles])
        return np.interp(rng.random(n), ps, vs)
    if isinstance(dist, Constant):
        return np.full(n, dist.value)
    raise TypeError(f"unknown distribution {dist!r}")


def _block_sizes(block: int):
    n = min(FIRST_BLOCK, block)
    while True:
        yield n
        n = min(2 * n, block)


def _blocks(dist, rng: np.random.Generator, block: int):
    for n in _block_sizes(block):
        yield draw_block(dist, rng, n).tolist()


class Sampler:
    """Draws from one distribution with one generator, a block at a time.

    Call :meth:`draw` (bind it to a local or an attribute in hot code): it is
    the ``__next__`` of a C-level iterator over the current block, so a draw
    costs no Python frame; a generator refills it once per block. A
    constant distribution never touches the generator, so switching a field
    between a constant and a random distribution does not shift anyone
    else's draws.
    """

    __slots__ = ("dist", "rng", "block", "draw", "mean")

    def __init__(self, dist, rng: np.random.Generator, block: int = BLOCK):
        self.dist = dist
        self.rng = rng
        self.block = block
        self.mean = dist.mean
        if isinstance(dist, Constant):
            self.draw = itertools.repeat(float(dist.value)).__next__
        else:
            self.draw = itertools.chain.from_iterable(_blocks(dist, rng, block)).__next__

    def __repr__(self) -> str:
        return f"Sampler({self.dist!r})"


def UniformStream(rng: np.random.Generator, block: int = BLOCK):  # noqa: N802 - used like a class
    """A function returning uniform [0, 1) floats drawn in blocks (choices, coin flips)."""
    def blocks():
        for n in _block_sizes(block):
            yield rng.random(n).tolist()

    return itertools.chain.from_iterable(blocks()).__next__
