/* net.c — see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <string.h>

#include "util.h"

bool net_parse_ipv4_host_port(const char *text, struct sockaddr_in *address_out)
{
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (colon == NULL || colon == text || (size_t)(colon - text) >= 64) {
        return false;
    }
    char host[64];
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    int64_t port;
    if (!util_parse_int64(colon + 1, &port) || port < 0 || port > 65535) {
        return false;
    }
    memset(address_out, 0, sizeof(*address_out));
    address_out->sin_family = AF_INET;
    address_out->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) {
        memcpy(host, "127.0.0.1", sizeof("127.0.0.1"));
    }
    return inet_pton(AF_INET, host, &address_out->sin_addr) == 1;
}
