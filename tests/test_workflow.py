"""The GitHub workflow is valid YAML and has the three jobs README.md promises: Linux
under Wine, Windows with MSYS2 make, and Windows with MSVC through CMake and ctest."""

import os

import pytest

import chapters

if os.name == "nt":
    # On Windows the tests run with the reader's own Python, which may lack PyYAML.
    yaml = pytest.importorskip("yaml")
else:
    import yaml  # Debian's python3-yaml, which scripts/ensure-tools.sh installs

WORKFLOW = os.path.join(chapters.ROOT, ".github", "workflows", "ci.yml")


def load_jobs():
    with open(WORKFLOW, encoding="utf-8") as file:
        workflow = yaml.safe_load(file)
    return workflow["jobs"]


def commands(job):
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_three_jobs():
    assert set(load_jobs()) == {"linux", "windows-msys2", "windows-msvc"}


def test_linux_job_runs_the_readme_test_command():
    assert "make test" in commands(load_jobs()["linux"])


def test_windows_jobs():
    jobs = load_jobs()
    assert jobs["windows-msys2"]["runs-on"] == "windows-latest"
    assert "make test" in commands(jobs["windows-msys2"])
    assert jobs["windows-msvc"]["runs-on"] == "windows-latest"
    msvc = commands(jobs["windows-msvc"])
    assert "cmake" in msvc and "ctest" in msvc
