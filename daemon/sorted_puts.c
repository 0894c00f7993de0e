/* sorted_puts.c — see sorted_puts.h. */
#include "sorted_puts.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void sd_sorted_puts_add(sd_sorted_puts_t *puts, sd_storage_t *storage,
                        sd_write_batch_t *write_batch, const uint8_t *key, size_t key_length,
                        const uint8_t *value, size_t value_length)
{
    size_t size = key_length + value_length;
    uint8_t *bytes = puts->used + size <= UINT32_MAX
                         ? sd_array_grow(puts->bytes, &puts->bytes_capacity, puts->used + size, 1)
                         : NULL;
    if (bytes != NULL) {
        puts->bytes = bytes;
    }
    sd_sorted_put_t *entries = bytes != NULL ? sd_array_grow(puts->puts, &puts->puts_capacity,
                                                             puts->count + 1, sizeof(*puts->puts))
                                             : NULL;
    if (entries == NULL) {
        sd_write_batch_put(storage, write_batch, puts->cf, key, key_length, value, value_length);
        return;
    }
    puts->puts = entries;
    memcpy(puts->bytes + puts->used, key, key_length);
    memcpy(puts->bytes + puts->used + key_length, value, value_length);
    puts->puts[puts->count++] =
        (sd_sorted_put_t){(uint32_t)puts->used, (uint32_t)key_length, (uint32_t)value_length};
    puts->used += size;
}

size_t sd_sorted_puts_mark(const sd_sorted_puts_t *puts)
{
    return puts->count;
}

void sd_sorted_puts_rollback(sd_sorted_puts_t *puts, size_t mark)
{
    if (mark < puts->count) {
        puts->count = mark;
        puts->used = mark > 0 ? puts->puts[mark].offset : 0;
    }
}

/* qsort has no context argument: the buffer the entries point into is set here for the
 * writer thread's sort (one writer thread; see writer.h). */
static _Thread_local const uint8_t *sd_sort_bytes;

static int sd_sorted_put_compare(const void *a, const void *b)
{
    const sd_sorted_put_t *x = a, *y = b;
    size_t common = x->key_length < y->key_length ? x->key_length : y->key_length;
    int order = memcmp(sd_sort_bytes + x->offset, sd_sort_bytes + y->offset, common);
    if (order != 0) {
        return order;
    }
    return (x->key_length > y->key_length) - (x->key_length < y->key_length);
}

void sd_sorted_puts_flush(sd_sorted_puts_t *puts, sd_storage_t *storage,
                          sd_write_batch_t *write_batch)
{
    sd_sort_bytes = puts->bytes;
    qsort(puts->puts, puts->count, sizeof(*puts->puts), sd_sorted_put_compare);
    for (size_t i = 0; i < puts->count; i++) {
        const sd_sorted_put_t *put = &puts->puts[i];
        sd_write_batch_put(storage, write_batch, puts->cf, puts->bytes + put->offset,
                           put->key_length, puts->bytes + put->offset + put->key_length,
                           put->value_length);
    }
    sd_sorted_puts_clear(puts);
}

void sd_sorted_puts_clear(sd_sorted_puts_t *puts)
{
    puts->count = 0;
    puts->used = 0;
}

void sd_sorted_puts_free(sd_sorted_puts_t *puts)
{
    free(puts->bytes);
    free(puts->puts);
    memset(puts, 0, sizeof(*puts));
}
