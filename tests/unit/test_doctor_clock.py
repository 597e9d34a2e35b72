"""The doctor's clock line from the time, the kernel's sync status and timesyncd's flag."""

from __future__ import annotations

import pytest

from edged.doctor import FAIL, OK, SANE_CLOCK_AFTER, WARN, clock_check

NOW = SANE_CLOCK_AFTER + 86400.0


@pytest.mark.parametrize(
    ("now", "kernel", "timesyncd", "status"),
    [
        (NOW, True, False, OK),
        (NOW, None, True, OK),  # the kernel cannot be asked (seccomp): timesyncd's word
        (NOW, None, False, WARN),
        (NOW, False, True, WARN),  # the kernel's word wins
        (NOW, False, False, WARN),
        (SANE_CLOCK_AFTER - 1.0, True, True, FAIL),
    ],
)
def test_clock_check(now: float, kernel: bool | None, timesyncd: bool, status: str) -> None:
    check = clock_check(now, kernel, timesyncd)
    assert check.status == status
    assert check.advice or status == OK


def test_an_unsynchronized_kernel_clock_is_named() -> None:
    check = clock_check(NOW, False, False)
    assert "not synchronized" in check.detail
    assert "NTP" in check.advice
