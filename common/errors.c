#include "errors.h"

#include <winsock2.h>
#include <windows.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

/*
 * Names of the Winsock errors a server meets most, for systems whose FormatMessage has
 * no text for them (Wine, for one). Windows itself has text for all of them.
 */
static const struct {
    unsigned long code;
    const char *name;
} winsock_error_names[] = {
    {WSAEINTR, "WSAEINTR"},
    {WSAEBADF, "WSAEBADF"},
    {WSAEACCES, "WSAEACCES"},
    {WSAEFAULT, "WSAEFAULT"},
    {WSAEINVAL, "WSAEINVAL"},
    {WSAEMFILE, "WSAEMFILE"},
    {WSAEWOULDBLOCK, "WSAEWOULDBLOCK"},
    {WSAEINPROGRESS, "WSAEINPROGRESS"},
    {WSAEALREADY, "WSAEALREADY"},
    {WSAENOTSOCK, "WSAENOTSOCK"},
    {WSAEMSGSIZE, "WSAEMSGSIZE"},
    {WSAEAFNOSUPPORT, "WSAEAFNOSUPPORT"},
    {WSAEADDRINUSE, "WSAEADDRINUSE"},
    {WSAEADDRNOTAVAIL, "WSAEADDRNOTAVAIL"},
    {WSAENETDOWN, "WSAENETDOWN"},
    {WSAENETUNREACH, "WSAENETUNREACH"},
    {WSAENETRESET, "WSAENETRESET"},
    {WSAECONNABORTED, "WSAECONNABORTED"},
    {WSAECONNRESET, "WSAECONNRESET"},
    {WSAENOBUFS, "WSAENOBUFS"},
    {WSAEISCONN, "WSAEISCONN"},
    {WSAENOTCONN, "WSAENOTCONN"},
    {WSAESHUTDOWN, "WSAESHUTDOWN"},
    {WSAETIMEDOUT, "WSAETIMEDOUT"},
    {WSAECONNREFUSED, "WSAECONNREFUSED"},
    {WSAEHOSTUNREACH, "WSAEHOSTUNREACH"},
    {WSASYSNOTREADY, "WSASYSNOTREADY"},
    {WSAVERNOTSUPPORTED, "WSAVERNOTSUPPORTED"},
    {WSANOTINITIALISED, "WSANOTINITIALISED"},
    {WSAHOST_NOT_FOUND, "WSAHOST_NOT_FOUND"},
    {WSATRY_AGAIN, "WSATRY_AGAIN"},
    {WSANO_RECOVERY, "WSANO_RECOVERY"},
    {WSA_IO_PENDING, "WSA_IO_PENDING"},
    {WSA_OPERATION_ABORTED, "WSA_OPERATION_ABORTED"},
};

/* Returns the symbolic name of a Winsock error, or NULL for other codes. */
static const char *winsock_error_name(unsigned long code)
{
    size_t i;

    for (i = 0; i < sizeof winsock_error_names / sizeof winsock_error_names[0]; i++)
        if (winsock_error_names[i].code == code)
            return winsock_error_names[i].name;
    return NULL;
}

const char *error_text(unsigned long code, char *buffer, size_t size)
{
    DWORD flags = FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS;
    DWORD capacity = size > 0xFFFF ? 0xFFFF : (DWORD)size;
    DWORD length;

    if (size == 0)
        return buffer;
    length = FormatMessageA(flags, NULL, (DWORD)code, 0, buffer, capacity, NULL);
    if (length == 0) {
        /* No system text: the error's name if we know it, else say what went wrong. */
        DWORD format_error = GetLastError();
        const char *name = winsock_error_name(code);

        if (name != NULL)
            snprintf(buffer, size, "%s", name);
        else
            snprintf(buffer, size, "(no text: FormatMessage failed with %lu)", format_error);
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
