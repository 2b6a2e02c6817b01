"""How the reports print numbers: decimals per table column, ± half-widths, bytes, units.

Every table of the reports formats its numbers here, so one rule holds
everywhere:

* **One precision per column.**  :class:`Column` picks the decimals once for
  every row of a table column (:func:`column_decimals`): from the 95 %
  half-widths when the column has any (enough decimals that each row's
  half-width keeps its first significant digit, two digits when that digit is
  1 or 2, and at most one decimal more than the values' size asks for), else
  from the largest value's size; whole counts print without decimals, counts
  averaged over replications with one.
* **Bytes in decimal SI units** (1 kB = 1,000 B): ``B``, ``kB``, ``MB``,
  ``GB``, ``TB`` (:func:`fmt_bytes`, :func:`bytes_unit`); never ``B`` for
  billions.
* **Counts averaged over replications say so**: :data:`MEAN_PER_REPLICATION`
  is the label (see :func:`sim.report.common.count_label`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The label of a count (or total) that is the mean over several replications.
MEAN_PER_REPLICATION = "mean per replication"

#: At most this many decimals in any table cell.
MAX_DECIMALS = 4

#: Decimal byte units, smallest first (1 kB = 1,000 B).
BYTE_UNITS = ("B", "kB", "MB", "GB", "TB")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def magnitude_decimals(value: float) -> int:
    """Decimals for a value without a half-width, from its size.

    Args:
        value: The (largest) value of a column.

    Returns:
        1 from 10 up, 2 from 1, 3 from 0.01, 4 below; 0 for zero.
    """
    a = abs(value)
    if a == 0:
        return 0
    if a >= 10:
        return 1
    if a >= 1:
        return 2
    if a >= 0.01:
        return 3
    return MAX_DECIMALS


def half_width_decimals(hw: float) -> int | None:
    """Decimals that keep a 95 % half-width's first significant digit (two when it is 1 or 2).

    ``0.024`` needs 2 (``0.02``), ``0.13`` needs 2 (``0.13``), ``1.42`` needs 1
    (``1.4``), ``9.15`` needs 0 (``9``), ``598.8`` needs 0 (``599``).

    Args:
        hw: The half-width.

    Returns:
        The decimals (0 to :data:`MAX_DECIMALS`); ``None`` for a zero or missing half-width.
    """
    hw = abs(hw)
    if not hw or not math.isfinite(hw):
        return None
    exponent = math.floor(math.log10(hw))
    leading = hw / 10 ** exponent
    digits = 2 if leading < 3 else 1
    return max(0, min(MAX_DECIMALS, digits - 1 - exponent))


def column_decimals(values: Iterable[Any], cis: Iterable[Any] = (), *,
                    integer: bool = False) -> int:
    """The decimals every row of one table column is printed with.

    Args:
        values: The column's values, already scaled (non-numbers are ignored).
        cis: Their 95 % half-widths, already scaled (missing ones are ignored).
        integer: The column holds counts (or totals averaged over replications).

    Returns:
        From the half-widths when any is positive: the most any row needs
        (:func:`half_width_decimals`), but at most one more than the largest
        value's size asks for (:func:`magnitude_decimals`).  Without
        half-widths: 0 for whole counts, 1 for counts averaged over
        replications, else from the largest value's size.
    """
    nums = [v for v in map(_finite, values) if v is not None]
    by_size = magnitude_decimals(max((abs(v) for v in nums), default=0.0))
    needed = [d for d in (half_width_decimals(h) for h in map(_finite, cis) if h is not None)
              if d is not None]
    if needed:
        # A tiny half-width in one row must not print every row to the microsecond.
        return min(max(needed), by_size + 1)
    if integer:
        return 0 if all(v == int(v) for v in nums) else 1
    return by_size


def fmt_fixed(value: float, decimals: int) -> str:
    """``value`` with thousands separators and ``decimals`` decimals (never ``-0``)."""
    text = f"{value:,.{decimals}f}"
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text


def fmt_value(value: Any, ci: Any = None, *, scale: float = 1.0, integer: bool = False,
              decimals: int | None = None) -> str:
    """Format a number as plain text, ``"value ± half-width"`` when ``ci`` is numeric.

    Args:
        value: The number (anything else is printed as text, ``None`` as "—").
        ci: Its 95 % half-width, or ``None``; a zero half-width (the
            replications agreed) is left out.
        scale: Multiplies value and half-width (100 for percent).
        integer: A count: whole values print without decimals.
        decimals: The column's decimals (:class:`Column`); ``None`` picks them
            for this value alone, with the rule of :func:`column_decimals`.

    Returns:
        The text, e.g. ``"2,000.1 ± 3.2"``, ``"120,000"``, ``"—"``.
    """
    v = _finite(value)
    if v is None:
        return "—" if value is None or isinstance(value, (int, float)) else str(value)
    v *= scale
    hw = _finite(ci)
    if hw is not None:
        hw = abs(hw) * scale
    if decimals is None:
        decimals = column_decimals([v], [hw] if hw is not None else [], integer=integer)
    if hw:  # a zero half-width (every replication agreed) is not printed
        return f"{fmt_fixed(v, decimals)} ± {fmt_fixed(hw, decimals)}"
    return fmt_fixed(v, decimals)


@dataclass(frozen=True)
class Column:
    """One table column's number format: the same decimals (and scale) for every row."""

    decimals: int
    scale: float = 1.0

    @classmethod
    def of(cls, values: Iterable[Any], cis: Iterable[Any] = (), *, scale: float = 1.0,
           integer: bool = False, decimals: int | None = None) -> Column:
        """The format of a column holding ``values`` with half-widths ``cis``.

        Args:
            values: Every value of the column, unscaled (non-numbers are ignored).
            cis: Their half-widths, unscaled (``None`` for none).
            scale: Multiplies values and half-widths when printed (100 for percent).
            integer: The column holds counts.
            decimals: A fixed number of decimals instead of the rule.

        Returns:
            The column format.
        """
        if decimals is None:
            scaled = [v * scale for v in map(_finite, values) if v is not None]
            scaled_cis = [abs(h) * scale for h in map(_finite, cis) if h is not None]
            decimals = column_decimals(scaled, scaled_cis, integer=integer)
        return cls(decimals, scale)

    def __call__(self, value: Any, ci: Any = None) -> str:
        """``value`` (± ``ci``) in this column's format, as plain text."""
        return fmt_value(value, ci, scale=self.scale, decimals=self.decimals)


def bytes_unit(n: float) -> tuple[str, float]:
    """The decimal unit to print ``n`` bytes in, and its size in bytes.

    Args:
        n: A byte count (the largest of a set printed together).

    Returns:
        ``("MB", 1e6)`` for 646e6, ``("B", 1.0)`` below 1,000.
    """
    factor = 1.0
    for unit in BYTE_UNITS:
        if abs(n) < 1000 * factor or unit == BYTE_UNITS[-1]:
            return unit, factor
        factor *= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def bytes_decimals(values: Iterable[float], unit: tuple[str, float]) -> int:
    """Decimals for byte counts printed in ``unit``: at least three significant digits for the largest.

    Args:
        values: The byte counts printed together (a column).
        unit: Their unit, from :func:`bytes_unit`.

    Returns:
        0 in bytes; else 2 when the largest is below 10 units ("1.04 GB"), else 1.
    """
    name, factor = unit
    if name == "B":
        return 0
    largest = max((abs(v) for v in values), default=0.0) / factor
    return 2 if largest < 10 else 1


def fmt_bytes(n: float, unit: tuple[str, float] | None = None,
              decimals: int | None = None) -> str:
    """A byte count in decimal units, with at least three significant digits.

    Args:
        n: The bytes.
        unit: A unit from :func:`bytes_unit` to use instead of ``n``'s own
            (so a column shares one unit).
        decimals: The decimals (a column's, :func:`bytes_decimals`); ``None``
            picks them for ``n`` alone.

    Returns:
        For example ``"646.2 MB"``, ``"1.04 GB"``, ``"6.80 kB"``, ``"512 B"``.
    """
    unit = unit or bytes_unit(n)
    if decimals is None:
        decimals = bytes_decimals([n], unit)
    name, factor = unit
    return f"{fmt_fixed(n / factor, decimals)} {name}"
