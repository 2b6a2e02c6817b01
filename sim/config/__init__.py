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
    Output,
    RateStep,
    Region,
    Route,
    Service,
    StrictModel,
    Topology,
    Workload,
)
from .naming import backend_name, gateway_name

__all__ = [
    "Balancer", "ClientPopulation", "Cluster", "ConfigError", "Constant", "Distribution", "Empirical",
    "Experiment", "Exponential", "Gamma", "GatewayPool", "Issue", "LeastRequestLbConfig",
    "LoadedExperiment", "Lognormal", "Network", "Output", "RateStep", "Region", "Route", "Service",
    "StrictModel", "Topology", "Uniform", "Workload", "backend_name", "dump_resolved", "gateway_name",
    "json_schema", "load_experiment", "load_topology",
]
