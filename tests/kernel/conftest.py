"""Fixtures for the kernel proofs: real modules against the real kernel, as root.

Every test that plays "the host" runs inside a throwaway network namespace (the sandbox)
that has only a loopback device, so nothing it does can route off this machine (DESIGN.md
section 3). Names carry a random prefix so that runs never collide with each other or with a
phone that a user built on this machine, and everything is removed whether the test passed
or not. The helpers live in tests/lib/yogurt_test.
"""

import os
import pathlib
import uuid

import pytest

from yogurt_test import netns, objects as wire_objects

ROOT_REASON = ("kernel proofs need root (network namespaces, BPF programs, raw sockets): "
               "run them as root, e.g. ./scripts/test integration")


HERE = pathlib.Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    """Without root every test here skips, with the reason, before any fixture runs."""
    if os.geteuid() == 0:
        return
    for item in items:
        if HERE in pathlib.Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=ROOT_REASON))


@pytest.fixture
def prefix():
    """A short random prefix: 'yt' + 5 hex digits leaves room for ifname suffixes."""
    return "yt" + uuid.uuid4().hex[:5]


@pytest.fixture
def sandbox(prefix):
    with netns.sandbox(prefix) as box:
        yield box


@pytest.fixture(scope="session")
def veth_object(tmp_path_factory):
    """The compiled veth wire, once per session."""
    return wire_objects.veth_object(tmp_path_factory.mktemp("bpf"))


@pytest.fixture(scope="session")
def objects(tmp_path_factory):
    """The veth object, and a variant whose wire_in differs by one instruction."""
    return wire_objects.base_and_variant(tmp_path_factory.mktemp("bpf"))
