"""Error detection side by side: a byte sum, the Internet checksum, CRC-32, SHA-1.

Theory of operation.  Each check maps the bytes of a message to a short
value; the receiver recomputes it and compares.  What a check *guarantees*
(every error of a given shape is caught) and what it *misses by chance*
(a random error that happens to leave the value unchanged) differ a lot:

* :func:`byte_sum` - the bytes added up modulo 2**16 (the course's "simple
  sum").  Misses any two flips of the same bit, one 1->0 and one 0->1.
* :func:`internet_checksum` - RFC 1071, used by IPv4, UDP and TCP: the
  ones'-complement sum of 16-bit words, complemented.  Catches every single
  bit error and every burst of up to 15 bits; misses about 2**-16 of random
  damage, and some 2-bit patterns (the same bit, 1->0 and 0->1, in two
  words at the same position: bytes an even distance apart).
* :func:`crc32` - the CRC-32 of Ethernet (IEEE 802.3), via :mod:`zlib`.
  At Ethernet frame sizes it catches every error of 1, 2 or 3 bits, every
  odd number of bit errors, and every burst of up to 32 bits; random damage
  slips through with about 2**-32.
* :func:`sha1` - a cryptographic hash (160 bits).  No burst guarantee at
  all, but random damage slips through with about 2**-160.  Broken as a
  *security* hash since 2017 (SHAttered: two different PDFs with the same
  SHA-1); against an attacker no unkeyed check helps anyway.

:func:`detection_table` measures how many damaged copies each check misses,
for random flips and for bursts, with a seeded generator (the same numbers
on every run); :func:`cost_per_mb` measures how long each takes per megabyte.
Standard library only.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
import zlib
from dataclasses import dataclass, field

from .text import Shown

__all__ = [
    "byte_sum", "internet_checksum", "crc32", "sha1", "CHECKS", "GUARANTEES",
    "flip", "random_flips", "burst", "internet_blind_flips", "Compared", "compare",
    "DetectionTable", "detection_table", "CostTable", "cost_per_mb",
]


def byte_sum(data: bytes) -> int:
    """The bytes added up, modulo 65536: the course's "simple sum"."""
    return sum(data) % 65536


def internet_checksum(data: bytes) -> int:
    """The Internet checksum of RFC 1071 (IPv4, UDP, TCP).

    Add the data as 16-bit big-endian words (an odd last byte is padded with
    a zero byte) in ones'-complement arithmetic: a carry out of bit 15 is
    added back in at bit 0.  The checksum is the complement of that sum.
    A receiver that sums the data *and* the checksum gets 0xFFFF."""
    if len(data) % 2:
        data = data + b"\x00"
    # RFC 1071 §2(B): the ones'-complement sum does not depend on byte
    # order, so add native-order words (fast) and swap the result if needed.
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if sys.byteorder == "little":
        total = ((total & 0xFF) << 8) | (total >> 8)
    return ~total & 0xFFFF


def crc32(data: bytes) -> int:
    """CRC-32 (the polynomial of Ethernet, zip and PNG), via :func:`zlib.crc32`."""
    return zlib.crc32(data) & 0xFFFFFFFF


def sha1(data: bytes) -> str:
    """SHA-1 as 40 lowercase hex digits (what the mail protocol puts after ``#``)."""
    return hashlib.sha1(data).hexdigest()


# name -> (function, how its value is written)
CHECKS = {
    "byte sum": (byte_sum, "{:04x}"),
    "Internet checksum": (internet_checksum, "{:04x}"),
    "CRC-32": (crc32, "{:08x}"),
    "SHA-1": (sha1, "{}"),
}

# What each check guarantees, and what it lets through by chance.
GUARANTEES = {
    "byte sum": ("16 bits; every single-bit error",
                 "misses two flips of the same bit that cancel (one 1->0, one 0->1)"),
    "Internet checksum": ("16 bits (RFC 1071); every single-bit error, every burst up to 15 bits",
                          "misses about 2^-16 of random damage, and 2-bit errors that cancel "
                          "in the same bit of two 16-bit words"),
    "CRC-32": ("32 bits; at Ethernet frame sizes every 1-, 2- and 3-bit error, every odd "
               "number of bit errors, every burst up to 32 bits",
               "misses about 2^-32 of random damage"),
    "SHA-1": ("160 bits; no burst guarantee",
              "misses about 2^-160 of random damage; broken against attackers (SHAttered, 2017)"),
}


# --------------------------------------------------------------------------
# Damage


def flip(data: bytes, flips) -> bytes:
    """*data* with each ``(byte, bit)`` of *flips* inverted (bit 0 is worth 1)."""
    out = bytearray(data)
    for byte, bit in flips:
        out[byte] ^= 1 << bit
    return bytes(out)


def random_flips(rng: random.Random, size: int, n: int) -> list[tuple[int, int]]:
    """*n* different random bit positions in *size* bytes."""
    return [(p // 8, p % 8) for p in rng.sample(range(8 * size), n)]


def burst(rng: random.Random, size: int, length: int) -> list[tuple[int, int]]:
    """A random burst of *length* bits: its first and last bits are flipped,
    the bits between them at random (the usual definition of a burst).
    Bit positions count through the data byte by byte, bit 7 first, as
    bits leave on a serial line."""
    start = rng.randrange(8 * size - length + 1)
    inner = [i for i in range(1, length - 1) if rng.random() < 0.5]
    positions = [start] + [start + i for i in inner] + ([start + length - 1] if length > 1 else [])
    return [(p // 8, 7 - p % 8) for p in positions]


def internet_blind_flips(data: bytes, start: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two bit flips that the Internet checksum cannot see: the same bit goes
    1->0 in one byte and 0->1 in another byte an even distance away, so both
    sit at the same place in their 16-bit words and the sum is unchanged.
    Searches from byte *start*."""
    for bit in range(8):
        for i in range(start, len(data)):
            for j in range(i + 2, len(data), 2):
                a, b = data[i] >> bit & 1, data[j] >> bit & 1
                if a != b:
                    return ((i, bit), (j, bit))
    raise ValueError("no two bytes an even distance apart differ in any bit")


# --------------------------------------------------------------------------
# Side by side




@dataclass(repr=False)
class Compared(Shown):
    """Each check on the original and on the damaged copy: caught or missed."""

    rows: list[tuple[str, str, str, bool]]     # name, before, after, caught

    @property
    def text(self) -> str:
        lines = [f"{'check':<18} {'original':<12} {'damaged':<12} verdict"]
        for name, before, after, caught in self.rows:
            b, a = (before[:10] + "…", after[:10] + "…") if len(before) > 12 else (before, after)
            lines.append(f"{name:<18} {b:<12} {a:<12} {'caught' if caught else 'MISSED'}")
        return "\n".join(lines)


def compare(original: bytes, damaged: bytes, checks=None) -> Compared:
    """Compute every check (or those named in *checks*) on both copies."""
    rows = []
    for name in checks or CHECKS:
        fn, fmt = CHECKS[name]
        before, after = fmt.format(fn(original)), fmt.format(fn(damaged))
        rows.append((name, before, after, before != after))
    return Compared(rows)


@dataclass(repr=False)
class DetectionTable(Shown):
    """How many damaged copies each check missed, per kind of damage."""

    size: int
    trials: int
    kinds: list[str] = field(default_factory=list)
    missed: dict[str, list[int]] = field(default_factory=dict)    # check -> per kind

    @property
    def text(self) -> str:
        width = max(len(k) for k in self.kinds)
        lines = [f"{self.trials} damaged copies of a {self.size}-byte frame per kind of damage; "
                 f"how many each check MISSED:",
                 f"{'damage':<{width}}  " + "  ".join(f"{n:>17}" for n in self.missed)]
        for i, kind in enumerate(self.kinds):
            lines.append(f"{kind:<{width}}  " + "  ".join(f"{m[i]:>17}" for m in self.missed.values()))
        return "\n".join(lines)


DAMAGE = {
    "1 random bit": lambda rng, size: random_flips(rng, size, 1),
    "2 random bits": lambda rng, size: random_flips(rng, size, 2),
    "3 random bits": lambda rng, size: random_flips(rng, size, 3),
    "burst of 16 bits": lambda rng, size: burst(rng, size, 16),
    "burst of 32 bits": lambda rng, size: burst(rng, size, 32),
    "burst of 100 bits": lambda rng, size: burst(rng, size, 100),
    "random bytes (8)": lambda rng, size: [(b, bit) for b in rng.sample(range(size), 8)
                                          for bit in range(8) if rng.random() < 0.5],
}


def detection_table(data: bytes, *, trials: int = 2000, seed: int = 1071,
                    kinds=None) -> DetectionTable:
    """Damage *data* *trials* times per kind of damage (a seeded generator:
    the same numbers on every run) and count, for every check, the damaged
    copies whose value did not change: the errors it MISSED."""
    rng = random.Random(seed)
    kinds = list(kinds or DAMAGE)
    table = DetectionTable(len(data), trials, kinds, {name: [] for name in CHECKS})
    originals = {name: fn(data) for name, (fn, _) in CHECKS.items()}
    for kind in kinds:
        missed = dict.fromkeys(CHECKS, 0)
        for _ in range(trials):
            flips = DAMAGE[kind](rng, len(data))
            damaged = flip(data, flips)
            if damaged == data:
                continue
            for name, (fn, _) in CHECKS.items():
                if fn(damaged) == originals[name]:
                    missed[name] += 1
        for name in CHECKS:
            table.missed[name].append(missed[name])
    return table


@dataclass(repr=False)
class CostTable(Shown):
    """Milliseconds per megabyte, per check (measured: varies run to run)."""

    ms_per_mb: dict[str, float]

    @property
    def text(self) -> str:
        return "\n".join(f"{name:<18} {ms:.1f} ms per MB" for name, ms in self.ms_per_mb.items())


def cost_per_mb(*, megabytes: int = 1, repeat: int = 3, seed: int = 1) -> CostTable:
    """Time each check over *megabytes* MB of random bytes (best of *repeat*).

    These are Python's implementations: zlib's CRC-32 and hashlib's SHA-1 run
    in C; the Internet checksum here adds Python ints.  In an operating
    system (or a network card, which often computes it in hardware) the
    Internet checksum is the cheapest of them."""
    data = random.Random(seed).randbytes(megabytes * 1_000_000)
    result = {}
    for name, (fn, _) in CHECKS.items():
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            fn(data)
            best = min(best, time.perf_counter() - started)
        result[name] = best * 1000 / megabytes
    return CostTable(result)
