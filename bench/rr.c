/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Copyright: Contributors to the yogurt.phone collection */
/*
 * rr: a minimal TCP request/response benchmark, standing in for netperf's TCP_RR and
 * TCP_CRR (netperf is not in Debian main). Compiled by bench/run with gcc.
 *
 *   rr server PORT                      accept forever; per connection: echo each byte
 *                                       read until EOF, then close (one connection at a time)
 *   rr rr  HOST PORT SECONDS [MAX]      one connection, TCP_NODELAY; a transaction is
 *                                       write 1 byte + read 1 byte (netperf TCP_RR, 1/1)
 *   rr crr HOST PORT SECONDS [MAX]      a transaction is socket + connect + write 1 byte +
 *                                       read 1 byte + close (netperf TCP_CRR, 1/1)
 *
 * The client stops after SECONDS or after MAX transactions, whichever comes first, and
 * prints "<transactions> <seconds> <transactions per second>". The client closes first,
 * so TIME_WAIT sockets pile up on the client side for crr: run it in a namespace with
 * net.ipv4.tcp_tw_reuse=1 and a wide ip_local_port_range (bench/datapath.py does).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void serve(int port)
{
	struct sockaddr_in6 addr = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	int one = 1, zero = 0, lfd, fd;
	char c;

	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET6, SOCK_STREAM, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));	/* v4 too */
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die("bind");
	if (listen(lfd, 1024) < 0)
		die("listen");
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		while (read(fd, &c, 1) == 1)
			if (write(fd, &c, 1) != 1)
				break;
		close(fd);
	}
}

static int dial(const struct addrinfo *ai)
{
	int one = 1, fd = socket(ai->ai_family, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("connect");
	return fd;
}

static int transact(int fd)
{
	char c = 'x';

	return write(fd, &c, 1) == 1 && read(fd, &c, 1) == 1;
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	double seconds, start, stop, end;
	long max, n = 0;
	int fd = -1, crr;

	if (argc == 3 && !strcmp(argv[1], "server"))
		serve(atoi(argv[2]));	/* never returns */
	if (argc < 5 || (strcmp(argv[1], "rr") && strcmp(argv[1], "crr"))) {
		fprintf(stderr, "usage: rr server PORT | rr {rr|crr} HOST PORT SECONDS [MAX]\n");
		return 2;
	}
	crr = !strcmp(argv[1], "crr");
	seconds = atof(argv[4]);
	max = argc > 5 ? atol(argv[5]) : 0;
	if (getaddrinfo(argv[2], argv[3], &hints, &ai))
		die("getaddrinfo");
	start = now();
	end = start + seconds;
	if (!crr)
		fd = dial(ai);
	/* check the clock every 64 transactions: clock_gettime is cheap, but not free */
	for (;;) {
		if (crr) {
			fd = dial(ai);
			if (!transact(fd))
				die("transaction");
			close(fd);
		} else if (!transact(fd)) {
			die("transaction");
		}
		n++;
		if ((max && n >= max) || ((n & 63) == 0 && now() >= end))
			break;
	}
	stop = now();
	if (!crr)
		close(fd);
	printf("%ld %.6f %.1f\n", n, stop - start, n / (stop - start));
	return 0;
}
