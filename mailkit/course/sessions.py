"""Session ids and session expiry (notebook 02): ids drawn the 2017 way,
from :mod:`random`, can be predicted; a fake clock expires a session
without waiting."""

from __future__ import annotations

import random

__all__ = ["SessionIds2017", "clone_random", "untemper", "FakeClock"]


class SessionIds2017:
    """Session ids the way a 2017 server could have drawn them: from
    :mod:`random` (the Mersenne Twister), 32 bits written as ten digits."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)

    def new_id(self) -> str:
        return f"{self._rng.getrandbits(32):010d}"


def _unshift_right(y: int, shift: int) -> int:
    x = y
    for _ in range(32 // shift + 1):
        x = y ^ (x >> shift)
    return x & 0xFFFFFFFF


def _unshift_left(y: int, shift: int, mask: int) -> int:
    x = y
    for _ in range(32 // shift + 1):
        x = y ^ ((x << shift) & mask)
    return x & 0xFFFFFFFF


def untemper(y: int) -> int:
    """Undo the Mersenne Twister's output tempering: one word of its state."""
    y = _unshift_right(y, 18)
    y = _unshift_left(y, 15, 0xEFC60000)
    y = _unshift_left(y, 7, 0x9D2C5680)
    return _unshift_right(y, 11)


def clone_random(ids: list[str]) -> random.Random:
    """Rebuild a Mersenne Twister from 624 of its 32-bit outputs (here, ten
    digit session ids): it then predicts every id that comes after them."""
    if len(ids) < 624:
        raise ValueError(f"need 624 consecutive outputs, got {len(ids)}")
    state = tuple(untemper(int(i)) for i in ids[-624:])
    clone = random.Random()
    clone.setstate((3, state + (624,), None))
    return clone



class FakeClock:
    """A clock for a :class:`~mailkit.store.MailStore` that moves only when
    told: ``clock.advance(31 * 60)`` is half an hour later, without waiting."""

    def __init__(self, start: float = 1_500_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
