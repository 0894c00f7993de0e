/* sorted_puts.h — puts of one column family gathered during a commit batch and written in key
 * order when it commits.
 *
 * Why: RocksDB's memtable is a skip list that remembers where its previous insert went, so a
 * key that follows it closely is inserted by re-searching only the lowest levels; keys in
 * random order are searched from the top each time. The writer's WriteBatch otherwise holds
 * the ledger index keys of a batch in arrival order (items at random). Ordering them costs a
 * sort of pointers; it shows in `make profile` as fewer MemTable comparisons, the more so the
 * bigger the commit batch. */
#ifndef STOCKD_SORTED_PUTS_H
#define STOCKD_SORTED_PUTS_H

#include <stddef.h>
#include <stdint.h>

#include "storage.h"

typedef struct {
    uint32_t offset; /* into bytes: the key, then the value */
    uint32_t key_length, value_length;
} sd_sorted_put_t;

typedef struct {
    sd_cf_t cf;
    uint8_t *bytes;
    size_t used, bytes_capacity;
    sd_sorted_put_t *puts;
    size_t count, puts_capacity;
} sd_sorted_puts_t;

/* Gathers a put for cf; when memory for it cannot be had it goes into write_batch at once
 * (order is an optimization, never a reason to fail a write). */
void sd_sorted_puts_add(sd_sorted_puts_t *puts, sd_storage_t *storage,
                        sd_write_batch_t *write_batch, const uint8_t *key, size_t key_length,
                        const uint8_t *value, size_t value_length);
/* How many puts are gathered: a mark to go back to when a request is rolled back. */
size_t sd_sorted_puts_mark(const sd_sorted_puts_t *puts);
/* Forgets the puts gathered after mark. */
void sd_sorted_puts_rollback(sd_sorted_puts_t *puts, size_t mark);
/* Writes every gathered put into write_batch in key order, then forgets them. */
void sd_sorted_puts_flush(sd_sorted_puts_t *puts, sd_storage_t *storage,
                          sd_write_batch_t *write_batch);
/* Forgets the gathered puts (a batch reset), keeping the memory. */
void sd_sorted_puts_clear(sd_sorted_puts_t *puts);
void sd_sorted_puts_free(sd_sorted_puts_t *puts);

#endif
