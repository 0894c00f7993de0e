/* stockclient.c — see stockclient.h. Each call uses its own pluck completion queue, so calls
 * from different threads never wait on one another. */
#include "stockclient.h"

#include <sys/random.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "google/rpc/status.pb-c.h"
#include "log.h"
#include "net.h"
#include "pem.h"
#include "util.h"

#define SC_MESSAGE_BYTES_MAX (16 * 1024 * 1024)
#define SC_AUTHORIZATION_KEY "authorization"
#define SC_BEARER_PREFIX "Bearer "
/* How much of a path an error message quotes. */
#define SC_PATH_QUOTED_BYTES_MAX 200

_Static_assert(SC_PEM_FILE_BYTES_MAX <= INT32_MAX, "a PEM file fits an OpenSSL memory BIO");

struct sc_client {
    /* one channel per replica given; calls go to `current`, which follows the leader */
    grpc_channel *channels[SC_TARGETS_MAX];
    char targets[SC_TARGETS_MAX][SC_TARGET_BYTES];
    size_t targets_count;
    _Atomic size_t current;
    /* "Bearer <token>" as a reference-counted copy (the transport may keep header values
     * beyond one call); an empty slice when the client has no token. */
    grpc_slice authorization;
    bool has_authorization;
};

/* Each calling thread keeps one pluck completion queue for all its calls: creating and
 * destroying a queue per call costs more than the call itself on a fast path. */
static pthread_key_t sc_queue_key;
static pthread_once_t sc_queue_once = PTHREAD_ONCE_INIT;

static void sc_queue_destroy(void *queue)
{
    grpc_completion_queue_shutdown(queue);
    grpc_completion_queue_destroy(queue);
}

static void sc_queue_key_create(void)
{
    pthread_key_create(&sc_queue_key, sc_queue_destroy);
}

static grpc_completion_queue *sc_thread_queue(void)
{
    pthread_once(&sc_queue_once, sc_queue_key_create);
    grpc_completion_queue *queue = pthread_getspecific(sc_queue_key);
    if (queue == NULL) {
        queue = grpc_completion_queue_create_for_pluck(NULL);
        pthread_setspecific(sc_queue_key, queue);
    }
    return queue;
}

void sc_thread_release(void)
{
    pthread_once(&sc_queue_once, sc_queue_key_create);
    grpc_completion_queue *queue = pthread_getspecific(sc_queue_key);
    if (queue != NULL) {
        pthread_setspecific(sc_queue_key, NULL);
        sc_queue_destroy(queue);
    }
}

/* Writes the formatted reason into error_out (when there is one) and returns false. */
static bool sc_fail(char *error_out, size_t error_capacity, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static bool sc_fail(char *error_out, size_t error_capacity, const char *format, ...)
{
    if (error_out != NULL && error_capacity > 0) {
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(error_out, error_capacity, format, arguments);
        va_end(arguments);
    }
    return false;
}

static bool sc_given(const char *text)
{
    return text != NULL && text[0] != '\0';
}

bool sc_token_valid(const char *token, char *error_out, size_t error_capacity)
{
    size_t length = strnlen(token, SC_TOKEN_BYTES_MAX + 1);
    if (length == 0) {
        return sc_fail(error_out, error_capacity, "the token is empty");
    }
    if (length > SC_TOKEN_BYTES_MAX) {
        return sc_fail(error_out, error_capacity, "the token is longer than %d bytes",
                       SC_TOKEN_BYTES_MAX);
    }
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)token[i];
        if (c < 0x21 || c > 0x7E) { /* the token itself is a secret: only say where */
            return sc_fail(error_out, error_capacity,
                           "the token must be printable ASCII without spaces, but character %zu "
                           "is %s",
                           i + 1, c == ' ' ? "a space" : "a control or non-ASCII byte");
        }
    }
    return true;
}

bool sc_token_read_file(const char *path, char *token_out, size_t token_capacity, char *error_out,
                        size_t error_capacity)
{
    char reason[SC_ERROR_BYTES];
    size_t length = 0;
    SD_ASSERT(token_capacity > SC_TOKEN_BYTES_MAX); /* the caller's buffer holds any token */
    token_out[0] = '\0';
    char *text = util_read_file(path, SC_TOKEN_FILE_BYTES_MAX, &length, reason, sizeof(reason));
    if (text == NULL) {
        return sc_fail(error_out, error_capacity, "token file \"%.*s\": %s",
                       SC_PATH_QUOTED_BYTES_MAX, path, reason);
    }
    if (strlen(text) != length) { /* a UTF-16 file, say: the token would be cut short */
        sc_fail(error_out, error_capacity,
                "token file \"%.*s\": holds a NUL byte (a token is ASCII text, not UTF-16)",
                SC_PATH_QUOTED_BYTES_MAX, path);
        OPENSSL_cleanse(text, length);
        free(text);
        return false;
    }
    size_t line = strcspn(text, "\r\n"); /* the first line, without its LF or CRLF */
    bool cut_at_cr = text[line] == '\r' && text[line + 1] != '\n' && text[line + 1] != '\0';
    text[line] = '\0';
    bool valid = !cut_at_cr && sc_token_valid(text, reason, sizeof(reason));
    if (valid) {
        memcpy(token_out, text, line + 1);
    } else {
        sc_fail(error_out, error_capacity, "token file \"%.*s\": %s", SC_PATH_QUOTED_BYTES_MAX,
                path, cut_at_cr ? "the first line holds a carriage return" : reason);
    }
    OPENSSL_cleanse(text, length);
    free(text);
    return valid;
}

sc_token_source_t sc_token_resolve(const char *token, const char *token_file,
                                   char buffer[SC_TOKEN_BYTES_MAX + 1], const char **token_out,
                                   char *error_out, size_t error_capacity)
{
    *token_out = token != NULL ? token : "";
    if (!sc_given(token_file)) {
        return SC_TOKEN_SOURCE_OK;
    }
    if (sc_given(token)) {
        return SC_TOKEN_SOURCE_BOTH;
    }
    if (!sc_token_read_file(token_file, buffer, SC_TOKEN_BYTES_MAX + 1, error_out,
                            error_capacity)) {
        return SC_TOKEN_SOURCE_FILE_BAD;
    }
    *token_out = buffer;
    return SC_TOKEN_SOURCE_OK;
}

/* ---- TLS ---- */

/* The PEM files of a TLS client, read whole; key is wiped before it is freed. */
typedef struct {
    char *ca, *cert, *key;
    size_t key_length;
} sc_tls_files_t;

/* Reads one PEM file (`what` names it in errors). NULL with the reason in error_out. */
static char *sc_pem_read(const char *what, const char *path, size_t *length_out, char *error_out,
                         size_t error_capacity)
{
    char reason[SC_ERROR_BYTES];
    char *text = util_read_file(path, SC_PEM_FILE_BYTES_MAX, length_out, reason, sizeof(reason));
    if (text == NULL) {
        sc_fail(error_out, error_capacity, "%s \"%.*s\": %s", what, SC_PATH_QUOTED_BYTES_MAX, path,
                reason);
        return NULL;
    }
    if (strlen(text) != *length_out) { /* gRPC takes PEM as a C string: a NUL would cut it */
        sc_fail(error_out, error_capacity, "%s \"%.*s\": holds a NUL byte, so it is no PEM file",
                what, SC_PATH_QUOTED_BYTES_MAX, path);
        OPENSSL_cleanse(text, *length_out);
        free(text);
        return NULL;
    }
    return text;
}

/* Checks that the certificate and key files hold a certificate and an unencrypted private key
 * that belong together, so a wrong file is named at start rather than failing every handshake
 * later. */
static bool sc_tls_check_pair(const sc_client_options_t *options, const sc_tls_files_t *files,
                              char *error_out, size_t error_capacity)
{
    switch (pem_check_pair(files->cert, strlen(files->cert), files->key, files->key_length, NULL)) {
    case PEM_PAIR_OK:
        return true;
    case PEM_PAIR_NO_CERTIFICATE:
        return sc_fail(error_out, error_capacity,
                       "TLS certificate file \"%.*s\": holds no PEM certificate",
                       SC_PATH_QUOTED_BYTES_MAX, options->tls_cert);
    case PEM_PAIR_NO_KEY:
        return sc_fail(error_out, error_capacity,
                       "TLS key file \"%.*s\": holds no unencrypted PEM private key",
                       SC_PATH_QUOTED_BYTES_MAX, options->tls_key);
    case PEM_PAIR_MISMATCH:
        break;
    }
    return sc_fail(error_out, error_capacity,
                   "TLS key file \"%.*s\": does not match the certificate in \"%.*s\"",
                   SC_PATH_QUOTED_BYTES_MAX, options->tls_key, SC_PATH_QUOTED_BYTES_MAX,
                   options->tls_cert);
}

/* Reads and checks the files the options name. On false the reason is in error_out; files
 * read so far are in *files either way (release them with sc_tls_files_free). */
static bool sc_tls_read(const sc_client_options_t *options, sc_tls_files_t *files, char *error_out,
                        size_t error_capacity)
{
    size_t length = 0;
    if (sc_given(options->tls_cert) != sc_given(options->tls_key)) {
        return sc_fail(error_out, error_capacity, "%s",
                       sc_given(options->tls_cert)
                           ? "a TLS client certificate (tls_cert) needs its private key (tls_key)"
                           : "a TLS private key (tls_key) needs its certificate (tls_cert)");
    }
    if (sc_given(options->tls_ca)) {
        files->ca = sc_pem_read("TLS CA file", options->tls_ca, &length, error_out, error_capacity);
        if (files->ca == NULL) {
            return false;
        }
        if (pem_certificates_count(files->ca, length) == 0) {
            return sc_fail(error_out, error_capacity,
                           "TLS CA file \"%.*s\": holds no PEM certificate",
                           SC_PATH_QUOTED_BYTES_MAX, options->tls_ca);
        }
    }
    if (!sc_given(options->tls_cert)) {
        return true;
    }
    files->cert =
        sc_pem_read("TLS certificate file", options->tls_cert, &length, error_out, error_capacity);
    files->key = files->cert ? sc_pem_read("TLS key file", options->tls_key, &files->key_length,
                                           error_out, error_capacity)
                             : NULL;
    return files->key != NULL && sc_tls_check_pair(options, files, error_out, error_capacity);
}

static void sc_tls_files_free(sc_tls_files_t *files)
{
    if (files->key != NULL) {
        OPENSSL_cleanse(files->key, files->key_length);
    }
    free(files->key);
    free(files->cert);
    free(files->ca);
    memset(files, 0, sizeof(*files));
}

/* The channel's credentials: TLS when any TLS file is given, plaintext otherwise. NULL with
 * the reason in error_out when the files are unusable. The caller releases them. */
static grpc_channel_credentials *sc_credentials_new(const sc_client_options_t *options,
                                                    char *error_out, size_t error_capacity)
{
    if (options == NULL || (!sc_given(options->tls_ca) && !sc_given(options->tls_cert) &&
                            !sc_given(options->tls_key))) {
        return grpc_insecure_credentials_create();
    }
    sc_tls_files_t files = {0};
    grpc_channel_credentials *credentials = NULL;
    if (sc_tls_read(options, &files, error_out, error_capacity)) {
        /* gRPC copies the PEM text, so it can be wiped and freed right after */
        grpc_ssl_pem_key_cert_pair pair = {files.key, files.cert};
        credentials = grpc_ssl_credentials_create(files.ca, files.cert ? &pair : NULL, NULL, NULL);
        if (credentials == NULL) {
            sc_fail(error_out, error_capacity, "gRPC refused the TLS credentials");
        }
    }
    sc_tls_files_free(&files);
    return credentials;
}

/* ---- clients ---- */

/* A token goes over TLS, or stays on this machine (loopback), or the caller said --insecure. */
static bool sc_token_transport_ok(const char *target, const sc_client_options_t *options,
                                  char *error_out, size_t error_capacity)
{
    if (options == NULL) {
        return true;
    }
    bool tls = sc_given(options->tls_ca) || sc_given(options->tls_cert);
    if (!sc_given(options->token) || tls || options->allow_plaintext_token ||
        net_address_is_loopback(target)) {
        return true;
    }
    sc_fail(error_out, error_capacity,
            "refusing to send the token in plaintext to %s (not a loopback address): give "
            "--tls-ca to speak TLS, or --insecure to send it anyway",
            target);
    return false;
}

/* Keeps "Bearer <token>" in the client when options carry a token. False (with the reason)
 * when the token is invalid. */
static bool sc_client_set_token(sc_client_t *client, const sc_client_options_t *options,
                                char *error_out, size_t error_capacity)
{
    if (options == NULL || !sc_given(options->token)) {
        return true;
    }
    if (!sc_token_valid(options->token, error_out, error_capacity)) {
        return false;
    }
    char value[sizeof(SC_BEARER_PREFIX) + SC_TOKEN_BYTES_MAX];
    snprintf(value, sizeof(value), "%s%s", SC_BEARER_PREFIX, options->token);
    client->authorization = grpc_slice_from_copied_string(value);
    client->has_authorization = true;
    OPENSSL_cleanse(value, sizeof(value));
    return true;
}

/* Splits "A,B,C" into the client's targets; false with the reason on an empty entry, a too
 * long one or too many. */
static bool sc_client_set_targets(sc_client_t *client, const char *target, char *error_out,
                                  size_t error_capacity)
{
    const char *entry = target;
    do {
        size_t length = strcspn(entry, ",");
        if (length == 0 || length >= SC_TARGET_BYTES || client->targets_count == SC_TARGETS_MAX) {
            sc_fail(error_out, error_capacity,
                    "stockd address list \"%.64s\": 1 to %d comma-separated HOST:PORT, each "
                    "shorter than %d bytes",
                    target, SC_TARGETS_MAX, SC_TARGET_BYTES);
            return false;
        }
        memcpy(client->targets[client->targets_count], entry, length);
        client->targets[client->targets_count++][length] = '\0';
        entry += length;
    } while (*entry++ == ',');
    return true;
}

sc_client_t *sc_client_new_with(const char *target, const sc_client_options_t *options,
                                char *error_out, size_t error_capacity)
{
    if (error_out != NULL && error_capacity > 0) {
        error_out[0] = '\0';
    }
    sc_client_t *client = calloc(1, sizeof(*client));
    if (client == NULL) {
        sc_fail(error_out, error_capacity, "out of memory");
        return NULL;
    }
    bool ok = sc_client_set_targets(client, target, error_out, error_capacity) &&
              sc_client_set_token(client, options, error_out, error_capacity);
    for (size_t i = 0; ok && i < client->targets_count; i++) {
        ok = sc_token_transport_ok(client->targets[i], options, error_out, error_capacity);
    }
    grpc_channel_credentials *credentials =
        ok ? sc_credentials_new(options, error_out, error_capacity) : NULL;
    if (credentials == NULL) {
        sc_client_free(client);
        return NULL;
    }
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = SC_MESSAGE_BYTES_MAX},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1},
    };
    grpc_channel_args channel_args = {.num_args = options && options->own_connection ? 2 : 1,
                                      .args = args};
    for (size_t i = 0; i < client->targets_count; i++) {
        client->channels[i] = grpc_channel_create(client->targets[i], credentials, &channel_args);
    }
    grpc_channel_credentials_release(credentials);
    return client;
}

sc_client_t *sc_client_new(const char *target, const sc_client_options_t *options)
{
    return sc_client_new_with(target, options, NULL, 0);
}

void sc_client_free(sc_client_t *client)
{
    if (client == NULL) {
        return;
    }
    for (size_t i = 0; i < client->targets_count; i++) {
        if (client->channels[i] != NULL) {
            grpc_channel_destroy(client->channels[i]);
        }
    }
    if (client->has_authorization) {
        grpc_slice_unref(client->authorization);
    }
    free(client);
}

grpc_channel *sc_client_channel(sc_client_t *client)
{
    return client->channels[atomic_load(&client->current) % client->targets_count];
}

/* Where to go after target `tried` answered status: the leader it named when that is one of
 * the client's targets, else the next target. */
static size_t sc_client_target_after(const sc_client_t *client, size_t tried,
                                     const sc_status_t *status)
{
    for (size_t i = 0; status->leader[0] != '\0' && i < client->targets_count; i++) {
        if (strcmp(client->targets[i], status->leader) == 0) {
            return i;
        }
    }
    return (tried + 1) % client->targets_count;
}

/* The first pause before sending a request of unknown outcome again (doubling, to 32x). */
#define SC_RETRY_PAUSE_MS 25

/* Replication: where the next attempt of a call that a replica refused should go. A replica
 * that is not the leader refused it without applying it ("not the leader", with the leader's
 * address when it knows one), or the replica could not be reached at all (nothing was sent):
 * then the hinted replica, else the next one. False when the call must not be repeated: one
 * target, another answer, or an outcome that may have been applied. */
static bool sc_client_next_target(sc_client_t *client, size_t tried, const sc_status_t *status,
                                  size_t *next_out)
{
    if (client->targets_count < 2 || status->code != GRPC_STATUS_UNAVAILABLE) {
        return false;
    }
    /* "not the leader; not applied", or a stopping replica's "…; not applied" */
    bool refused = strstr(status->message, "not the leader") != NULL ||
                   strstr(status->message, "not applied") != NULL;
    bool unreachable = strncmp(status->message, "failed to connect", 17) == 0;
    if (!refused && !unreachable) {
        return false;
    }
    *next_out = sc_client_target_after(client, tried, status);
    return true;
}

size_t sc_client_metadata(const sc_client_t *client, grpc_metadata metadata_out[SC_METADATA_MAX])
{
    memset(metadata_out, 0, SC_METADATA_MAX * sizeof(grpc_metadata));
    if (!client->has_authorization) {
        return 0;
    }
    metadata_out[0].key = grpc_slice_from_static_string(SC_AUTHORIZATION_KEY);
    metadata_out[0].value = client->authorization;
    return 1;
}

void sc_status_init(sc_status_t *status)
{
    memset(status, 0, sizeof(*status));
}

void sc_status_free(sc_status_t *status)
{
    if (status->bad_request != NULL) {
        google__rpc__bad_request__free_unpacked(status->bad_request, NULL);
    }
    if (status->precondition != NULL) {
        google__rpc__precondition_failure__free_unpacked(status->precondition, NULL);
    }
    sc_status_init(status);
}

/* Every gRPC code by its own enum, not stockd's status list: a client meets codes stockd's
 * list may not have (UNAUTHENTICATED from a proxy, DATA_LOSS), and -Wswitch keeps this whole. */
const char *sc_code_name(int code)
{
    switch ((grpc_status_code)code) {
    case GRPC_STATUS_OK:
        return "OK";
    case GRPC_STATUS_CANCELLED:
        return "CANCELLED";
    case GRPC_STATUS_UNKNOWN:
        return "UNKNOWN";
    case GRPC_STATUS_INVALID_ARGUMENT:
        return "INVALID_ARGUMENT";
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return "DEADLINE_EXCEEDED";
    case GRPC_STATUS_NOT_FOUND:
        return "NOT_FOUND";
    case GRPC_STATUS_ALREADY_EXISTS:
        return "ALREADY_EXISTS";
    case GRPC_STATUS_PERMISSION_DENIED:
        return "PERMISSION_DENIED";
    case GRPC_STATUS_UNAUTHENTICATED:
        return "UNAUTHENTICATED";
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return "RESOURCE_EXHAUSTED";
    case GRPC_STATUS_FAILED_PRECONDITION:
        return "FAILED_PRECONDITION";
    case GRPC_STATUS_ABORTED:
        return "ABORTED";
    case GRPC_STATUS_OUT_OF_RANGE:
        return "OUT_OF_RANGE";
    case GRPC_STATUS_UNIMPLEMENTED:
        return "UNIMPLEMENTED";
    case GRPC_STATUS_INTERNAL:
        return "INTERNAL";
    case GRPC_STATUS_UNAVAILABLE:
        return "UNAVAILABLE";
    case GRPC_STATUS_DATA_LOSS:
        return "DATA_LOSS";
    case GRPC_STATUS__DO_NOT_USE:
        break;
    }
    return "UNRECOGNISED";
}

/* Decodes google.rpc.Status from the grpc-status-details-bin trailer, if present. */
static void sc_decode_details(const grpc_metadata_array *trailing, sc_status_t *status)
{
    for (size_t i = 0; i < trailing->count; i++) {
        const grpc_metadata *entry = &trailing->metadata[i];
        if (grpc_slice_str_cmp(entry->key, "grpc-status-details-bin") != 0) {
            continue;
        }
        Google__Rpc__Status *rich = google__rpc__status__unpack(
            NULL, GRPC_SLICE_LENGTH(entry->value), GRPC_SLICE_START_PTR(entry->value));
        for (size_t d = 0; rich != NULL && d < rich->n_details; d++) {
            const Google__Protobuf__Any *any = rich->details[d];
            if (strcmp(any->type_url, "type.googleapis.com/google.rpc.BadRequest") == 0 &&
                status->bad_request == NULL) {
                status->bad_request =
                    google__rpc__bad_request__unpack(NULL, any->value.len, any->value.data);
            } else if (strcmp(any->type_url,
                              "type.googleapis.com/google.rpc.PreconditionFailure") == 0 &&
                       status->precondition == NULL) {
                status->precondition = google__rpc__precondition_failure__unpack(
                    NULL, any->value.len, any->value.data);
            }
        }
        if (rich != NULL) {
            google__rpc__status__free_unpacked(rich, NULL);
        }
    }
}

static grpc_byte_buffer *sc_pack(const ProtobufCMessage *request)
{
    size_t length = protobuf_c_message_get_packed_size(request);
    grpc_slice slice = grpc_slice_malloc(length);
    protobuf_c_message_pack(request, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

static ProtobufCMessage *sc_unpack(grpc_byte_buffer *buffer,
                                   const ProtobufCMessageDescriptor *descriptor)
{
    grpc_byte_buffer_reader reader;
    if (buffer == NULL || !grpc_byte_buffer_reader_init(&reader, buffer)) {
        return NULL;
    }
    grpc_slice slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *message = protobuf_c_message_unpack(
        descriptor, NULL, GRPC_SLICE_LENGTH(slice), GRPC_SLICE_START_PTR(slice));
    grpc_slice_unref(slice);
    return message;
}

/* The request metadata of one call: the client's authorization and the call's
 * stockd-on-behalf-of. The on-behalf-of value is a reference-counted copy, released by
 * sc_metadata_release. */
typedef struct {
    grpc_metadata entries[SC_METADATA_MAX];
    size_t count;
    bool has_on_behalf_of;
} sc_metadata_t;

/* True when text may be sent as stockd-on-behalf-of: 1..SD_ON_BEHALF_OF_BYTES_MAX bytes of
 * printable ASCII (what an HTTP/2 header value may hold, and what stockd keeps). */
static bool sc_on_behalf_of_valid(const char *text)
{
    size_t length = strnlen(text, SD_ON_BEHALF_OF_BYTES_MAX + 1);
    return length > 0 && sd_on_behalf_of_valid((const unsigned char *)text, length);
}

/* Fills metadata for a call; false (nothing to release) when on_behalf_of is not sendable. */
static bool sc_metadata_init(const sc_client_t *client, const char *on_behalf_of,
                             sc_metadata_t *metadata)
{
    metadata->count = sc_client_metadata(client, metadata->entries);
    metadata->has_on_behalf_of = false;
    if (!sc_given(on_behalf_of)) {
        return true;
    }
    if (!sc_on_behalf_of_valid(on_behalf_of)) {
        return false;
    }
    grpc_metadata *entry = &metadata->entries[metadata->count++];
    entry->key = grpc_slice_from_static_string(SD_ON_BEHALF_OF_METADATA);
    entry->value = grpc_slice_from_copied_string(on_behalf_of);
    metadata->has_on_behalf_of = true;
    return true;
}

static void sc_metadata_release(sc_metadata_t *metadata)
{
    if (metadata->has_on_behalf_of) {
        grpc_slice_unref(metadata->entries[metadata->count - 1].value);
    }
}

/* What one unary call sends and receives. */
typedef struct {
    const sc_metadata_t *metadata;
    grpc_byte_buffer *send, *receive;
    grpc_metadata_array initial, trailing;
    grpc_status_code code;
    grpc_slice details;
} sc_exchange_t;

/* Runs the one batch of a unary call and waits for it. */
static void sc_run_batch(grpc_call *call, grpc_completion_queue *queue, sc_exchange_t *exchange)
{
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = exchange->metadata->count;
    ops[0].data.send_initial_metadata.metadata = (grpc_metadata *)exchange->metadata->entries;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = exchange->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &exchange->initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &exchange->receive;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &exchange->trailing;
    ops[5].data.recv_status_on_client.status = &exchange->code;
    ops[5].data.recv_status_on_client.status_details = &exchange->details;
    if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
        exchange->code = GRPC_STATUS_INTERNAL;
        return;
    }
    grpc_completion_queue_pluck(queue, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

/* Copies the outcome of a finished exchange into status and, on OK, unpacks the answer. */
/* The leader a replica named (trailing metadata stockd-leader), into status->leader. */
static void sc_status_take_leader(sc_status_t *status, const grpc_metadata_array *trailing)
{
    for (size_t i = 0; i < trailing->count; i++) {
        const grpc_metadata *entry = &trailing->metadata[i];
        if (grpc_slice_str_cmp(entry->key, "stockd-leader") == 0) {
            snprintf(status->leader, sizeof(status->leader), "%.*s",
                     (int)GRPC_SLICE_LENGTH(entry->value),
                     (const char *)GRPC_SLICE_START_PTR(entry->value));
        }
    }
}

bool sc_client_follow(sc_client_t *client, grpc_channel *channel, int code, grpc_slice details,
                      const grpc_metadata_array *trailing)
{
    size_t tried = client->targets_count;
    for (size_t i = 0; i < client->targets_count; i++) {
        tried = client->channels[i] == channel ? i : tried;
    }
    if (tried == client->targets_count) {
        return false;
    }
    sc_status_t status;
    sc_status_init(&status);
    status.code = code;
    snprintf(status.message, sizeof(status.message), "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
    sc_status_take_leader(&status, trailing);
    size_t next = 0;
    if (!sc_client_next_target(client, tried, &status, &next)) {
        return false;
    }
    /* only from where that call went: calls finishing together move the client once */
    size_t expected = atomic_load(&client->current);
    return expected % client->targets_count == tried &&
           atomic_compare_exchange_strong(&client->current, &expected, next);
}

static void sc_exchange_outcome(sc_exchange_t *exchange,
                                const ProtobufCMessageDescriptor *response_descriptor,
                                ProtobufCMessage **response_out, sc_status_t *status)
{
    status->code = (int)exchange->code;
    snprintf(status->message, sizeof(status->message), "%.*s",
             (int)GRPC_SLICE_LENGTH(exchange->details),
             (const char *)GRPC_SLICE_START_PTR(exchange->details));
    if (exchange->code == GRPC_STATUS_OK) {
        *response_out = sc_unpack(exchange->receive, response_descriptor);
        if (*response_out == NULL) {
            status->code = GRPC_STATUS_INTERNAL;
            snprintf(status->message, sizeof(status->message), "unparsable response");
        }
    } else {
        sc_decode_details(&exchange->trailing, status);
        sc_status_take_leader(status, &exchange->trailing);
    }
}

/* One attempt of a unary call on one target's channel. */
static int sc_call_once(sc_client_t *client, size_t target, const char *method,
                        const ProtobufCMessage *request,
                        const ProtobufCMessageDescriptor *response_descriptor,
                        ProtobufCMessage **response_out, const sc_call_options_t *options,
                        gpr_timespec deadline, sc_status_t *status)
{
    sc_status_init(status);
    *response_out = NULL;
    sc_metadata_t metadata;
    if (!sc_metadata_init(client, options->on_behalf_of, &metadata)) {
        status->code = GRPC_STATUS_INVALID_ARGUMENT; /* refused here: nothing was sent */
        snprintf(status->message, sizeof(status->message),
                 "on_behalf_of: must be 1..%d bytes of printable ASCII", SD_ON_BEHALF_OF_BYTES_MAX);
        return status->code;
    }
    grpc_completion_queue *queue = sc_thread_queue();
    grpc_slice method_slice = grpc_slice_from_static_string(method);
    grpc_call *call =
        grpc_channel_create_call(client->channels[target], NULL, GRPC_PROPAGATE_DEFAULTS, queue,
                                 method_slice, NULL, deadline, NULL);
    sc_exchange_t exchange = {.metadata = &metadata,
                              .send = sc_pack(request),
                              .code = GRPC_STATUS_UNKNOWN,
                              .details = grpc_empty_slice()};
    grpc_metadata_array_init(&exchange.initial);
    grpc_metadata_array_init(&exchange.trailing);
    sc_run_batch(call, queue, &exchange);
    sc_exchange_outcome(&exchange, response_descriptor, response_out, status);
    grpc_slice_unref(exchange.details);
    grpc_metadata_array_destroy(&exchange.initial);
    grpc_metadata_array_destroy(&exchange.trailing);
    grpc_byte_buffer_destroy(exchange.send);
    if (exchange.receive != NULL) {
        grpc_byte_buffer_destroy(exchange.receive);
    }
    grpc_call_unref(call);
    sc_metadata_release(&metadata);
    return status->code;
}

/* retry_unknown: after UNAVAILABLE or CANCELLED (an unknown outcome, or a refusal from every
 * replica while they elect a leader), whether to send again (time is left for a pause and another
 * try); sleeps the pause and names the replica to try. */
static bool sc_client_retry_unknown(sc_client_t *client, size_t tried, const sc_status_t *status,
                                    unsigned retries, gpr_timespec deadline, size_t *next_out)
{
    /* CANCELLED: a stopping replica's gRPC core cancels calls that arrive meanwhile */
    if (client->targets_count < 2 ||
        (status->code != GRPC_STATUS_UNAVAILABLE && status->code != GRPC_STATUS_CANCELLED)) {
        return false;
    }
    int64_t pause_ms = SC_RETRY_PAUSE_MS << (retries < 5 ? retries : 5);
    gpr_timespec resume =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(pause_ms, GPR_TIMESPAN));
    if (gpr_time_cmp(resume, deadline) >= 0) {
        return false;
    }
    struct timespec pause = {pause_ms / 1000, (pause_ms % 1000) * 1000000};
    nanosleep(&pause, NULL);
    *next_out = sc_client_target_after(client, tried, status);
    return true;
}

int sc_call_unary_with(sc_client_t *client, const char *method, const ProtobufCMessage *request,
                       const ProtobufCMessageDescriptor *response_descriptor,
                       ProtobufCMessage **response_out, const sc_call_options_t *options,
                       sc_status_t *status)
{
    /* one deadline for every attempt: following the leader never extends the caller's */
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                         gpr_time_from_millis(options->deadline_ms, GPR_TIMESPAN));
    size_t hops = 0;
    unsigned retries = 0;
    size_t target = atomic_load(&client->current) % client->targets_count;
    for (;;) {
        sc_call_once(client, target, method, request, response_descriptor, response_out, options,
                     deadline, status);
        size_t next = 0;
        bool again =
            hops < client->targets_count && sc_client_next_target(client, target, status, &next);
        hops += again ? 1 : 0;
        if (!again && options->retry_unknown &&
            sc_client_retry_unknown(client, target, status, retries, deadline, &next)) {
            again = true;
            retries++;
            hops = 0; /* after a pause, the replicas may be asked again */
        }
        if (!again) {
            return status->code;
        }
        atomic_store(&client->current, next); /* later calls start where this one goes */
        target = next;
        sc_status_free(status);
    }
}

int sc_call_unary(sc_client_t *client, const char *method, const ProtobufCMessage *request,
                  const ProtobufCMessageDescriptor *response_descriptor,
                  ProtobufCMessage **response_out, int64_t deadline_ms, sc_status_t *status)
{
    sc_call_options_t options = {.deadline_ms = deadline_ms};
    return sc_call_unary_with(client, method, request, response_descriptor, response_out, &options,
                              status);
}

#define SC_TYPED(fn, path, req_type, resp_type, resp_descriptor)                                   \
    int fn(sc_client_t *client, const req_type *request, resp_type **response_out,                 \
           int64_t deadline_ms, sc_status_t *status)                                               \
    {                                                                                              \
        return sc_call_unary(client, path, &request->base, &resp_descriptor,                       \
                             (ProtobufCMessage **)response_out, deadline_ms, status);              \
    }

void sc_request_id_generate(char out[SC_REQUEST_ID_GENERATED_BYTES])
{
    unsigned char random[16];
    size_t filled = 0;
    while (filled < sizeof(random)) {
        ssize_t got = getrandom(random + filled, sizeof(random) - filled, 0);
        if (got > 0) {
            filled += (size_t)got;
        }
    }
    memcpy(out, "sc-", 3);
    util_hex(random, sizeof(random), out + 3);
}

bool sc_outcome_unknown(int code)
{
    return code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_DEADLINE_EXCEEDED ||
           code == GRPC_STATUS_CANCELLED || code == GRPC_STATUS_UNKNOWN ||
           code == GRPC_STATUS_RESOURCE_EXHAUSTED || code == GRPC_STATUS_INTERNAL;
}

/* The three writes: same request_id field, same call. A request without a request_id is sent
 * as a shallow copy carrying a generated one, reported in status->request_id. Each comes in a
 * form with per-call options (fn_with) and the plain form with a deadline alone. */
#define SC_WRITE(fn, fn_with, path, req_type, resp_type, resp_descriptor)                          \
    int fn_with(sc_client_t *client, const req_type *request, resp_type **response_out,            \
                const sc_call_options_t *options, sc_status_t *status)                             \
    {                                                                                              \
        req_type copy = *request;                                                                  \
        char generated[SC_REQUEST_ID_GENERATED_BYTES];                                             \
        if (copy.request_id == NULL || copy.request_id[0] == '\0') {                               \
            sc_request_id_generate(generated);                                                     \
            copy.request_id = generated;                                                           \
        }                                                                                          \
        int code = sc_call_unary_with(client, path, &copy.base, &resp_descriptor,                  \
                                      (ProtobufCMessage **)response_out, options, status);         \
        snprintf(status->request_id, sizeof(status->request_id), "%s", copy.request_id);           \
        return code;                                                                               \
    }                                                                                              \
    int fn(sc_client_t *client, const req_type *request, resp_type **response_out,                 \
           int64_t deadline_ms, sc_status_t *status)                                               \
    {                                                                                              \
        sc_call_options_t options = {.deadline_ms = deadline_ms};                                  \
        return fn_with(client, request, response_out, &options, status);                           \
    }

SC_WRITE(sc_decrement, sc_decrement_with, "/stockd.v1.Inventory/Decrement",
         Stockd__V1__DecrementRequest, Stockd__V1__DecrementResponse,
         stockd__v1__decrement_response__descriptor)
SC_WRITE(sc_increment, sc_increment_with, "/stockd.v1.Inventory/Increment",
         Stockd__V1__IncrementRequest, Stockd__V1__IncrementResponse,
         stockd__v1__increment_response__descriptor)
SC_WRITE(sc_set_stock, sc_set_stock_with, "/stockd.v1.Inventory/SetStock",
         Stockd__V1__SetStockRequest, Stockd__V1__SetStockResponse,
         stockd__v1__set_stock_response__descriptor)
SC_TYPED(sc_get_stock, "/stockd.v1.Inventory/GetStock", Stockd__V1__GetStockRequest,
         Stockd__V1__GetStockResponse, stockd__v1__get_stock_response__descriptor)

int sc_batch_with(sc_client_t *client, const Stockd__V1__BatchRequest *request,
                  Stockd__V1__BatchResponse **response_out, const sc_call_options_t *options,
                  sc_status_t *status)
{
    int code = sc_call_unary_with(client, "/stockd.v1.Inventory/Batch", &request->base,
                                  &stockd__v1__batch_response__descriptor,
                                  (ProtobufCMessage **)response_out, options, status);
    if (code == GRPC_STATUS_OK && (*response_out)->n_results != request->n_writes) {
        /* not stockd's answer to this request: nobody can say what was applied */
        stockd__v1__batch_response__free_unpacked(*response_out, NULL);
        *response_out = NULL;
        snprintf(status->message, sizeof(status->message), "%s",
                 "the Batch answer does not hold one result per write; the outcome of each "
                 "write is unknown");
        status->code = GRPC_STATUS_INTERNAL;
        code = GRPC_STATUS_INTERNAL;
    }
    return code;
}

int sc_batch(sc_client_t *client, const Stockd__V1__BatchRequest *request,
             Stockd__V1__BatchResponse **response_out, int64_t deadline_ms, sc_status_t *status)
{
    sc_call_options_t options = {.deadline_ms = deadline_ms};
    return sc_batch_with(client, request, response_out, &options, status);
}

int sc_batch_result_code(const Stockd__V1__BatchResult *result)
{
    return result->status != NULL ? result->status->code : GRPC_STATUS_OK;
}

const char *sc_batch_result_message(const Stockd__V1__BatchResult *result)
{
    return result->status != NULL && result->status->message != NULL ? result->status->message : "";
}

SC_TYPED(sc_list_stock, "/stockd.v1.Inventory/ListStock", Stockd__V1__ListStockRequest,
         Stockd__V1__ListStockResponse, stockd__v1__list_stock_response__descriptor)
SC_TYPED(sc_history, "/stockd.v1.Inventory/History", Stockd__V1__HistoryRequest,
         Stockd__V1__HistoryResponse, stockd__v1__history_response__descriptor)

/* Starts one batch on a streaming call and waits for it. */
static bool sc_stream_step(grpc_call *call, grpc_completion_queue *queue, const grpc_op *ops,
                           size_t count)
{
    if (grpc_call_start_batch(call, ops, count, call, NULL) != GRPC_CALL_OK) {
        return false;
    }
    return grpc_completion_queue_pluck(queue, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
        .success;
}

int sc_call_stream(sc_client_t *client, const char *method, const ProtobufCMessage *request,
                   const ProtobufCMessageDescriptor *descriptor, sc_stream_fn *on_message,
                   void *context, int64_t deadline_ms, sc_status_t *status)
{
    sc_status_init(status);
    grpc_completion_queue *queue = sc_thread_queue();
    gpr_timespec deadline = deadline_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                               gpr_time_from_millis(deadline_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_REALTIME);
    grpc_call *call =
        grpc_channel_create_call(sc_client_channel(client), NULL, GRPC_PROPAGATE_DEFAULTS, queue,
                                 grpc_slice_from_static_string(method), NULL, deadline, NULL);
    grpc_byte_buffer *send = sc_pack(request);
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_metadata metadata[SC_METADATA_MAX];
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = sc_client_metadata(client, metadata);
    ops[0].data.send_initial_metadata.metadata = metadata;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    bool going = sc_stream_step(call, queue, ops, 4);
    while (going) {
        grpc_byte_buffer *receive = NULL;
        grpc_op receive_op;
        memset(&receive_op, 0, sizeof(receive_op));
        receive_op.op = GRPC_OP_RECV_MESSAGE;
        receive_op.data.recv_message.recv_message = &receive;
        if (!sc_stream_step(call, queue, &receive_op, 1) || receive == NULL) {
            break; /* the stream ended: the status tells why */
        }
        ProtobufCMessage *message = sc_unpack(receive, descriptor);
        grpc_byte_buffer_destroy(receive);
        if (message == NULL || !on_message(context, message)) {
            grpc_call_cancel(call, NULL);
            going = false;
        }
    }
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op status_op;
    memset(&status_op, 0, sizeof(status_op));
    status_op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    status_op.data.recv_status_on_client.trailing_metadata = &trailing;
    status_op.data.recv_status_on_client.status = &code;
    status_op.data.recv_status_on_client.status_details = &details;
    sc_stream_step(call, queue, &status_op, 1);
    status->code = (int)code;
    snprintf(status->message, sizeof(status->message), "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
    sc_decode_details(&trailing, status);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_byte_buffer_destroy(send);
    grpc_call_unref(call);
    return status->code;
}

int sc_list_all(sc_client_t *client, const Stockd__V1__ListStockRequest *request,
                sc_levels_fn *on_page, void *context, int64_t deadline_ms, sc_status_t *status)
{
    Stockd__V1__ListStockRequest page = *request;
    char *token = strdup(request->page_token);
    sc_status_init(status);
    for (;;) {
        if (token == NULL) { /* out of memory: a listing cut short must not look complete */
            status->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
            snprintf(status->message, sizeof(status->message), "out of memory in the client");
            return status->code;
        }
        page.page_token = token;
        Stockd__V1__ListStockResponse *response = NULL;
        sc_status_free(status);
        int code = sc_list_stock(client, &page, &response, deadline_ms, status);
        free(token);
        if (code != 0) {
            return code;
        }
        bool next = on_page(context, response->levels, response->n_levels) &&
                    response->next_page_token[0] != '\0';
        token = next ? strdup(response->next_page_token) : NULL;
        stockd__v1__list_stock_response__free_unpacked(response, NULL);
        if (!next) {
            return 0;
        }
    }
}

int sc_health_check(sc_client_t *client, const char *service, bool *serving_out,
                    int64_t deadline_ms, sc_status_t *status)
{
    Grpc__Health__V1__HealthCheckRequest request = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    request.service = (char *)service;
    Grpc__Health__V1__HealthCheckResponse *response = NULL;
    *serving_out = false;
    int code = sc_call_unary(client, "/grpc.health.v1.Health/Check", &request.base,
                             &grpc__health__v1__health_check_response__descriptor,
                             (ProtobufCMessage **)&response, deadline_ms, status);
    if (response != NULL) {
        *serving_out =
            response->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        grpc__health__v1__health_check_response__free_unpacked(response, NULL);
    }
    return code;
}
