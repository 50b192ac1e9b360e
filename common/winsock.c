#include "winsock.h"

#include <winsock2.h>
#include <windows.h>

#include <stdio.h>

#include "errors.h"

#define WANTED_MAJOR 2
#define WANTED_MINOR 2

int stop_winsock(void)
{
    if (WSACleanup() != 0) {
        report_wsa_error("WSACleanup");
        return -1;
    }
    return 0;
}

int start_winsock(void)
{
    WSADATA data;
    int error;

    /* MAKEWORD(low, high): the low byte is the major version, the high byte the minor. */
    error = WSAStartup(MAKEWORD(WANTED_MAJOR, WANTED_MINOR), &data);
    if (error != 0) {
        /* WSAStartup returns its error; its page says not to use WSAGetLastError for it. */
        report_error("WSAStartup", (unsigned long)error);
        return -1;
    }
    printf("WSAStartup: asked for %d.%d, got %d.%d\n", WANTED_MAJOR, WANTED_MINOR,
           LOBYTE(data.wVersion), HIBYTE(data.wVersion));
    if (LOBYTE(data.wVersion) != WANTED_MAJOR || HIBYTE(data.wVersion) != WANTED_MINOR) {
        fprintf(stderr, "WSAStartup gave version %d.%d, not %d.%d\n", LOBYTE(data.wVersion),
                HIBYTE(data.wVersion), WANTED_MAJOR, WANTED_MINOR);
        /* The call itself succeeded, so it still needs its WSACleanup. */
        stop_winsock();
        return -1;
    }
    return 0;
}
