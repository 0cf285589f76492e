from harness.registry import register
from models.flownet2.spec import SPEC

register(SPEC)
