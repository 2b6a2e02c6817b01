"""Configuration: the schema (pydantic v2) and the loader (the only YAML reader)."""

from .distributions import Constant, Distribution, Empirical, Exponential, Gamma, Lognormal, Uniform
from .errors import ConfigError, Issue
from .loader import LoadedExperiment, dump_resolved, json_schema, load_experiment, load_topology
from .models import (
    Balancer,
    ClientPopulation,
    Cluster,
    Experiment,
    GatewayPool,
    LeastRequestLbConfig,
    Network,
    RateStep,
    Region,
    Route,
    Service,
    Topology,
    Workload,
)

__all__ = [
    "Balancer", "ClientPopulation", "Cluster", "ConfigError", "Constant", "Distribution", "Empirical",
    "Experiment", "Exponential", "Gamma", "GatewayPool", "Issue", "LeastRequestLbConfig",
    "LoadedExperiment", "Lognormal", "Network", "RateStep", "Region", "Route", "Service", "Topology",
    "Uniform", "Workload", "dump_resolved", "json_schema", "load_experiment", "load_topology",
]
