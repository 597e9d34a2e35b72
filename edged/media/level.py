"""The sound level of a stream, pure: the peak of float samples and its dBFS, over each second.

`edged_audio_level_dbfs` reads the peak of the last whole second of captured sound. Digital
silence (and anything quieter than -120 dBFS) reads `FLOOR_DBFS`, not -Inf, so that sums, averages
and graphs stay finite; the silence alert's threshold (-60 dBFS) is far above it.

The peak is found without a Python loop over the samples (numpy is not a dependency, and a loop
costs ~1 % of a core at 48 kHz stereo): a float's magnitude orders like its top 16 bits with the
sign cleared, and bytes' C-speed `translate` finds the largest of those by bisection. The peak is
thus truncated to 8 bits of mantissa: at most 0.07 dB under the true value.
"""

from __future__ import annotations

import math
import struct
import sys

FLOOR_DBFS = -120.0
_FLOOR_PEAK = 10 ** (FLOOR_DBFS / 20)
SAMPLE_BYTES = 4  # float32, the machine's order (FFmpeg's flt and fltp)
_HIGH, _NEXT = (3, 2) if sys.byteorder == "little" else (0, 1)  # where a float's top two bytes sit
_SIGN_CLEARED = bytes(value & 0x7F for value in range(256))
_BELOW = [bytes(range(value)) for value in range(256)]
_ONLY = [bytes(0xFF if byte == value else 0 for byte in range(256)) for value in range(256)]


def _largest_byte(data: bytes, top: int = 255) -> int:
    """The largest byte of `data` (0 when empty): bisection on "is any byte at least v"."""
    low, high = 0, top
    while low < high:
        middle = (low + high + 1) // 2
        if data.translate(None, _BELOW[middle]):  # what is left is at least `middle`
            low = middle
        else:
            high = middle - 1
    return low


def peak(samples: bytes | bytearray | memoryview) -> float:
    """The largest magnitude of float32 samples (machine order), truncated to 8 bits of
    mantissa (never above the true peak, at most 0.07 dB under it)."""
    data = bytes(samples)
    data = data[: len(data) - len(data) % SAMPLE_BYTES]
    if not data:
        return 0.0
    high = data[_HIGH::SAMPLE_BYTES].translate(_SIGN_CLEARED)
    top = _largest_byte(high, 0x7F)
    chosen = high.translate(_ONLY[top])  # 0xFF where the top byte is the largest, else 0
    following = data[_NEXT::SAMPLE_BYTES]
    # A bytewise AND at C speed, through integers (the byte order is the same both ways).
    masked = int.from_bytes(chosen, "little") & int.from_bytes(following, "little")
    second = _largest_byte(masked.to_bytes(len(chosen), "little"))
    (value,) = struct.unpack(">f", bytes((top, second, 0, 0)))
    return float(value)


def dbfs(amplitude: float) -> float:
    """A peak amplitude (1.0 = full scale) in dBFS, `FLOOR_DBFS` for silence."""
    if not amplitude > _FLOOR_PEAK:  # also NaN
        return FLOOR_DBFS
    return 20 * math.log10(amplitude)


class LevelMeter:
    """The peak over consecutive whole seconds of samples: `add` each buffer's length and peak;
    it returns the second's level in dBFS when a second is complete, else None."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._samples = 0
        self._peak = 0.0

    def add(self, samples: int, amplitude: float) -> float | None:
        self._samples += samples
        self._peak = max(self._peak, amplitude)
        if self._samples < self.rate:
            return None
        level = dbfs(self._peak)
        self._samples, self._peak = 0, 0.0
        return level
