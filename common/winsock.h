/**
 * @file winsock.h
 * @brief Starting and stopping Winsock 2.2, as chapter 01 teaches.
 */
#ifndef IOCP_TUTORIAL_WINSOCK_H
#define IOCP_TUTORIAL_WINSOCK_H

/**
 * @brief Starts Winsock, prints "WSAStartup: asked for 2.2, got X.Y", and returns 0 when
 *        it got 2.2, or -1 after reporting the failure (with its WSACleanup done).
 */
int start_winsock(void);

/** @brief Stops Winsock once for each successful start; returns 0, or -1 after reporting. */
int stop_winsock(void);

#endif
