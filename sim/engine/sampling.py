"""Block-sampled random variates from configuration distributions.

A :class:`Sampler` draws a block of variates with numpy and hands them out one
at a time as Python floats: numpy's vectorised generators are far cheaper per
variate than scalar calls, and Python floats keep the hot path's arithmetic and
heap comparisons fast (numpy scalars lose half the gain, see DESIGN.md).
"""

from __future__ import annotations

import numpy as np

from sim.config.distributions import Constant, Empirical, Exponential, Gamma, Lognormal, Uniform

BLOCK = 4096


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
    if isinstance(dist, Empirical):
        ps = np.array([p for p, _ in dist.quantiles])
        vs = np.array([v for _, v in dist.quantiles])
        return np.interp(rng.random(n), ps, vs)
    if isinstance(dist, Constant):
        return np.full(n, dist.value)
    raise TypeError(f"unknown distribution {dist!r}")


class Sampler:
    """Draws from one distribution with one generator, a block at a time.

    Call :meth:`draw` (bind it to a local in hot loops). A constant
    distribution never touches the generator, so switching a field between a
    constant and a random distribution does not shift anyone else's draws.
    """

    __slots__ = ("dist", "rng", "block", "_buf", "draw", "mean")

    def __init__(self, dist, rng: np.random.Generator, block: int = BLOCK):
        self.dist = dist
        self.rng = rng
        self.block = block
        self.mean = dist.mean
        self._buf: list[float] = []
        if isinstance(dist, Constant):
            value = float(dist.value)
            self.draw = lambda: value
        else:
            self.draw = self._draw

    def _draw(self) -> float:
        try:
            return self._buf.pop()
        except IndexError:
            self._buf = draw_block(self.dist, self.rng, self.block).tolist()
            return self._buf.pop()

    def __repr__(self) -> str:
        return f"Sampler({self.dist!r})"


class UniformStream:
    """Uniform [0, 1) floats drawn in blocks (for choices and coin flips)."""

    __slots__ = ("rng", "block", "_buf")

    def __init__(self, rng: np.random.Generator, block: int = BLOCK):
        self.rng = rng
        self.block = block
        self._buf: list[float] = []

    def __call__(self) -> float:
        try:
            return self._buf.pop()
        except IndexError:
            self._buf = self.rng.random(self.block).tolist()
            return self._buf.pop()
