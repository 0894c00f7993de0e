/* wix.h — the Wix Inventory Service Plugin mapping: validates the verified `data` of a call
 * as Wix documents it and turns it into a stockd Decrement or Increment request (docs/api.md §4).
 *
 * Lenient where Wix's own types are: subscriptionItem may be absent, unknown fields are
 * ignored, ids are not checked for GUID shape. */
#ifndef STOCKD_GW_WIX_H
#define STOCKD_GW_WIX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "sd_limits.h"
#include "stockd/v1/inventory.pb-c.h"

#define GW_WIX_ITEMS_MAX 300
#define GW_WIX_QUANTITY_MAX 100000
#define GW_WIX_CATALOG_ITEM_CHARS_MAX 36
#define GW_REASON_BYTES_MAX 512
#define GW_QUOTED_VALUE_BYTES_MAX 64 /* of a bad value quoted in a reason */
#define GW_WIX_APP_EXTENSION_TYPE "ECOM_INVENTORY"
/* request_id of a call without metadata.requestId: this prefix + the hex SHA-256 of the
 * token's signature segment (gw_wix_use_token_request_id). */
#define GW_WIX_TOKEN_REQUEST_ID_PREFIX "wix-jwt:"
_Static_assert(sizeof(GW_WIX_TOKEN_REQUEST_ID_PREFIX) - 1 + 2 * 32 /* hex SHA-256 */ <=
                   SD_REQUEST_ID_BYTES_MAX,
               "a token-derived request_id fits stockd's limit");

typedef enum { GW_WIX_DECREMENT, GW_WIX_INCREMENT } gw_wix_method_t;

typedef enum {
    GW_WIX_OK,
    GW_WIX_BAD_ENVELOPE,  /* data/metadata missing or not objects: HTTP 400 */
    GW_WIX_BAD_EXTENSION, /* appExtensionType is not ECOM_INVENTORY: HTTP 401 */
    GW_WIX_BAD_REQUEST,   /* the request breaks a Wix rule: HTTP 428 with the method's code */
    GW_WIX_NO_MEMORY,     /* could not be mapped for lack of memory: HTTP 503, retry */
} gw_wix_result_t;

/* The stockd request built from a call. Strings point into the JSON document (kept alive
 * here) or into owned buffers; release everything with gw_wix_call_free. */
typedef struct {
    gw_wix_method_t method;
    json_t *payload; /* a reference to the verified claims */
    Stockd__V1__DecrementRequest decrement;
    Stockd__V1__IncrementRequest increment;
    Stockd__V1__ItemRef *items;
    Stockd__V1__Line *lines;
    Stockd__V1__Line **line_pointers;
    char **variants; /* owned */
    size_t lines_count;
    char tenant_id[65];
    char request_id[SD_REQUEST_ID_BYTES_MAX + 1];
    char reason[GW_REASON_BYTES_MAX]; /* why it was refused, for logs and X-Stockd-Reason */
} gw_wix_call_t;

/* Validates and maps the claims' `data`. On GW_WIX_OK the request is in call->decrement or
 * call->increment; otherwise call->reason says why, naming the field and quoting a bad string
 * value (at most GW_QUOTED_VALUE_BYTES_MAX bytes, whole UTF-8 characters). GW_WIX_NO_MEMORY when
 * an allocation failed: the call itself may be fine. Always release with gw_wix_call_free.
 * default_tenant is used when metadata.instanceId is absent. Every allocation goes through
 * jansson's allocator (json_set_alloc_funcs), so one hook can make any of them fail. */
gw_wix_result_t gw_wix_map(gw_wix_method_t method, json_t *payload, const char *default_tenant,
                           gw_wix_call_t *call);
void gw_wix_call_free(gw_wix_call_t *call);

/* Gives a mapped call that has no metadata.requestId the request_id
 * GW_WIX_TOKEN_REQUEST_ID_PREFIX + token_digest_hex (gw_jwt_signature_sha256_hex of its token),
 * so that stockd applies one token at most once and answers a replay from its idempotency
 * record, as it does for Wix's own retries. Calls with a requestId keep "wix:" + requestId. */
void gw_wix_use_token_request_id(gw_wix_call_t *call, const char token_digest_hex[65]);

/* Derives the stockd variant from catalogReference.options (may be NULL): "" when absent,
 * null or {}; the string options.variantId when present; otherwise the canonical JSON (keys
 * sorted, no spaces) of options without customTextFields; longer than 256 bytes becomes
 * "sha256:" + hex. Returns a string from jansson's allocator — malloc, so release it with
 * free(), unless json_set_alloc_funcs installed another — or NULL when out of memory. */
char *gw_wix_variant(const json_t *options);

#endif
