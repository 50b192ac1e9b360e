#include "acceptex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "listener.h"
#include "teardown.h"

/* Loads one Winsock extension function; returns 0, or -1 after reporting the error. */
static int load_extension(SOCKET socket_handle, GUID id, void *function, DWORD size,
                          const char *what)
{
    DWORD bytes = 0;

    if (WSAIoctl(socket_handle, SIO_GET_EXTENSION_FUNCTION_POINTER, &id, (DWORD)sizeof id, function,
                 size, &bytes, NULL, NULL) == SOCKET_ERROR) {
        report_wsa_error(what);
        return -1;
    }
    return 0;
}

/*
 * Posts AcceptEx for an idle context on a socket made for it now; call with the lock
 * held. Returns 0 when it is in flight, or -1 when stopping or after reporting a failure.
 */
static int post_accept_locked(struct acceptex *acceptex, struct accept_context *accept)
{
    DWORD received = 0;
    int error;

    if (acceptex->stopping)
        return -1;
    accept->socket =
        WSASocketW(acceptex->family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (accept->socket == INVALID_SOCKET) {
        report_wsa_error("WSASocketW");
        return -1;
    }
    memset(&accept->overlapped, 0, sizeof accept->overlapped);
    /* A thread pool must be told of every overlapped call before it is made. */
    if (acceptex->io != NULL)
        StartThreadpoolIo(acceptex->io);
    /* No receive data (0): the accept completes when the client connects, not later. */
    if (acceptex->accept_ex(acceptex->listener, accept->socket, accept->addresses, 0,
                            ACCEPTEX_ADDRESS_SIZE, ACCEPTEX_ADDRESS_SIZE, &received,
                            &accept->overlapped) ||
        (error = WSAGetLastError()) == ERROR_IO_PENDING) {
        acceptex->idle--;
        acceptex->pending++;
        return 0;
    }
    /* Failed at once: no callback will come, and the pool must be told so. */
    if (acceptex->io != NULL)
        CancelThreadpoolIo(acceptex->io);
    report_error("AcceptEx", (unsigned long)error);
    close_socket(accept->socket);
    accept->socket = INVALID_SOCKET;
    return -1;
}

unsigned acceptex_post_idle(struct acceptex *acceptex)
{
    unsigned i;
    unsigned pending;

    EnterCriticalSection(&acceptex->lock);
    for (i = 0; i < acceptex->count && acceptex->idle > 0; i++)
        if (acceptex->accepts[i].socket == INVALID_SOCKET &&
            post_accept_locked(acceptex, &acceptex->accepts[i]) != 0)
            break;
    pending = acceptex->pending;
    LeaveCriticalSection(&acceptex->lock);
    return pending;
}

/* Counts one accept completion as handled; the last one after stopping lets the drain end. */
static void accept_handled(struct acceptex *acceptex)
{
    EnterCriticalSection(&acceptex->lock);
    if (--acceptex->pending == 0 && acceptex->stopping && !SetEvent(acceptex->drained))
        report_win_error("SetEvent");
    LeaveCriticalSection(&acceptex->lock);
}

void acceptex_completed(struct acceptex *acceptex, OVERLAPPED *overlapped, DWORD error)
{
    struct accept_context *accept =
        CONTAINING_RECORD(overlapped, struct accept_context, overlapped);
    SOCKET socket_handle = accept->socket;
    int succeeded = error == 0;
    struct sockaddr *local;
    struct sockaddr *remote;
    int local_length;
    int remote_length;
    char peer[ADDRESS_TEXT_SIZE];
    int stopping;

    /* Into text before the context is posted again and AcceptEx writes over them. */
    if (succeeded) {
        acceptex->get_addresses(accept->addresses, 0, ACCEPTEX_ADDRESS_SIZE, ACCEPTEX_ADDRESS_SIZE,
                                &local, &local_length, &remote, &remote_length);
        format_address(remote, peer, sizeof peer);
    }
    EnterCriticalSection(&acceptex->lock);
    accept->socket = INVALID_SOCKET;
    acceptex->idle++;
    stopping = acceptex->stopping;
    if (!stopping)
        post_accept_locked(acceptex, accept);
    LeaveCriticalSection(&acceptex->lock);

    /* A connection needs SO_UPDATE_ACCEPT_CONTEXT first, to take the listener's properties. */
    if (!succeeded) {
        if (!stopping)
            report_error("AcceptEx", error);
        close_socket(socket_handle);
    } else if (setsockopt(socket_handle, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                          (const char *)&acceptex->listener,
                          (int)sizeof acceptex->listener) == SOCKET_ERROR) {
        report_wsa_error("setsockopt(SO_UPDATE_ACCEPT_CONTEXT)");
        close_socket(socket_handle);
    } else {
        acceptex->admit(acceptex->context, socket_handle, peer);
    }
    /* Only now, admitted or closed: a drain that ends sooner would miss this client. */
    accept_handled(acceptex);
}

/* What both ways of preparing share: the contexts, all idle, and the extension functions. */
static int prepare_accepts(struct acceptex *acceptex, SOCKET listener, int family, unsigned count,
                           admit_function admit, void *context)
{
    GUID accept_ex_id = WSAID_ACCEPTEX;
    GUID addresses_id = WSAID_GETACCEPTEXSOCKADDRS;
    unsigned i;

    memset(acceptex, 0, sizeof *acceptex);
    acceptex->listener = listener;
    acceptex->family = family;
    acceptex->admit = admit;
    acceptex->context = context;
    acceptex->count = count;
    InitializeCriticalSection(&acceptex->lock);
    acceptex->drained = CreateEventA(NULL, TRUE, FALSE, NULL);
    if (acceptex->drained == NULL) {
        report_win_error("CreateEvent");
        return -1;
    }
    acceptex->accepts = calloc(count, sizeof *acceptex->accepts);
    if (acceptex->accepts == NULL) {
        report_errno("calloc");
        return -1;
    }
    for (i = 0; i < count; i++)
        acceptex->accepts[i].socket = INVALID_SOCKET;
    acceptex->idle = count;
    if (load_extension(listener, accept_ex_id, &acceptex->accept_ex, sizeof acceptex->accept_ex,
                       "WSAIoctl(AcceptEx)") != 0 ||
        load_extension(listener, addresses_id, &acceptex->get_addresses,
                       sizeof acceptex->get_addresses, "WSAIoctl(GetAcceptExSockaddrs)") != 0)
        return -1;
    return 0;
}

int acceptex_prepare(struct acceptex *acceptex, SOCKET listener, int family, HANDLE port,
                     unsigned count, admit_function admit, void *context)
{
    if (prepare_accepts(acceptex, listener, family, count, admit, context) != 0)
        return -1;
    if (CreateIoCompletionPort((HANDLE)listener, port, (ULONG_PTR)acceptex, 0) == NULL) {
        report_win_error("CreateIoCompletionPort");
        return -1;
    }
    return 0;
}

/* The listener's I/O callback, on a pool thread: the result is a Win32 error code already. */
static VOID CALLBACK accept_callback(PTP_CALLBACK_INSTANCE instance, PVOID context,
                                     PVOID overlapped, ULONG result, ULONG_PTR bytes, PTP_IO io)
{
    (void)instance;
    (void)bytes; /* 0: no data is received with the accept */
    (void)io;
    acceptex_completed(context, overlapped, result);
}

int acceptex_prepare_pool(struct acceptex *acceptex, SOCKET listener, int family,
                          PTP_CALLBACK_ENVIRON environment, unsigned count, admit_function admit,
                          void *context)
{
    if (prepare_accepts(acceptex, listener, family, count, admit, context) != 0)
        return -1;
    acceptex->io = CreateThreadpoolIo((HANDLE)listener, accept_callback, acceptex, environment);
    if (acceptex->io == NULL) {
        report_win_error("CreateThreadpoolIo");
        return -1;
    }
    return 0;
}

int acceptex_stop(struct acceptex *acceptex, DWORD timeout_ms)
{
    unsigned pending;

    EnterCriticalSection(&acceptex->lock);
    acceptex->stopping = 1;
    pending = acceptex->pending;
    LeaveCriticalSection(&acceptex->lock);
    /* Each cancelled AcceptEx completes with 995, and its worker closes its socket. */
    if (pending > 0 && !CancelIoEx((HANDLE)acceptex->listener, NULL) &&
        GetLastError() != ERROR_NOT_FOUND)
        report_win_error("CancelIoEx");
    if (pending > 0 && wait_for_drain(acceptex->drained, timeout_ms, "an accept") != 0)
        return -1;
    /* The last callback sets the event before it returns: wait for it to be out. */
    if (acceptex->io != NULL)
        WaitForThreadpoolIoCallbacks(acceptex->io, FALSE);
    close_socket(acceptex->listener);
    /* After the handle is closed, as CloseThreadpoolIo's page asks. */
    if (acceptex->io != NULL)
        CloseThreadpoolIo(acceptex->io);
    acceptex->io = NULL;
    return 0;
}

void acceptex_destroy(struct acceptex *acceptex)
{
    DeleteCriticalSection(&acceptex->lock);
    if (acceptex->drained != NULL && !CloseHandle(acceptex->drained))
        report_win_error("CloseHandle");
    free(acceptex->accepts);
}
