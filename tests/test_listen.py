"""A listening chapter listens where --bind says (IPv4 loopback by default) on the port
it prints, and clients can connect there."""

import socket

import pytest

import chapters
import harness
from harness import connect

LISTENERS = chapters.chapters_with("listen")
IDS = chapters.ids(LISTENERS)


@pytest.mark.parametrize("chapter", LISTENERS, ids=IDS)
def test_listens_on_ipv4_loopback_by_default(chapter, start_server):
    server = start_server(chapter)
    assert server.port != 0, server.output()
    assert server.address == "127.0.0.1", server.output()
    connect(server.port, "127.0.0.1").close()
    # Only IPv4: nothing listens on the IPv6 loopback at that port.
    with pytest.raises(OSError):
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
