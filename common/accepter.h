/**
 * @file accepter.h
 * @brief The accepter thread of chapter 03, for the chapters after it: it takes
 *        connections off a listener's backlog and hands each one to a function of the
 *        chapter's, until it is told to stop.
 */
#ifndef IOCP_TUTORIAL_ACCEPTER_H
#define IOCP_TUTORIAL_ACCEPTER_H

#include <winsock2.h>
#include <windows.h>

/**
 * @brief Takes one accepted connection (a blocking socket with no event selected) from
 *        peer @p peer ("address:port"); it owns @p socket_handle from then on. Runs on the
 *        accepter thread, one call at a time.
 */
typedef void (*admit_function)(void *context, SOCKET socket_handle, const char *peer);

/** The accepter's state; its fields belong to accepter.c. */
struct accepter {
    SOCKET listener;             /**< the listening socket; closed by accepter_stop */
    admit_function admit;        /**< called with each accepted connection */
    void *context;               /**< passed to admit */
    HANDLE stop;                 /**< manual-reset event: set by accepter_stop */
    WSAEVENT connection_waiting; /**< signalled by Winsock while the backlog is not empty */
    HANDLE thread;               /**< the accepter thread */
};

/**
 * @brief Starts a thread that accepts on @p listener and calls @p admit for every
 *        connection; returns 0, or -1 after reporting the failure (nothing is left open,
 *        and the listener stays the caller's).
 */
int accepter_start(struct accepter *accepter, SOCKET listener, admit_function admit, void *context);

/**
 * @brief Stops the accepter thread, waits for it and closes the listener; returns 0, or -1
 *        if accepting had ended early after an error (or the thread could not be waited for).
 */
int accepter_stop(struct accepter *accepter);

#endif
