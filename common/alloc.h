/* alloc.h — the allocation hook (docs/style.md 14): the write path allocates through these, so a
 * test can make the k-th allocation fail and check, for every k, that the outcome is a clean
 * error with nothing half-applied (SQLite's and libuv's out-of-memory loops). In production
 * they are malloc, calloc and realloc. Release with free(). */
#ifndef STOCKD_ALLOC_H
#define STOCKD_ALLOC_H

#include <stddef.h>

void *sd_malloc(size_t bytes);
void *sd_calloc(size_t count, size_t size);
void *sd_realloc(void *pointer, size_t bytes);

/* Makes room for `needed` elements of element_size in array (capacity elements now), doubling
 * from 16. Returns the array to use from now on (array itself when it was big enough), with
 * *capacity updated; NULL when out of memory or the size would overflow, and then array and
 * *capacity are unchanged (the caller still owns array). */
void *sd_array_grow(void *array, size_t *capacity, size_t needed, size_t element_size);

/* Test hook: the allocation `countdown` calls from now fails (1 = the next one), and only
 * that one; 0 turns failures off. Returns how many hooked allocations were made since the
 * previous call, so a loop knows when k has passed the last allocation of the code under
 * test. Not for concurrent use: tests call it from one thread. */
long sd_alloc_fail_nth(long countdown);

#endif
