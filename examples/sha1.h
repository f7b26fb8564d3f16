/* SHA-1 (FIPS 180-4) in plain C, so the examples need no libssl.
 *
 *   char hex[41];
 *   sha1_hex(data, len, hex);     // 40 lowercase hex digits and a NUL
 *
 * SHA-1 is broken for signatures (collisions can be made on purpose); the
 * protocol uses it only to catch accidental damage, which it still does.
 */
#ifndef MAILKIT_SHA1_H
#define MAILKIT_SHA1_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint32_t sha1_rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
    uint32_t w[80], a, b, c, d, e, f, k, t;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = sha1_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4];
    for (int i = 0; i < 80; i++) {
        if (i < 20)      { f = (b & c) | (~b & d);           k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d;                    k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d);  k = 0x8F1BBCDC; }
        else             { f = b ^ c ^ d;                    k = 0xCA62C1D6; }
        t = sha1_rol(a, 5) + f + e + k + w[i];
        e = d; d = c; c = sha1_rol(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1_hex(const void *data, size_t len, char out[41]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const unsigned char *p = data;
    unsigned char last[128];
    size_t full = len / 64 * 64, rest = len - full;
    for (size_t i = 0; i < full; i += 64) sha1_block(h, p + i);
    memset(last, 0, sizeof last);
    memcpy(last, p + full, rest);
    last[rest] = 0x80;                          /* a 1 bit, then zeros ... */
    size_t n = rest < 56 ? 64 : 128;            /* ... then the length in bits, big-endian */
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) last[n - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha1_block(h, last);
    if (n == 128) sha1_block(h, last + 64);
    for (int i = 0; i < 5; i++) snprintf(out + 8 * i, 9, "%08x", h[i]);
}

#endif
