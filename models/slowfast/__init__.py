from harness.registry import register
from models.slowfast.spec import SPEC

register(SPEC)
