/* main.c — stockd-gateway: configuration, start-up (development keys when asked), signal
 * handling and shutdown. */
#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "devkeys.h"
#include "http.h"
#include "log.h"
#include "routes.h"

typedef struct {
    const char *listen;
    const char *stockd;
    const char *wix_app_id;
    const char *wix_public_key;
    const char *default_tenant;
    int64_t deadline_ms;
    int64_t jwt_skew_s;
    int64_t jwt_lifetime_max_s;
    int64_t body_bytes_max;
    int64_t connections_max;
    int64_t connections_per_ip_max;
    int64_t connection_timeout_s;
    int64_t receive_deadline_s;
    int64_t verifications_max;
    int64_t coalesce_senders;
    int64_t coalesce_wait_us;
    bool dev;
    const char *dev_dir;
    const char *log_level;
    /* TLS and the bearer token towards stockd (docs/api.md §6); "" = not given */
    const char *tls_ca;
    bool insecure;
    const char *tls_cert;
    const char *tls_key;
    const char *token;
    const char *token_file;
} gw_config_t;

static const char *const gw_level_choices[] = {"debug", "info", "warn", "error", NULL};

#define GW_OPT(flag, env, type, field, def, lo, hi, choices, help)                                 \
    {                                                                                              \
        flag, env, type, offsetof(gw_config_t, field), def, lo, hi, choices, false, help           \
    }

static const cfg_option_t gw_options[] = {
    GW_OPT("listen", "STOCKD_GATEWAY_LISTEN", CFG_STRING, listen, "127.0.0.1:8080", 0, 0, NULL,
           "HTTP listen address HOST:PORT (port 0 = any free port, logged)"),
    GW_OPT("stockd", "STOCKD_GATEWAY_STOCKD", CFG_STRING, stockd, "127.0.0.1:50051", 0, 0, NULL,
           "stockd gRPC address; replicas as A,B,C (calls follow the leader, and a write of "
           "unknown outcome is sent again with its request_id within the deadline)"),
    GW_OPT("wix-app-id", "STOCKD_GATEWAY_WIX_APP_ID", CFG_STRING, wix_app_id, "", 0, 0, NULL,
           "the Wix app id (the JWT aud); required unless --dev"),
    GW_OPT("wix-public-key", "STOCKD_GATEWAY_WIX_PUBLIC_KEY", CFG_STRING, wix_public_key, "", 0, 0,
           NULL,
           "file with the Wix app public key: PEM, or base64 of the PEM; required "
           "unless --dev"),
    GW_OPT("default-tenant", "STOCKD_GATEWAY_DEFAULT_TENANT", CFG_STRING, default_tenant, "default",
           0, 0, NULL, "tenant for calls without metadata.instanceId"),
    GW_OPT("deadline-ms", "STOCKD_GATEWAY_DEADLINE_MS", CFG_INT, deadline_ms, "3000", 10, 60000,
           NULL, "deadline of each call to stockd"),
    GW_OPT("jwt-skew", "STOCKD_GATEWAY_JWT_SKEW", CFG_DURATION, jwt_skew_s, "60s", 0, 600, NULL,
           "allowed clock skew for exp/iat/nbf"),
    GW_OPT("jwt-lifetime-max", "STOCKD_GATEWAY_JWT_LIFETIME_MAX", CFG_DURATION, jwt_lifetime_max_s,
           "1h", 1, GW_JWT_LIFETIME_MAX_S, NULL,
           "longest token lifetime exp - iat (401 beyond); keep it below stockd's "
           "--idempotency-ttl"),
    GW_OPT("body-max-bytes", "STOCKD_GATEWAY_BODY_MAX_BYTES", CFG_INT, body_bytes_max, "1048576",
           1024, 16 * 1024 * 1024, NULL, "largest request body (413 beyond)"),
    GW_OPT("max-connections", "STOCKD_GATEWAY_MAX_CONNECTIONS", CFG_INT, connections_max, "512", 1,
           10000, NULL, "concurrent connections (one thread each)"),
    GW_OPT("max-connections-per-ip", "STOCKD_GATEWAY_MAX_CONNECTIONS_PER_IP", CFG_INT,
           connections_per_ip_max, "128", 0, 10000, NULL,
           "concurrent connections from one client address (0 = no limit); behind a proxy every "
           "connection comes from the proxy"),
    GW_OPT("connection-timeout", "STOCKD_GATEWAY_CONNECTION_TIMEOUT", CFG_DURATION,
           connection_timeout_s, "10s", 1, 3600, NULL, "idle connection timeout"),
    GW_OPT("receive-deadline", "STOCKD_GATEWAY_RECEIVE_DEADLINE", CFG_DURATION, receive_deadline_s,
           "10s", 1, 3600, NULL,
           "absolute time to receive a whole request (headers and body) from a connection's "
           "start or its previous answer; the connection is closed beyond"),
    GW_OPT("max-verifications", "STOCKD_GATEWAY_MAX_VERIFICATIONS", CFG_INT, verifications_max,
           "16", 1, GW_VERIFICATIONS_MAX_LIMIT, NULL,
           "tokens verified at once; a call finding none free within 100 ms is answered 503"),
    GW_OPT("coalesce-senders", "STOCKD_GATEWAY_COALESCE_SENDERS", CFG_INT, coalesce_senders, "4", 0,
           64, NULL,
           "calls to stockd in flight at once; concurrent Wix calls beyond them wait and go "
           "together in one Batch call (0 = every Wix call alone, unbounded)"),
    GW_OPT("coalesce-wait-us", "STOCKD_GATEWAY_COALESCE_WAIT_US", CFG_INT, coalesce_wait_us, "100",
           0, 10000, NULL,
           "longest wait, in microseconds, for verified calls being mapped to join a Batch (only "
           "while there are such calls: a lone call is never delayed)"),
    GW_OPT("dev", "STOCKD_GATEWAY_DEV", CFG_BOOL, dev, "false", 0, 0, NULL,
           "development mode: without a key, make a local key pair and app id in --dev-dir"),
    GW_OPT("dev-dir", "STOCKD_GATEWAY_DEV_DIR", CFG_STRING, dev_dir, "./stockd-gateway-dev", 0, 0,
           NULL, "where development mode keeps its keys"),
    GW_OPT("log-level", "STOCKD_GATEWAY_LOG_LEVEL", CFG_CHOICE, log_level, "info", 0, 0,
           gw_level_choices, "debug|info|warn|error"),
    GW_OPT("insecure", "STOCKD_GATEWAY_INSECURE", CFG_BOOL, insecure, "false", 0, 0, NULL,
           "send --token in plaintext to a non-loopback stockd (without TLS it is refused)"),
    GW_OPT("tls-ca", "STOCKD_GATEWAY_TLS_CA", CFG_STRING, tls_ca, "", 0, 0, NULL,
           "PEM file of the CA(s) that signed stockd's certificate; given: speak TLS to stockd"),
    GW_OPT("tls-cert", "STOCKD_GATEWAY_TLS_CERT", CFG_STRING, tls_cert, "", 0, 0, NULL,
           "PEM file of the gateway's client certificate for mTLS to stockd (with --tls-key)"),
    GW_OPT("tls-key", "STOCKD_GATEWAY_TLS_KEY", CFG_STRING, tls_key, "", 0, 0, NULL,
           "PEM file of the gateway's private key (with --tls-cert)"),
    GW_OPT("token", "STOCKD_GATEWAY_TOKEN", CFG_SECRET, token, "", 0, 0, NULL,
           "bearer token sent to stockd with every call (never logged; prefer --token-file)"),
    GW_OPT("token-file", "STOCKD_GATEWAY_TOKEN_FILE", CFG_STRING, token_file, "", 0, 0, NULL,
           "file whose first line is the bearer token sent to stockd"),
};

static const cfg_spec_t gw_spec = {
    "stockd-gateway",
    "stockd-gateway — verifies Wix Inventory Service Plugin calls and forwards them to stockd.",
    gw_options, sizeof(gw_options) / sizeof(gw_options[0])};

static const char *gw_route_names[GW_METRICS_ROUTES_MAX];

static void gw_observe(void *context, const char *route, unsigned int status, double latency_ms)
{
    gw_context_t *gateway = context;
    gw_metrics_observe(gateway->metrics, route, status, latency_ms);
}

/* Resolves the key and app id: configured, or development ones. */
static int gw_resolve_identity(gw_config_t *config, char *key_path, size_t key_capacity,
                               char *app_id, size_t app_id_capacity)
{
    if (config->wix_public_key[0] != '\0' && config->wix_app_id[0] != '\0') {
        snprintf(key_path, key_capacity, "%s", config->wix_public_key);
        /* an app id read from a file or Secret often ends in a newline: drop surrounding
         * whitespace, which no app id contains */
        const char *start = config->wix_app_id;
        while (*start == ' ' || *start == '\t' || *start == '\r' || *start == '\n') {
            start++;
        }
        snprintf(app_id, app_id_capacity, "%s", start);
        size_t length = strlen(app_id);
        while (length > 0 && strchr(" \t\r\n", app_id[length - 1]) != NULL) {
            app_id[--length] = '\0';
        }
        return 0;
    }
    if (!config->dev) {
        fprintf(stderr,
                "missing required option --%s (or env %s); use --dev for local "
                "development keys\n",
                config->wix_app_id[0] == '\0' ? "wix-app-id" : "wix-public-key",
                config->wix_app_id[0] == '\0' ? "STOCKD_GATEWAY_WIX_APP_ID"
                                              : "STOCKD_GATEWAY_WIX_PUBLIC_KEY");
        return -1;
    }
    char error[256];
    if (gw_dev_keys_ensure(config->dev_dir, key_path, key_capacity, app_id, app_id_capacity, error,
                           sizeof(error)) != 0) {
        SD_LOG(LOG_ERROR, "dev_keys_failed", LF_STR("error", error));
        return -1;
    }
    char hint[1024];
    snprintf(hint, sizeof(hint),
             "sign: stockctl wix-sign --key %s/%s --app-id %s REQUEST.json "
             "> token; send: curl -s -X POST --data-binary @token "
             "http://%s/v1/decrement",
             config->dev_dir, GW_DEV_PRIVATE_KEY_FILE, app_id, config->listen);
    SD_LOG(LOG_WARN, "dev_mode", LF_STR("app_id", app_id), LF_STR("public_key", key_path),
           LF_STR("hint", hint));
    return 0;
}

/* The bearer token: --token, or --token-file's first line (read into buffer), not both.
 * *token_out is "" for none. False after logging why (never the token). */
static bool gw_resolve_token(const gw_config_t *config, char buffer[SC_TOKEN_BYTES_MAX + 1],
                             const char **token_out)
{
    char error[SC_ERROR_BYTES];
    switch (sc_token_resolve(config->token, config->token_file, buffer, token_out, error,
                             sizeof(error))) {
    case SC_TOKEN_SOURCE_BOTH:
        SD_LOG(LOG_ERROR, "stockd_credentials_invalid",
               LF_STR("error", "give one of --token (STOCKD_GATEWAY_TOKEN) and --token-file "
                               "(STOCKD_GATEWAY_TOKEN_FILE), not both"));
        return false;
    case SC_TOKEN_SOURCE_FILE_BAD:
        SD_LOG(LOG_ERROR, "stockd_credentials_invalid", LF_STR("option", "token-file"),
               LF_STR("error", error));
        return false;
    case SC_TOKEN_SOURCE_OK:
        break;
    }
    return true;
}

/* The client the gateway calls stockd with: TLS files and the token from the options. NULL
 * after logging why, so that a bad file stops the gateway at start rather than failing every
 * call. */
static sc_client_t *gw_client_new(const gw_config_t *config)
{
    char buffer[SC_TOKEN_BYTES_MAX + 1];
    sc_client_options_t options = {.tls_ca = config->tls_ca,
                                   .tls_cert = config->tls_cert,
                                   .tls_key = config->tls_key,
                                   .allow_plaintext_token = config->insecure};
    if (!gw_resolve_token(config, buffer, &options.token)) {
        return NULL;
    }
    char error[SC_ERROR_BYTES];
    sc_client_t *client = sc_client_new_with(config->stockd, &options, error, sizeof(error));
    if (client == NULL) { /* the client copied the token, so buffer may go */
        SD_LOG(LOG_ERROR, "stockd_credentials_invalid", LF_STR("error", error));
    }
    return client;
}

static int gw_run(gw_config_t *config, sc_client_t *client, sigset_t *signals)
{
    char key_path[1024], app_id[128];
    if (gw_resolve_identity(config, key_path, sizeof(key_path), app_id, sizeof(app_id)) != 0) {
        return 2;
    }
    char error[512];
    EVP_PKEY *key = gw_jwt_load_public_key(key_path, error, sizeof(error));
    if (key == NULL) {
        SD_LOG(LOG_ERROR, "wix_public_key_invalid", LF_STR("error", error));
        return 2;
    }
    for (size_t i = 0; i < gw_routes_count; i++) {
        gw_route_names[i] = gw_routes[i].name;
    }
    gw_context_t context = {
        .verifier = {.public_key = key, .app_id = app_id, .skew_s = config->jwt_skew_s},
        .client = client,
        .default_tenant = config->default_tenant,
        .deadline_ms = config->deadline_ms,
        .metrics = gw_metrics_new(gw_route_names, gw_routes_count),
        .jwt_lifetime_max_s = config->jwt_lifetime_max_s};
    if (!gw_jwt_verifier_prepare(&context.verifier)) {
        SD_LOG(LOG_WARN, "jwt_templates_unavailable",
               LF_STR("effect", "each token's verify context is set up afresh (slower)"));
    }
    if (config->coalesce_senders > 0) {
        gw_coalescer_options_t coalescing = {client, (size_t)config->coalesce_senders,
                                             config->coalesce_wait_us};
        context.coalescer = gw_coalescer_new(&coalescing);
        gw_metrics_attach_coalescer(context.metrics, context.coalescer);
    }
    gw_http_options_t http_options = {config->listen,
                                      (size_t)config->body_bytes_max,
                                      (unsigned int)config->connections_max,
                                      (unsigned int)config->connections_per_ip_max,
                                      (unsigned int)config->connection_timeout_s,
                                      (unsigned int)config->receive_deadline_s,
                                      gw_routes,
                                      gw_routes_count,
                                      &context,
                                      gw_observe};
    int port = 0, exit_code = 1;
    bool slots = gw_slots_init(&context.verify_slots, (unsigned int)config->verifications_max);
    gw_http_t *http = context.client && context.metrics && slots &&
                              (config->coalesce_senders == 0 || context.coalescer != NULL)
                          ? gw_http_start(&http_options, &port)
                          : NULL;
    if (http != NULL) {
        char bound[128];
        const char *colon = strrchr(config->listen, ':');
        snprintf(bound, sizeof(bound), "%.*s:%d", (int)(colon - config->listen), config->listen,
                 port);
        SD_LOG(LOG_INFO, "listening", LF_STR("address", bound), LF_STR("stockd", config->stockd),
               LF_STR("app_id", app_id),
               LF_BOOL("stockd_tls", config->tls_ca[0] != '\0' || config->tls_cert[0] != '\0'));
        int signal_number = 0;
        sigwait(signals, &signal_number);
        SD_LOG(LOG_INFO, "shutdown_started",
               LF_STR("signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"));
        gw_http_stop(http);
        SD_LOG(LOG_INFO, "shutdown_complete", LF_END);
        exit_code = 0;
    }
    gw_slots_destroy(&context.verify_slots);
    gw_metrics_free(context.metrics);
    gw_coalescer_free(context.coalescer); /* after the server: no call runs any more */
    gw_jwt_verifier_release(&context.verifier);
    EVP_PKEY_free(key);
    return exit_code;
}

int main(int argc, char **argv)
{
    gw_config_t config;
    memset(&config, 0, sizeof(config));
    cfg_parse_result_t parsed = cfg_parse(&gw_spec, &config, argc, argv, 1, NULL, stdout, stderr);
    if (parsed != CFG_PARSE_OK) {
        return parsed == CFG_PARSE_EXIT_SUCCESS ? 0 : 2;
    }
    log_level_t level = LOG_INFO;
    log_level_parse(config.log_level, &level);
    log_init("stockd-gateway", level);
    if (strrchr(config.listen, ':') == NULL) {
        fprintf(stderr, "invalid value \"%s\" for --listen: expected HOST:PORT\n", config.listen);
        return 2;
    }
    cfg_log_effective(&gw_spec, &config); /* --token is a CFG_SECRET: never logged */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    grpc_init();
    sc_client_t *client = gw_client_new(&config);
    int exit_code = client != NULL ? gw_run(&config, client, &signals) : 2;
    sc_client_free(client);
    sc_thread_release();
    grpc_shutdown();
    return exit_code;
}
