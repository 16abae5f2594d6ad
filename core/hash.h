/* hash.h — the two non-cryptographic hashes apl uses, written once: splitmix64 (seeds, keyed
 * random streams, jitter) and FNV-1a 64 (stable keys over bytes or over 64-bit words).
 *
 *   uint64_t z = apl_mix64(x);                  // splitmix64's finaliser (no increment)
 *   uint64_t s = apl_splitmix64(x);             // mix64(x + APL_GOLDEN64): one step from state x
 *   uint64_t r = apl_splitmix64_next(&state);   // state += APL_GOLDEN64, then mix64(state)
 *   uint64_t h = apl_fnv1a(APL_FNV_OFFSET, buf, n);   // chain calls to hash several parts
 *   h = apl_fnv1a_word(h, (uint64_t)id);        // one whole 64-bit word (apl.dpo's id keys)
 *
 * Every function is pure, total and allocation-free; no status. lua/lsys.c exposes mix64 and
 * fnv1a to Lua (apl.core.sys), so apl.rng's streams are these very functions.
 */
#ifndef APL_HASH_H
#define APL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define APL_GOLDEN64 0x9e3779b97f4a7c15ULL     /* 2^64 / φ: splitmix64's increment */
#define APL_FNV_OFFSET 0xcbf29ce484222325ULL   /* FNV-1a 64's offset basis */
#define APL_FNV_PRIME 0x100000001b3ULL

static inline uint64_t apl_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t apl_splitmix64(uint64_t x) { return apl_mix64(x + APL_GOLDEN64); }

static inline uint64_t apl_splitmix64_next(uint64_t *state)
{
    *state += APL_GOLDEN64;
    return apl_mix64(*state);
}

static inline uint64_t apl_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * APL_FNV_PRIME;
    return h;
}

static inline uint64_t apl_fnv1a_word(uint64_t h, uint64_t w) { return (h ^ w) * APL_FNV_PRIME; }

#endif
