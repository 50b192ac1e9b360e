#include "keepalive.h"

#include <mstcpip.h>

#include "errors.h"

/* Between keep-alive probes once they start; Windows sends 10 before it gives up. */
#define KEEPALIVE_INTERVAL_MS 1000

void start_keepalive(SOCKET socket_handle, DWORD keepalive_ms)
{
    struct tcp_keepalive settings = {1, keepalive_ms, KEEPALIVE_INTERVAL_MS};
    DWORD returned = 0;

    if (WSAIoctl(socket_handle, SIO_KEEPALIVE_VALS, &settings, sizeof settings, NULL, 0, &returned,
                 NULL, NULL) == SOCKET_ERROR)
        report_wsa_error("WSAIoctl(SIO_KEEPALIVE_VALS)");
}
