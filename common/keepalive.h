/**
 * @file keepalive.h
 * @brief Chapter 13's TCP keep-alive, for the chapters after it.
 */
#ifndef IOCP_TUTORIAL_KEEPALIVE_H
#define IOCP_TUTORIAL_KEEPALIVE_H

#include <winsock2.h>

/**
 * @brief Asks TCP to probe the peer of @p socket_handle after @p keepalive_ms of silence,
 *        so a peer gone without a FIN or RST makes the pending receive fail; reports a
 *        failure and leaves the socket as it was.
 */
void start_keepalive(SOCKET socket_handle, DWORD keepalive_ms);

#endif
