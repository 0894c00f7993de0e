/* net.c — see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

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

/* Strips a gRPC target scheme ("dns:///", "dns:", "ipv4:", "ipv6:"). */
static const char *net_target_address(const char *target)
{
    static const char *const schemes[] = {"dns:///", "dns:", "ipv4:", "ipv6:"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strncmp(target, schemes[i], strlen(schemes[i])) == 0) {
            return target + strlen(schemes[i]);
        }
    }
    return target;
}

bool net_address_is_loopback(const char *address)
{
    if (strncmp(address, "unix:", 5) == 0 || strncmp(address, "unix-abstract:", 14) == 0) {
        return true;
    }
    address = net_target_address(address);
    char host[256];
    const char *colon = strrchr(address, ':');
    const char *bracket = strrchr(address, ']');
    /* "::1" without brackets or port: the last colon is inside the address */
    size_t length = colon && (bracket == NULL || colon > bracket) && strchr(address, ':') == colon
                        ? (size_t)(colon - address)
                    : bracket ? (size_t)(bracket - address + 1)
                              : strlen(address);
    if (length >= sizeof(host)) {
        return false;
    }
    memcpy(host, address, length);
    host[length] = '\0';
    if (length >= 2 && host[0] == '[' && host[length - 1] == ']') { /* [::1]:50051 */
        memmove(host, host + 1, length - 2);
        host[length - 2] = '\0';
    }
    if (strcasecmp(host, "localhost") == 0) {
        return true;
    }
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    return inet_pton(AF_INET6, host, &v6) == 1 && memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0;
}
