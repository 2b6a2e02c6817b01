"""A real Envoy as the reference gateway: configs generated from fleetsim's own models."""

from .envoy_config import envoy_bootstrap, envoy_command, write_bootstrap

__all__ = ["envoy_bootstrap", "envoy_command", "write_bootstrap"]
