"""Checksums and retries (notebook 04): a checksum that misses flips, and
how often a mail gets through when every attempt may be corrupted."""

from __future__ import annotations

from .. import protocol as P
from ..noise import BitFlipChannel
from ..server import REPLIES, MailServer

__all__ = ["simple_sum", "sum_blind_flips", "crc32_blind_flips", "analytic_delivery",
           "simulate_delivery"]

# CRC-32's generator (IEEE 802.3, the one zlib.crc32 uses), x^32 term included:
# 15 terms, so it is not divisible by x + 1 and an odd number of flips can slip through.
CRC32_GENERATOR = 0x104C11DB7


def simple_sum(data: bytes) -> int:
    """A simple checksum: the sum of the bytes, modulo 65536."""
    return sum(data) % 65536


def sum_blind_flips(data: bytes, start: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two bit flips that :func:`simple_sum` cannot see: the same bit turns
    from 1 to 0 in one byte and from 0 to 1 in a later one, so the sum stays
    the same.  Searches from byte *start*."""
    for bit in range(8):
        ones = [i for i in range(start, len(data)) if data[i] >> bit & 1]
        zeros = [i for i in range(start, len(data)) if not data[i] >> bit & 1]
        if ones and zeros:
            a, b = ones[0], next((z for z in zeros if z > ones[0]), zeros[0])
            return tuple(sorted(((a, bit), (b, bit))))
    raise ValueError("every byte is the same: no two flips cancel out")


def crc32_blind_flips(data: bytes, start: int = 0) -> list[tuple[int, int]]:
    """Bit flips that ``zlib.crc32`` cannot see: the generator polynomial's
    own pattern (15 bits over 33 positions) laid on the data from byte
    *start*.  A CRC catches an error exactly when the error, read as a
    polynomial, is not a multiple of the generator; this one IS the
    generator.  zlib sends each byte's bit 0 first (a "reflected" CRC), so
    the highest power falls on bit 0 of byte *start*."""
    if len(data) < start + 5:
        raise ValueError("the pattern spans 33 bits: it needs 5 bytes from start")
    flips = []
    for power in range(33):
        if CRC32_GENERATOR >> power & 1:
            position = 8 * start + 32 - power
            flips.append((position // 8, position % 8))
    return sorted(flips)


def analytic_delivery(rate: float, attempts: int = 4) -> float:
    """The chance that a mail gets through within *attempts* attempts when
    each attempt is corrupted, independently, with probability *rate*."""
    return 1.0 - rate ** attempts


def simulate_delivery(rates, *, sends: int = 400, attempts: int = 4, seed: int = 2017) -> list[float]:
    """For each flip rate, send *sends* mails through a seeded
    :class:`~mailkit.noise.BitFlipChannel` into a real server's
    :meth:`~mailkit.server.MailServer.respond` (the server's own parsing and
    checksum check, without sockets, so that thousands of sends take a
    second), retrying after ``KO`` up to *attempts* attempts in all.
    Return the fraction delivered per rate."""
    server = MailServer(users={"sim": "sim", "bob": "builder"})
    try:
        _, reply = server.respond(b"sim:sim")
        frame = P.make_frame(reply.partition(":")[2], "email", "bob", "sim", "a simulated mail")
        fractions = []
        for i, rate in enumerate(rates):
            channel = BitFlipChannel(rate, seed=seed + i)
            delivered = 0
            for _ in range(sends):
                for _ in range(attempts):
                    wire, _ = channel.transmit(frame)
                    if server.respond(wire)[1] != REPLIES.KO:
                        delivered += 1
                        break
            fractions.append(delivered / sends)
        return fractions
    finally:
        server.close()
