"""Make the checkout importable as ansible_collections.yogurt.phone for pytest."""

import pathlib
import sys

_collections = pathlib.Path(__file__).resolve().parent / ".ansible" / "collections"
if str(_collections) not in sys.path:
    sys.path.insert(0, str(_collections))
