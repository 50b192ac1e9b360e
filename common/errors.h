/**
 * @file errors.h
 * @brief Error reports in one shape: "<call> failed: <code> <text>".
 *
 * Every Win32 and Winsock call in this tutorial is checked, and every failure is
 * reported through these functions, so a reader always sees which call failed,
 * its error number, and the system's own text for that number.
 */
#ifndef IOCP_TUTORIAL_ERRORS_H
#define IOCP_TUTORIAL_ERRORS_H

#include <stddef.h>

/**
 * @brief Writes the system's message text for error @p code into @p buffer, without a
 *        trailing newline or period, and returns @p buffer.
 */
const char *error_text(unsigned long code, char *buffer, size_t size);

/** @brief Prints "<call> failed: <code> <text>" to stderr for an error number you already have. */
void report_error(const char *call, unsigned long code);

/** @brief Reports the failure of Winsock call @p call using WSAGetLastError(). */
void report_wsa_error(const char *call);

/** @brief Reports the failure of Win32 call @p call using GetLastError(). */
void report_win_error(const char *call);

/** @brief Reports the failure of C runtime call @p call as "<call> failed: errno <n> <text>". */
void report_errno(const char *call);

#endif
