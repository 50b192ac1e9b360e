#include "connection.h"

#include <windows.h>

#include "errors.h"
#include "listener.h"

void close_connection(SOCKET socket_handle, int abortive)
{
    static const struct linger reset_on_close = {1, 0};

    /*
     * closesocket also cancels pending I/O on Windows, but under Wine a send the peer never
     * reads gets no completion after closesocket; after CancelIoEx it does, on both.
     */
    if (!CancelIoEx((HANDLE)socket_handle, NULL) && GetLastError() != ERROR_NOT_FOUND)
        report_win_error("CancelIoEx");
    if (abortive) {
        /* Linger on with a timeout of 0: closesocket then resets the connection. */
        if (setsockopt(socket_handle, SOL_SOCKET, SO_LINGER, (const char *)&reset_on_close,
                       (int)sizeof reset_on_close) == SOCKET_ERROR)
            report_wsa_error("setsockopt(SO_LINGER)");
    } else if (shutdown(socket_handle, SD_SEND) == SOCKET_ERROR) {
        report_wsa_error("shutdown");
    }
    close_socket(socket_handle);
}
