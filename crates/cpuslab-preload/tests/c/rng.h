/* The pseudo-random generator the C test programs share (xorshift64). */
#ifndef CPUSLAB_TEST_RNG_H
#define CPUSLAB_TEST_RNG_H

#include <stdint.h>

static inline uint64_t next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

#endif
