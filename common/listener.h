/**
 * @file listener.h
 * @brief The listening socket of chapter 02: its address, its options, and the socket
 *        itself, for every chapter from 03 on.
 */
#ifndef IOCP_TUTORIAL_LISTENER_H
#define IOCP_TUTORIAL_LISTENER_H

#include <winsock2.h>
#include <ws2tcpip.h>

#include <stddef.h>

#include "options.h"

/** Room for "[" + the longest IPv6 text + "]:65535" and its terminating zero. */
#define ADDRESS_TEXT_SIZE (INET6_ADDRSTRLEN + 9)

/** @brief Closes a socket we are done with, reporting a failure. */
void close_socket(SOCKET socket_handle);

/**
 * @brief Writes "address:port" (IPv6 as "[address]:port") for an IPv4 or IPv6 socket
 *        address into @p text and returns @p text.
 */
const char *format_address(const struct sockaddr *address, char *text, size_t size);

/**
 * @brief Fills in the address to listen on, IPv4 loopback unless --bind names an IPv4 or
 *        IPv6 address, and returns its length, or 0 after saying why --bind is no address.
 */
int make_listen_address(const struct options *options, struct sockaddr_storage *address);

/** @brief Sets an integer socket option; returns 0, or -1 after reporting it as @p what. */
int set_int_option(SOCKET socket_handle, int level, int name, const char *what, int value);

/**
 * @brief Opens an overlapped TCP socket with the address to itself (SO_EXCLUSIVEADDRUSE),
 *        binds and listens on it, prints "listening on ADDRESS", and returns it, or
 *        INVALID_SOCKET after reporting the failure.
 */
SOCKET open_listener(const struct sockaddr_storage *address, int length);

#endif
