"""One host for the whole run: the shared cases share it, as the format
says, and every process it started is killed (and waited for) at the end."""

import pytest

from sandbox_process_host import Host


@pytest.fixture(scope="session")
def host():
    with Host() as h:
        yield h
