/**
 * @file ticker.h
 * @brief Chapter 13's ticks, for the chapters after it: one timer-queue timer whose
 *        callback posts a tick packet into a completion port, at most one at a time.
 */
#ifndef IOCP_TUTORIAL_TICKER_H
#define IOCP_TUTORIAL_TICKER_H

#include <windows.h>

/**
 * A tick source. A tick packet carries the ticker's address as its completion key and
 * `packet` as its OVERLAPPED, so a worker tells it from a stop packet (no OVERLAPPED)
 * and from any client's I/O. `pending` is set by the timer's thread and cleared by the
 * worker that handles the tick, so it changes only through Interlocked calls.
 */
struct ticker {
    HANDLE port;           /**< where the ticks go */
    HANDLE timer;          /**< NULL when stopped */
    DWORD period_ms;       /**< between ticks */
    OVERLAPPED packet;     /**< what every tick carries */
    volatile LONG pending; /**< a tick is in the port, not handled yet */
};

/**
 * @brief The period that checks an idle timeout of @p timeout_ms often enough: a quarter
 *        of it, so a client is closed at most a quarter late, and at most a second.
 */
DWORD tick_period(LONG64 timeout_ms);

/**
 * @brief Starts a timer that posts a tick into @p port every @p period_ms; returns 0, or
 *        -1 after reporting the error.
 */
int ticker_start(struct ticker *ticker, HANDLE port, DWORD period_ms);

/** @brief Whether a dequeued completion key is this ticker's, that is, the packet a tick. */
int ticker_owns(const struct ticker *ticker, ULONG_PTR completion_key);

/**
 * @brief Call first when a worker handles a tick: lets the timer post the next one, so a
 *        tick that fires while this one is handled is queued, not dropped.
 */
void ticker_rearm(struct ticker *ticker);

/**
 * @brief Stops the timer and waits for a callback that is running, so no tick is posted
 *        after it returns 0; -1 after reporting the error (a tick may still come). A tick
 *        already in the port is still dequeued.
 */
int ticker_stop(struct ticker *ticker);

#endif
