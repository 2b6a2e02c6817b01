"""The engine: simulation context, seeded streams, block sampling, timers."""

from .calls import call_later
from .context import SimContext, name_key
from .sampling import Sampler, UniformStream, draw_block
from .timers import FixedDelayTimers

__all__ = ["call_later", "FixedDelayTimers", "Sampler", "SimContext", "UniformStream", "draw_block", "name_key"]
