#include "ticker.h"

#include "errors.h"

/* Ticks per timeout, and the longest tick: see tick_period's contract. */
#define TICKS_PER_TIMEOUT 4
#define LONGEST_TICK_MS   1000
/* Tries at stopping the timer: DeleteTimerQueueTimer's page says to call it again on an error. */
#define TIMER_STOP_TRIES 3

DWORD tick_period(LONG64 timeout_ms)
{
    LONG64 period = timeout_ms / TICKS_PER_TIMEOUT;

    if (period > LONGEST_TICK_MS)
        period = LONGEST_TICK_MS;
    return period < 1 ? 1 : (DWORD)period;
}

/*
 * The timer's callback, on a thread of the timer queue: posts a tick, unless the last one
 * is still waiting in the port. When the workers are that busy, one pass is enough.
 */
static VOID CALLBACK post_tick(PVOID context, BOOLEAN timer_fired)
{
    struct ticker *ticker = context;

    (void)timer_fired; /* always TRUE for a timer */
    if (InterlockedCompareExchange(&ticker->pending, 1, 0) != 0)
        return;
    if (!PostQueuedCompletionStatus(ticker->port, 0, (ULONG_PTR)ticker, &ticker->packet)) {
        report_win_error("PostQueuedCompletionStatus");
        InterlockedExchange(&ticker->pending, 0);
    }
}

int ticker_start(struct ticker *ticker, HANDLE port, DWORD period_ms)
{
    ticker->port = port;
    ticker->period_ms = period_ms;
    ticker->pending = 0;
    if (!CreateTimerQueueTimer(&ticker->timer, NULL, post_tick, ticker, period_ms, period_ms,
                               WT_EXECUTEDEFAULT)) {
        report_win_error("CreateTimerQueueTimer");
        ticker->timer = NULL;
        return -1;
    }
    return 0;
}

int ticker_owns(const struct ticker *ticker, ULONG_PTR completion_key)
{
    return completion_key == (ULONG_PTR)ticker;
}

void ticker_rearm(struct ticker *ticker)
{
    InterlockedExchange(&ticker->pending, 0);
}

int ticker_stop(struct ticker *ticker)
{
    int tries;

    if (ticker->timer == NULL)
        return 0;
    for (tries = 0; tries < TIMER_STOP_TRIES; tries++) {
        /* INVALID_HANDLE_VALUE: wait for a callback that is running to return. */
        if (DeleteTimerQueueTimer(NULL, ticker->timer, INVALID_HANDLE_VALUE)) {
            ticker->timer = NULL;
            return 0;
        }
        report_win_error("DeleteTimerQueueTimer");
    }
    return -1;
}
