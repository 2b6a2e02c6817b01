"""The engine: simulation context, seeded streams, block sampling, timers."""

from .context import SimContext, name_key
from .sampling import Sampler, UniformStream, draw_block
from .timers import FixedDelayTimers

__all__ = ["FixedDelayTimers", "Sampler", "SimContext", "UniformStream", "draw_block", "name_key"]
