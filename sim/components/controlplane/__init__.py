"""The xDS control plane: replicas, debounced pushes (state of the world or delta), subscribed gateways.

``server.py`` holds the component (:class:`ControlPlane`), ``resources.py``
the configuration's versions and the closed form of a response's bytes.
"""

from .resources import ConfigStore, Version, response
from .server import ControlPlane, nearest_rank

__all__ = ["ConfigStore", "ControlPlane", "Version", "nearest_rank", "response"]
