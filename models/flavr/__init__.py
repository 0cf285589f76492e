from harness.registry import register
from models.flavr.spec import SPEC

register(SPEC)
