/* fuzz_parsers.c — libFuzzer target for the other parsers of untrusted input.
 *
 * The first input byte picks one: 0 the CSV line splitter (stockctl import), 1 the
 * NUL-in-string wire walker and protobuf-c unpacking of a write request (stockd), 2 base64url
 * (JWT segments, page tokens), 3 the address and duration parsers (configuration). Replayed
 * from the checked-in corpus as an ordinary test; built with clang -fsanitize=fuzzer for
 * fuzzing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "net.h"
#include "stockd/v1/inventory.pb-c.h"
#include "util.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_csv(const uint8_t *data, size_t size)
{
    char line[CSV_LINE_BYTES_MAX + 1];
    size_t length = size < CSV_LINE_BYTES_MAX ? size : CSV_LINE_BYTES_MAX;
    memcpy(line, data, length);
    line[length] = '\0';
    char *fields[CSV_FIELDS_MAX];
    int count = csv_split(line, fields, CSV_FIELDS_MAX);
    for (int i = 0; i < count; i++) {
        (void)strlen(fields[i]); /* every field must be a terminated string inside line */
    }
}

static void fuzz_wire(const uint8_t *data, size_t size)
{
    char field[160];
    sd_wire_strings_clean(&stockd__v1__decrement_request__descriptor, data, size, field,
                          sizeof(field));
    Stockd__V1__DecrementRequest *request = stockd__v1__decrement_request__unpack(NULL, size, data);
    if (request != NULL) {
        stockd__v1__decrement_request__free_unpacked(request, NULL);
    }
}

static void fuzz_text(const uint8_t *data, size_t size)
{
    char text[256];
    size_t length = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, length);
    text[length] = '\0';
    struct sockaddr_in address;
    int64_t value;
    net_parse_ipv4_host_port(text, &address);
    util_parse_duration_s(text, &value);
    util_parse_int64(text, &value);
    util_utf8_valid((const char *)data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    size_t decoded_length = 0;
    unsigned char *decoded = NULL;
    switch (data[0] % 4) {
    case 0:
        fuzz_csv(data + 1, size - 1);
        break;
    case 1:
        fuzz_wire(data + 1, size - 1);
        break;
    case 2:
        decoded = util_base64url_decode((const char *)data + 1, size - 1, &decoded_length);
        free(decoded);
        break;
    default:
        fuzz_text(data + 1, size - 1);
        break;
    }
    return 0;
}
