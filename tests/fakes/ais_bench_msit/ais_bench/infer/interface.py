"""Fake of the later (msit) generation: InferSession has summary() and free_resource(), and neither
sumary() nor finalize(); no MemorySummary, so transfer times are not exposed."""
from types import SimpleNamespace

from fake_om import FakeOm


class InferSession:
    def __init__(self, device_id: int, model_path: str, acl_json_path: str = None,
                 debug: bool = False, loop: int = 1):
        self._om = FakeOm(device_id, model_path)
        self.freed = False

    def get_inputs(self):
        return self._om.inputs()

    def get_outputs(self):
        return self._om.outputs()

    def infer(self, feeds, mode="static", custom_sizes=100000):
        if self.freed:
            raise RuntimeError("infer after free_resource()")
        return self._om.infer(feeds, mode)

    def summary(self):
        return SimpleNamespace(exec_time_list=list(self._om.exec_time_list))

    def free_resource(self):
        self.freed = True
