from harness.registry import register
from models.efficient3dcnn.spec import SPEC

register(SPEC)
