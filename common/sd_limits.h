/* sd_limits.h — every limit of the stockd contract, defined once (docs/api.md §2, §3), and
 * used by stockd, the gateway and the clients alike. */
#ifndef STOCKD_LIMITS_H
#define STOCKD_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

#define SD_TENANT_BYTES_MAX 64
/* Besides ASCII letters and digits, the characters a tenant id may hold. */
#define SD_TENANT_MARKS "._:-"
#define SD_LOCATION_BYTES_MAX 64
#define SD_APP_BYTES_MAX 64
#define SD_CATALOG_ITEM_BYTES_MAX 256
#define SD_VARIANT_BYTES_MAX 256
#define SD_ORDER_ID_BYTES_MAX 128
#define SD_REQUEST_ID_BYTES_MAX 128
/* An identity's name in the auth policy, recorded as a ledger entry's actor. */
#define SD_IDENTITY_NAME_BYTES_MAX 64
/* The `stockd-on-behalf-of` metadata a caller may send with a write (recorded in the ledger). */
#define SD_ON_BEHALF_OF_BYTES_MAX 128
#define SD_ON_BEHALF_OF_METADATA "stockd-on-behalf-of"
#define SD_REASON_TEXT_BYTES_MAX 256
#define SD_LINES_MAX 8192
#define SD_QUANTITY_MAX INT64_C(1000000000)
#define SD_LEVEL_ABS_MAX INT64_C(1000000000000000)
/* A Batch call: writes, lines over all its writes, and request bytes. The byte bound keeps
 * the answer (levels echo their items) well under SD_RESPONSE_BYTES_MAX. */
#define SD_BATCH_WRITES_MAX 1024
#define SD_BATCH_LINES_MAX SD_LINES_MAX
#define SD_BATCH_REQUEST_BYTES_MAX (1024 * 1024)
#define SD_PAGE_SIZE_MAX 1000
#define SD_PAGE_SIZE_DEFAULT 100
/* The largest request message stockd accepts: room for SD_LINES_MAX lines of the largest items
 * (about 680 bytes each on the wire) and the request's other fields. */
#define SD_REQUEST_BYTES_MAX (8 * 1024 * 1024)
/* The largest answer stockd sends: what a default gRPC client accepts (4 MiB receive limit),
 * less room for the replayed marker and framing. Requests whose answer could be larger are
 * refused before anything is applied. */
#define SD_RESPONSE_BYTES_MAX (4 * 1024 * 1024 - 1024)

/* Encoded item key: u8-length tenant, then (v2) a marker and NUL-ended location, app and item,
 * and the variant; v1 keys (u8-length location and app, u16-length item and variant) were
 * two bytes longer at most, so this bounds both. */
#define SD_ITEM_KEY_BYTES_MAX                                                                      \
    (1 + SD_TENANT_BYTES_MAX + 1 + SD_LOCATION_BYTES_MAX + 1 + SD_APP_BYTES_MAX + 2 +              \
     SD_CATALOG_ITEM_BYTES_MAX + 2 + SD_VARIANT_BYTES_MAX)

_Static_assert(SD_TENANT_BYTES_MAX <= 255 && SD_LOCATION_BYTES_MAX <= 255 &&
                   SD_APP_BYTES_MAX <= 255,
               "one-byte length prefixes");
/* The largest possible summed change of one request must not overflow int64 before the
 * ±10^15 range check runs. */
_Static_assert(SD_LINES_MAX *SD_QUANTITY_MAX < INT64_MAX - SD_LEVEL_ABS_MAX,
               "summed quantities fit in int64");

/* The one tenant rule (stockd and the gateway): 1..SD_TENANT_BYTES_MAX bytes of
 * [A-Za-z0-9._:-]. *bad_byte_out (may be NULL) is the index of the first byte outside the
 * alphabet, or the length when there is none. */
static inline bool sd_tenant_valid(const char *tenant_id, size_t *bad_byte_out)
{
    size_t length = strlen(tenant_id);
    size_t valid = util_identifier_span(tenant_id, SD_TENANT_MARKS);
    if (bad_byte_out != NULL) {
        *bad_byte_out = valid;
    }
    return length > 0 && length <= SD_TENANT_BYTES_MAX && valid == length;
}

/* The one stockd-on-behalf-of rule (stockd, the clients, a Batch write's on_behalf_of):
 * at most SD_ON_BEHALF_OF_BYTES_MAX bytes of printable ASCII (what an HTTP/2 header value may
 * hold, and what stockd records). Empty is valid here: callers that need a value check. */
static inline bool sd_on_behalf_of_valid(const unsigned char *text, size_t length)
{
    if (length > SD_ON_BEHALF_OF_BYTES_MAX) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        if (text[i] < 0x20 || text[i] > 0x7E) {
            return false;
        }
    }
    return true;
}

#endif
