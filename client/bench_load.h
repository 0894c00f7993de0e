/* bench_load.h — the workload stockbench and bench/peerbench both drive, defined once so that
 * "the same workload" is true by construction: which SKUs each call takes. */
#ifndef STOCKD_BENCH_LOAD_H
#define STOCKD_BENCH_LOAD_H

#include <stdint.h>

/* xorshift64*: fast, and good enough to spread load over SKUs; state must not be 0. */
uint64_t bench_load_random(uint64_t *state);

/* Picks lines_min..lines_max (at most skus) distinct SKUs of 0..skus-1 into out; returns how
 * many. */
int bench_load_pick_skus(uint64_t *rng, int64_t lines_min, int64_t lines_max, int64_t skus,
                         int64_t *out);

#endif
