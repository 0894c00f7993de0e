/* net.h — listen/connect address parsing. */
#ifndef STOCKD_NET_H
#define STOCKD_NET_H

#include <netinet/in.h>
#include <stdbool.h>

/* Parses "HOST:PORT" where HOST is an IPv4 literal or "localhost" and PORT is 0..65535. */
bool net_parse_ipv4_host_port(const char *text, struct sockaddr_in *address_out);

#endif
