"""Probability distributions as configuration data.

A distribution is a tagged mapping in YAML, ``{dist: exponential, mean: 0.01}``;
a bare number is shorthand for a constant. The models here only describe a
distribution and know its mean; drawing variates is the engine's job
(:mod:`sim.engine.sampling`), so configuration never draws.

Units are those of the field that holds the distribution (``service_time_s``
is in seconds, ``request_bytes`` in bytes).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

#: Standard normal quantile at 0.99, used to turn a p99 into a lognormal sigma.
Z_99 = 2.3263478740408408


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def mean(self) -> float:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class Constant(_Dist):
    """Always ``value``."""

    dist: Literal["constant"] = "constant"
    value: float = Field(ge=0)

    @property
    def mean(self) -> float:
        """The mean: ``value``."""
        return self.value


class Exponential(_Dist):
    """Exponential with the given ``mean`` (rate 1/mean)."""

    dist: Literal["exponential"] = "exponential"
    mean_value: float = Field(gt=0, alias="mean")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def mean(self) -> float:
        """The mean, as given."""
        return self.mean_value


class Lognormal(_Dist):
    """Lognormal given by its ``median`` and its 99th percentile ``p99``.

    mu = ln(median), sigma = ln(p99 / median) / z_0.99; mean = exp(mu + sigma^2 / 2).
    """

    dist: Literal["lognormal"] = "lognormal"
    median: float = Field(gt=0)
    p99: float = Field(gt=0)

    @model_validator(mode="after")
    def _p99_above_median(self) -> Lognormal:
        if self.p99 <= self.median:
            raise ValueError(f"p99 ({self.p99}) must be greater than median ({self.median})")
        return self

    @property
    def mu(self) -> float:
        """Location of the underlying normal: ln(median)."""
        return math.log(self.median)

    @property
    def sigma(self) -> float:
        """Scale of the underlying normal: ln(p99 / median) / z_0.99."""
        return math.log(self.p99 / self.median) / Z_99

    @property
    def mean(self) -> float:
        """The mean: exp(mu + sigma^2 / 2)."""
        return math.exp(self.mu + self.sigma**2 / 2)


class Gamma(_Dist):
    """Gamma given by its ``mean`` and coefficient of variation ``cv``.

    shape = 1 / cv^2, scale = mean * cv^2 (cv = 1 is the exponential).
    """

    dist: Literal["gamma"] = "gamma"
    mean_value: float = Field(gt=0, alias="mean")
    cv: float = Field(gt=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def shape(self) -> float:
        """Shape k = 1 / cv^2."""
        return 1.0 / self.cv**2

    @property
    def scale(self) -> float:
        """Scale theta = mean x cv^2."""
        return self.mean_value * self.cv**2

    @property
    def mean(self) -> float:
        """The mean, as given."""
        return self.mean_value


class Uniform(_Dist):
    """Uniform on [low, high)."""

    dist: Literal["uniform"] = "uniform"
    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must not be below low ({self.low})")
        return self

    @property
    def mean(self) -> float:
        """The mean: the middle of [low, high)."""
        return (self.low + self.high) / 2


class Empirical(_Dist):
    """A quantile table ``[[p, value], ...]``; values between rows are interpolated.

    The first row must have p = 0 and the last p = 1; both columns non-decreasing.
    The mean is the integral of the piecewise-linear quantile function.
    """

    dist: Literal["empirical"] = "empirical"
    quantiles: list[tuple[float, float]] = Field(min_length=2)

    @model_validator(mode="after")
    def _table(self) -> Empirical:
        ps = [p for p, _ in self.quantiles]
        vs = [v for _, v in self.quantiles]
        if ps[0] != 0.0 or ps[-1] != 1.0:
            raise ValueError(f"quantiles must run from p=0 to p=1, got p={ps[0]}..{ps[-1]}")
        if any(b < a for a, b in zip(ps, ps[1:], strict=False)):
            raise ValueError("quantile probabilities must be non-decreasing")
        if any(b < a for a, b in zip(vs, vs[1:], strict=False)):
            raise ValueError("quantile values must be non-decreasing")
        if vs[0] < 0:
            raise ValueError(f"values must be >= 0, got {vs[0]}")
        return self

    @property
    def mean(self) -> float:
        """The mean: the integral of the piecewise-linear quantile function."""
        q = self.quantiles
        return sum((p1 - p0) * (v0 + v1) / 2 for (p0, v0), (p1, v1) in zip(q, q[1:], strict=False))


def _number_is_constant(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return {"dist": "constant", "value": value}
    return value


Distribution = Annotated[
    Union[Constant, Exponential, Lognormal, Gamma, Uniform, Empirical],  # noqa: UP007
    Field(discriminator="dist"),
    BeforeValidator(_number_is_constant),
]
"""Any distribution; in YAML a tagged mapping or a bare number (a constant)."""
