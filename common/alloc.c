/* alloc.c — see alloc.h. */
#include "alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

static _Atomic long sd_alloc_countdown; /* 0 = never fail */
static _Atomic long sd_alloc_calls;

/* True when this allocation is the one a test asked to fail. */
static int sd_alloc_should_fail(void)
{
    atomic_fetch_add(&sd_alloc_calls, 1);
    long countdown = atomic_load(&sd_alloc_countdown);
    return countdown > 0 && atomic_fetch_sub(&sd_alloc_countdown, 1) == 1;
}

void *sd_malloc(size_t bytes)
{
    return sd_alloc_should_fail() ? NULL : malloc(bytes);
}

void *sd_calloc(size_t count, size_t size)
{
    return sd_alloc_should_fail() ? NULL : calloc(count, size);
}

void *sd_realloc(void *pointer, size_t bytes)
{
    return sd_alloc_should_fail() ? NULL : realloc(pointer, bytes);
}

void *sd_array_grow(void *array, size_t *capacity, size_t needed, size_t element_size)
{
    if (needed <= *capacity) {
        return array;
    }
    size_t grown = *capacity ? *capacity : 16;
    while (grown < needed) {
        if (grown > SIZE_MAX / 2) {
            return NULL;
        }
        grown *= 2;
    }
    if (element_size != 0 && grown > SIZE_MAX / element_size) {
        return NULL;
    }
    void *bigger = sd_realloc(array, grown * element_size);
    if (bigger != NULL) {
        *capacity = grown;
    }
    return bigger;
}

long sd_alloc_fail_nth(long countdown)
{
    atomic_store(&sd_alloc_countdown, countdown);
    return atomic_exchange(&sd_alloc_calls, 0);
}
