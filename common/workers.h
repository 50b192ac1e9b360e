/**
 * @file workers.h
 * @brief Starting the worker threads of chapter 05, for the chapters after it.
 */
#ifndef IOCP_TUTORIAL_WORKERS_H
#define IOCP_TUTORIAL_WORKERS_H

#include <windows.h>

/** What a worker thread runs: the signature that _beginthreadex requires. */
typedef unsigned(__stdcall *worker_function)(void *context);

/**
 * @brief Starts @p *count threads that each run @p run with @p context, storing their
 *        handles in a new array @p *workers; returns 0, or -1 after reporting the failure,
 *        with @p *count lowered to the number of threads that did start.
 */
int start_workers(HANDLE **workers, unsigned *count, worker_function run, void *context);

#endif
