#include "errors.h"

#include <winsock2.h>
#include <windows.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *error_text(unsigned long code, char *buffer, size_t size)
{
    DWORD flags = FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS;
    DWORD capacity = size > 0xFFFF ? 0xFFFF : (DWORD)size;
    DWORD length;

    if (size == 0)
        return buffer;
    length = FormatMessageA(flags, NULL, (DWORD)code, 0, buffer, capacity, NULL);
    if (length == 0) {
        /* FormatMessage itself failed: say so rather than print nothing. */
        snprintf(buffer, size, "(no text: FormatMessage failed with %lu)", GetLastError());
        return buffer;
    }
    /* System messages end in ".\r\n"; the report adds its own line end. */
    while (length > 0 && strchr(".\r\n ", buffer[length - 1]) != NULL)
        buffer[--length] = '\0';
    return buffer;
}

void report_error(const char *call, unsigned long code)
{
    char text[512];

    fprintf(stderr, "%s failed: %lu %s\n", call, code, error_text(code, text, sizeof text));
}

void report_wsa_error(const char *call)
{
    /* Read the error first: anything else we call could overwrite it. */
    int code = WSAGetLastError();

    report_error(call, (unsigned long)code);
}

void report_win_error(const char *call)
{
    DWORD code = GetLastError();

    report_error(call, code);
}

void report_errno(const char *call)
{
    int code = errno;

    fprintf(stderr, "%s failed: errno %d %s\n", call, code, strerror(code));
}
