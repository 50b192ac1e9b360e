/**
 * @file connection.h
 * @brief How chapters 08 to 11 close a client's socket, for the chapters after it: its
 *        pending I/O cancelled first, so every operation still gets its completion.
 */
#ifndef IOCP_TUTORIAL_CONNECTION_H
#define IOCP_TUTORIAL_CONNECTION_H

#include <winsock2.h>

/**
 * @brief Cancels the I/O pending on @p socket_handle, so that each completes (with 995),
 *        then closes it: gracefully (FIN after the data already sent), or when @p abortive
 *        with a reset that discards anything unsent.
 */
void close_connection(SOCKET socket_handle, int abortive);

#endif
