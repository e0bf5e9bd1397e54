"""The Kubernetes quantity grammar shared by metric targets, CPU, memory and GPU amounts."""

from decimal import Decimal

import pytest

from tiffin.core.quantity import cpu_millicores, memory_bytes, parse_quantity, positive_quantity, whole_count


@pytest.mark.parametrize(
    ("value", "amount"),
    [
        ("80", "80"),
        ("4", "4"),
        ("1.5", "1.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("+3", "3"),
        ("-2", "-2"),
        (" 7 ", "7"),
        ("500m", "0.5"),
        ("250u", "0.00025"),
        ("3n", "0.000000003"),
        ("2k", "2000"),
        ("1M", "1000000"),
        ("1G", "1000000000"),
        ("1T", "1000000000000"),
        ("1P", "1000000000000000"),
        ("1E", "1000000000000000000"),
        ("1Ki", "1024"),
        ("1.5Gi", str(3 * 2**29)),
        ("2Ti", str(2 * 2**40)),
        ("1Pi", str(2**50)),
        ("1Ei", str(2**60)),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("25e-1", "2.5"),
        ("1e+2", "100"),
        (4, "4"),
        (0, "0"),
        (2.5, "2.5"),
        (1e-07, "0.0000001"),
    ],
)
def test_quantities(value: object, amount: str) -> None:
    assert parse_quantity(value) == Decimal(amount)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "ten",
        "10%",
        "1.2.3",
        "1..2",
        "..5",
        "Gi",
        "m",
        "1gi",
        "1KI",
        "4GB",
        "1K",  # Kubernetes spells kilo `k`
        "1 Gi",
        "1e",
        "1e1.5",
        "1e1234",
        "0x10",
        "1_000",
        "١٢",  # non-ASCII digits
        "9" * 65,
        True,
        False,
        None,
        float("nan"),
        float("inf"),
        [4],
        {"value": 4},
        b"4",
    ],
)
def test_not_quantities(value: object) -> None:
    assert parse_quantity(value) is None


@pytest.mark.parametrize(("value", "target"), [("80", 80.0), ("500m", 0.5), (3, 3.0), ("1e-3", 0.001)])
def test_positive_quantities(value: object, target: float) -> None:
    assert positive_quantity(value) == target


@pytest.mark.parametrize("value", ["0", "0m", 0, -1, "-0.5", "ten", None])
def test_zero_negative_and_garbage_are_not_positive(value: object) -> None:
    assert positive_quantity(value) is None


@pytest.mark.parametrize(
    ("value", "count"),
    [(0, 0), (2, 2), ("2", 2), ("1e1", 10), ("2k", 2000), ("0.5", None), (-1, None), (True, None)],
)
def test_whole_counts(value: object, count: int | None) -> None:
    assert whole_count(value) == count


@pytest.mark.parametrize(("value", "millicores"), [("500m", 500), (2, 2000), ("0.25", 250), ("0.5m", None)])
def test_cpu_in_millicores(value: object, millicores: int | None) -> None:
    assert cpu_millicores(value) == millicores


@pytest.mark.parametrize(("value", "size"), [("1Ki", 1024), ("1K", 1000), ("4 Gi", 4 * 2**30), ("1.5", None)])
def test_memory_in_bytes(value: object, size: int | None) -> None:
    assert memory_bytes(value) == size
