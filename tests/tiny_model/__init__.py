"""A tiny clip classifier: the one folder a new model costs (tests/test_adding_a_model.py copies
this package to models/tiny/ of a sandboxed project copy and runs the generic tests on it)."""
from models.tiny.spec import SPEC

from harness.registry import register

register(SPEC)
