/* bench_load.c — see bench_load.h. */
#include "bench_load.h"

#include <stdbool.h>

uint64_t bench_load_random(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ULL;
}

int bench_load_pick_skus(uint64_t *rng, int64_t lines_min, int64_t lines_max, int64_t skus,
                         int64_t *out)
{
    int64_t span = lines_max - lines_min + 1;
    int count = (int)(lines_min + (int64_t)(bench_load_random(rng) % (uint64_t)span));
    if (count > skus) {
        count = (int)skus;
    }
    for (int i = 0; i < count; i++) {
        bool duplicate;
        do {
            out[i] = (int64_t)(bench_load_random(rng) % (uint64_t)skus);
            duplicate = false;
            for (int j = 0; j < i; j++) {
                duplicate |= out[j] == out[i];
            }
        } while (duplicate);
    }
    return count;
}
