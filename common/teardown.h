/**
 * @file teardown.h
 * @brief The parts of chapter 08's shutdown that know nothing of a client's fields, for
 *        the chapters after it: holding a reference only while one is held, waiting for a
 *        drain, and stopping the worker threads.
 */
#ifndef IOCP_TUTORIAL_TEARDOWN_H
#define IOCP_TUTORIAL_TEARDOWN_H

#include <windows.h>

/**
 * @brief Adds one to @p references unless it has reached zero (then the context is on its
 *        way back to its pool and must not be touched); returns 1 when it added one.
 */
int hold_if_alive(volatile LONG *references);

/**
 * @brief Waits up to @p timeout_ms for the event @p drained; returns 0 once it is set, or
 *        -1 after saying on stderr that @p what is still in flight (or reporting the wait).
 */
int wait_for_drain(HANDLE drained, DWORD timeout_ms, const char *what);

/**
 * @brief Posts one stop packet (no OVERLAPPED) per worker to @p port, waits for all
 *        @p count workers to end, closes their handles and frees @p workers; returns 0,
 *        or -1 after reporting the failure.
 */
int stop_workers(HANDLE port, HANDLE *workers, unsigned count);

#endif
