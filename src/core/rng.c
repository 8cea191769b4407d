/* rng.c — see rng.h. */
#include "rng.h"
#include <math.h>

double rng_normal(uint64_t key, uint64_t i) {
    double u1 = rng_uniform(key, 2 * i), u2 = rng_uniform(key, 2 * i + 1);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
