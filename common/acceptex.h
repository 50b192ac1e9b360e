/**
 * @file acceptex.h
 * @brief Accepting with AcceptEx as chapter 09 teaches, for the chapters after it: a set
 *        of accepts kept outstanding on a listener associated with the completion port,
 *        completed on the workers, and cancelled and drained at quit. Chapter 15 binds the
 *        listener to a thread pool I/O object instead (acceptex_prepare_pool).
 */
#ifndef IOCP_TUTORIAL_ACCEPTEX_H
#define IOCP_TUTORIAL_ACCEPTEX_H

#include <winsock2.h>
#include <windows.h>
#include <mswsock.h>

/** Room for one address in an accept buffer: the longest address plus the 16 bytes required. */
#define ACCEPTEX_ADDRESS_SIZE ((DWORD)sizeof(struct sockaddr_storage) + 16)

/**
 * @brief Takes one accepted connection from peer @p peer ("address:port"); it owns
 *        @p socket_handle from then on. Runs on a worker (or a thread pool thread), and on
 *        several at once.
 */
typedef void (*admit_function)(void *context, SOCKET socket_handle, const char *peer);

/** One outstanding AcceptEx: OVERLAPPED first; `socket` is INVALID_SOCKET while idle. */
struct accept_context {
    OVERLAPPED overlapped; /**< first, and valid until the completion is dequeued */
    SOCKET socket;         /**< the client's socket-to-be; INVALID_SOCKET while idle */
    char addresses[2 * ACCEPTEX_ADDRESS_SIZE]; /**< where AcceptEx writes both addresses */
};

/** The accepts of one listener; its fields belong to acceptex.c. */
struct acceptex {
    SOCKET listener;                         /**< associated with the port, key: this struct */
    int family;                              /**< the listener's, for the sockets made beforehand */
    LPFN_ACCEPTEX accept_ex;                 /**< loaded from the listener's provider */
    LPFN_GETACCEPTEXSOCKADDRS get_addresses; /**< loaded likewise */
    admit_function admit;                    /**< called with each accepted connection */
    void *context;                           /**< passed to admit */
    struct accept_context *accepts;          /**< `count` contexts */
    unsigned count;                          /**< accepts kept outstanding */
    CRITICAL_SECTION lock;                   /**< guards stopping, pending, idle, each socket */
    int stopping;                            /**< set by acceptex_stop: post no more */
    unsigned pending;                        /**< AcceptEx calls whose completion is not handled */
    unsigned idle;                           /**< contexts with no AcceptEx in flight */
    HANDLE drained;                          /**< manual-reset event: stopping and none pending */
    PTP_IO io; /**< the listener's thread pool I/O object, or NULL when it is on a port */
};

/**
 * @brief Prepares @p count accepts on @p listener (address family @p family), all idle,
 *        and associates the listener with @p port under @p acceptex as its completion key;
 *        returns 0, or -1 after reporting the failure. Call before any worker runs.
 */
int acceptex_prepare(struct acceptex *acceptex, SOCKET listener, int family, HANDLE port,
                     unsigned count, admit_function admit, void *context);

/**
 * @brief Prepares @p count accepts on @p listener as acceptex_prepare does, but binds the
 *        listener to a new thread pool I/O object in @p environment, whose callback
 *        handles each accept's completion (acceptex_completed) on a pool thread; returns
 *        0, or -1 after reporting the failure. Call before any accept is posted.
 */
int acceptex_prepare_pool(struct acceptex *acceptex, SOCKET listener, int family,
                          PTP_CALLBACK_ENVIRON environment, unsigned count, admit_function admit,
                          void *context);

/** @brief Posts every idle accept unless stopping; returns how many are in flight. */
unsigned acceptex_post_idle(struct acceptex *acceptex);

/**
 * @brief Handles a dequeued completion whose key is @p acceptex: posts that accept again
 *        at once, then admits the connection, or closes its socket if the accept failed
 *        with @p error (0 when it succeeded).
 */
void acceptex_completed(struct acceptex *acceptex, OVERLAPPED *overlapped, DWORD error);

/**
 * @brief Posts no more accepts, cancels those outstanding, waits up to @p timeout_ms for
 *        their completions to be handled and closes the listener; returns 0, or -1 if an
 *        accept is still in flight. With a thread pool I/O object, it also waits for the
 *        object's callbacks to return and closes the object.
 */
int acceptex_stop(struct acceptex *acceptex, DWORD timeout_ms);

/** @brief Frees what acceptex_prepare made; once no worker runs. */
void acceptex_destroy(struct acceptex *acceptex);

#endif
