/**
 * @file port.h
 * @brief Creating the I/O completion port (chapters 04 and 05) and choosing how many
 *        worker threads wait on it, for the chapters after 05.
 */
#ifndef IOCP_TUTORIAL_PORT_H
#define IOCP_TUTORIAL_PORT_H

#include <windows.h>

/**
 * @brief Creates a completion port that lets @p concurrency threads run at once, prints
 *        "completion port HANDLE created", and returns it, or NULL after reporting the error.
 */
HANDLE create_completion_port(unsigned concurrency);

/** @brief The default worker count: one per processor, as the port's concurrency allows. */
unsigned processor_count(void);

#endif
