/*
 * sha256.h: SHA-256 (FIPS 180-4), streaming. Used to check downloaded model files against the
 * digest the hub publishes; not a general crypto library (no HMAC, no constant-time claims).
 */
#ifndef NURI_BASE_SHA256_H
#define NURI_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct nuri_sha256 {
    uint32_t h[8];     // the chaining state
    uint64_t n_bytes;  // bytes hashed so far
    uint8_t block[64]; // a partial block waiting for more bytes
    size_t n_block;    // bytes in block, < 64
} nuri_sha256;

void nuri_sha256_init(nuri_sha256 *s);
void nuri_sha256_update(nuri_sha256 *s, const void *data, size_t n);
/* Writes the 32-byte digest; s must be initialized again before further use. */
void nuri_sha256_final(nuri_sha256 *s, uint8_t digest[32]);

/* The digest as 64 lowercase hex digits and a NUL. */
void nuri_sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
