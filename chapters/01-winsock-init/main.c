/*
 * Chapter 01: start Winsock, show what it reports, and stop it again.
 *
 * Every Winsock program begins with WSAStartup and ends with WSACleanup. WSAStartup
 * negotiates a version: we ask for 2.2 and must check that 2.2 is what we got.
 */
#include <winsock2.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>

#include "errors.h"
#include "options.h"

#define WANTED_MAJOR 2
#define WANTED_MINOR 2

/* Prints the fields of WSADATA that still mean something for Winsock 2. */
static void print_winsock_data(const WSADATA *data)
{
    printf("  highest version supported: %d.%d\n", LOBYTE(data->wHighVersion),
           HIBYTE(data->wHighVersion));
    printf("  description: %.*s\n", WSADESCRIPTION_LEN, data->szDescription);
    printf("  system status: %.*s\n", WSASYS_STATUS_LEN, data->szSystemStatus);
}

/* Stops Winsock, once for each successful WSAStartup; returns 0, or -1 after reporting. */
static int stop_winsock(void)
{
    if (WSACleanup() != 0) {
        report_wsa_error("WSACleanup");
        return -1;
    }
    return 0;
}

/* Starts Winsock 2.2; returns 0, or -1 after reporting the error. */
static int start_winsock(void)
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
    print_winsock_data(&data);
    if (LOBYTE(data.wVersion) != WANTED_MAJOR || HIBYTE(data.wVersion) != WANTED_MINOR) {
        fprintf(stderr, "WSAStartup gave version %d.%d, not %d.%d\n", LOBYTE(data.wVersion),
                HIBYTE(data.wVersion), WANTED_MAJOR, WANTED_MINOR);
        /* The call itself succeeded, so it still needs its WSACleanup. */
        stop_winsock();
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options options;

    /* A pipe makes stdout fully buffered on Windows; a reader must see each line at once. */
    setvbuf(stdout, NULL, _IONBF, 0);
    parse_options(argc, argv, 0, &options);

    if (start_winsock() != 0)
        return EXIT_FAILURE;

    if (stop_winsock() != 0)
        return EXIT_FAILURE;
    printf("WSACleanup: done\n");
    return EXIT_SUCCESS;
}
