from harness.registry import register
from models.gma.spec import SPEC

register(SPEC)
