"""Every chapter asks WSAStartup for Winsock 2.2 and reports that it got 2.2."""

import pytest

import chapters
import harness

VERSION_LINE = r"^WSAStartup: asked for 2\.2, got 2\.2$"


@pytest.mark.parametrize("chapter", chapters.chapters_with("winsock"),
                         ids=chapters.ids(chapters.chapters_with("winsock")))
def test_reports_version_and_exits(chapter):
    result = harness.run(chapter.exe)
    assert result.code == 0, result
    assert result.stdout and result.stdout[0] == "WSAStartup: asked for 2.2, got 2.2", result
    assert result.stdout[-1] == "WSACleanup: done", result
    assert result.stderr == [], result


@pytest.mark.parametrize("chapter", chapters.chapters_with("version", "listen"),
                         ids=chapters.ids(chapters.chapters_with("version", "listen")))
def test_server_reports_version_before_listening(chapter, start_server):
    server = start_server(chapter)
    server.wait_for(VERSION_LINE)
    server.wait_for(harness.LISTENING.pattern)
    assert server.quit() == 0, server.output()
