"""Fake of the Ascend/tools generation of ``ais_bench.infer.interface`` (ais-bench_workload/tool/
ais_bench, the one the seeds link). Its public surface is recorded in tests/fakes/real_surfaces.py
and checked there against this module:

* ``InferSession.sumary().exec_time_list``: one float per execute, its milliseconds; ``loop``
  executes per ``infer``.
* ``finalize()`` is an instance method, but besides unloading this session's model it destroys
  every device context of the process (aclruntime's TensorContext::Finalize), so every other open
  session fails afterwards. There is no ``free_resource()``: one session is released by its
  destructor, when the last reference to it goes.
* ``MemorySummary.get_H2D_time_list()`` / ``get_D2H_time_list()`` (upper case), process-wide.

Annotations stay evaluated (no ``from __future__ import annotations``) so that the signatures
read as the real source writes them.
"""
import fake_om


class InferSession:
    def __init__(self, device_id: int, model_path: str, acl_json_path: str = None, debug: bool = False,
                 loop: int = 1):
        self.device_id = device_id
        self.model_path = model_path
        self.loop = loop
        self._om = fake_om.FakeOm(device_id, model_path, loop)
        self._exec_time_list = []

    def __del__(self):
        om = getattr(self, "_om", None)
        if om is not None:
            om.release("its InferSession was destroyed")

    def get_inputs(self):
        return self._om.inputs()

    def get_outputs(self):
        return self._om.outputs()

    def set_loop_count(self, loop):
        self.loop = self._om.loop = loop

    def reset_sumaryinfo(self):
        self._exec_time_list.clear()

    def sumary(self):
        return fake_om.Sumary(list(self._exec_time_list))

    def finalize(self):
        self._om.release("finalize() was called on this session")
        fake_om.destroy_all_contexts("finalize() of another session destroyed every device context")

    def infer(self, feeds, mode='static', custom_sizes=100000):
        if mode != "static":
            raise RuntimeError(f"mode {mode!r}: this .om has static shapes")
        outputs, spans = self._om.execute(list(feeds))
        self._exec_time_list += [end - start for start, end in spans]
        return outputs


class MemorySummary:
    @staticmethod
    def get_H2D_time_list():
        return list(fake_om.H2D_TIME_LIST)

    @staticmethod
    def get_D2H_time_list():
        return list(fake_om.D2H_TIME_LIST)

    @staticmethod
    def reset():
        fake_om.reset_transfers()
