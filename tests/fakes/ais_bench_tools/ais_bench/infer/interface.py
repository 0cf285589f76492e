"""Fake of the Ascend/tools generation (ais-bench_workload/tool/ais_bench, the one the seeds link):
InferSession has sumary() and finalize() and no free_resource() or summary(); MemorySummary
exposes H2D/D2H lists; exec_time_list holds one float (ms) per execute."""
from types import SimpleNamespace

from fake_om import FakeOm

_last = []


class InferSession:
    def __init__(self, device_id: int, model_path: str, acl_json_path: str = None,
                 debug: bool = False, loop: int = 1):
        self._om = FakeOm(device_id, model_path)
        _last[:] = [self._om]
        self.finalized = False

    def get_inputs(self):
        return self._om.inputs()

    def get_outputs(self):
        return self._om.outputs()

    def infer(self, feeds, mode="static", custom_sizes=100000):
        if self.finalized:
            raise RuntimeError("infer after finalize()")
        return self._om.infer(feeds, mode)

    def reset_sumaryinfo(self):
        self._om.exec_time_list.clear()

    def sumary(self):
        return SimpleNamespace(exec_time_list=list(self._om.exec_time_list))

    def finalize(self):
        self.finalized = True


class MemorySummary:
    @staticmethod
    def get_H2D_time_list():
        return list(_last[0].h2d) if _last else []

    @staticmethod
    def get_D2H_time_list():
        return list(_last[0].d2h) if _last else []

    @staticmethod
    def reset():
        if _last:
            _last[0].h2d.clear()
            _last[0].d2h.clear()
