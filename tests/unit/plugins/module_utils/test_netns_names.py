"""Namespace name rules, checked without touching the kernel."""

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils._phone_model import netns_problem as validate_name


@pytest.mark.parametrize("name", ["yogurt-1", "a", "x" * 255, "ümlaut", "with.dot", "..."])
def test_valid(name):
    assert validate_name(name) is None


@pytest.mark.parametrize("name, words", [
    ("", "empty"), (".", "directory"), ("..", "directory"), ("a/b", "'/'"),
    ("x" * 256, "256 bytes"), ("ü" * 128, "256 bytes"), ("a\0b", "NUL"),
])
def test_invalid(name, words):
    assert words in validate_name(name)
