"""A listening chapter listens where --bind says (IPv4 loopback by default) on the port
it prints, and clients can connect there."""

import socket

import pytest

import chapters
import harness
from harness import connect

LISTENERS = chapters.chapters_with("listen")
IDS = chapters.ids(LISTENERS)


def ipv6_loopback_missing():
    """Why this machine has no IPv6 loopback to bind (then connecting to ::1 fails
    whatever a server does), or None when it has one."""
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as e:
        return "cannot bind to ::1 (%s)" % e
    return None


NO_IPV6_LOOPBACK = ipv6_loopback_missing()


@pytest.mark.parametrize("chapter", LISTENERS, ids=IDS)
def test_listens_on_ipv4_loopback_by_default(chapter, start_server):
    server = start_server(chapter)
    assert server.port != 0, server.output()
    assert server.address == "127.0.0.1", server.output()
    connect(server.port, "127.0.0.1").close()
    assert server.quit() == 0, server.output()


@pytest.mark.skipif(NO_IPV6_LOOPBACK is not None,
                    reason="no IPv6 loopback, so a refused ::1 would prove nothing: %s"
                    % NO_IPV6_LOOPBACK)
@pytest.mark.parametrize("chapter", LISTENERS, ids=IDS)
def test_default_listener_refuses_ipv6_loopback_clients(chapter, start_server):
    server = start_server(chapter)
    connect(server.port, "127.0.0.1").close()
    # Only IPv4: nothing listens on the IPv6 loopback at that port.
    with pytest.raises(ConnectionRefusedError):
        connect(server.port, "::1").close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", LISTENERS, ids=IDS)
def test_bind_any_ipv6_takes_ipv4_and_ipv6_clients(chapter, start_server):
    server = start_server(chapter, "--bind", "::")
    assert server.address == "[::]", server.output()
    connect(server.port, "127.0.0.1").close()
    connect(server.port, "::1").close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", LISTENERS, ids=IDS)
def test_bind_ipv6_loopback(chapter, start_server):
    server = start_server(chapter, "--bind", "::1")
    assert server.address == "[::1]", server.output()
    connect(server.port, "::1").close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", LISTENERS, ids=IDS)
def test_listens_on_the_port_it_was_given(chapter, start_server):
    # Ask the system for a free port, give it back, and hand it to the chapter. Another
    # program may take it in between ("bind failed: 10048"): then try another port.
    for _ in range(3):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        server = start_server(chapter, port=port)
        try:
            assert server.port == port, server.output()
            break
        except AssertionError:
            server.wait()
            if not any(line.startswith("bind failed: 10048 ") for line in server.stderr):
                raise
    else:
        pytest.fail("three free ports in a row were taken before the chapter could bind")
    connect(port).close()
    assert server.quit() == 0, server.output()
