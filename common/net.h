/* net.h — listen/connect address parsing. */
#ifndef STOCKD_NET_H
#define STOCKD_NET_H

#include <netinet/in.h>
#include <stdbool.h>

/* Parses "HOST:PORT" where HOST is an IPv4 literal or "localhost" and PORT is 0..65535. */
bool net_parse_ipv4_host_port(const char *text, struct sockaddr_in *address_out);

/* True when an address can only reach this machine: 127.0.0.0/8, ::1, localhost, or a unix
 * socket. Takes listen addresses ("127.0.0.1:50051", "[::1]:0", "unix:/path") and gRPC
 * targets (also "dns:///localhost:50051", "ipv4:127.0.0.1:50051"). */
bool net_address_is_loopback(const char *address);

#endif
