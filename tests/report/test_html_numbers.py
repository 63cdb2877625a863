"""Numbers in HTML report tables: grouped digits, never an exponent for a cost or a count."""

import pytest

from fleetwise.report.html import _fmt


@pytest.mark.parametrize("value, shown", [
    (12345.6, "12,346"), (99999.9, "100,000"), (123456.7, "123,457"), (9999.4, "9,999"), (1234.5, "1,234"),
    (0.01234, "0.01234"), (float("nan"), "-"), (None, "-"), (7, "7"),
])
def test_numbers_read_as_numbers(value, shown):
    assert _fmt(value) == shown
    assert "e+" not in _fmt(value)
