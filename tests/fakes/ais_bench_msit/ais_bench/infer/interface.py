"""Fake of the later (msit / ait benchmark) generation of ``ais_bench.infer.interface``. Its
public surface is recorded in tests/fakes/real_surfaces.py and checked there against this module:

* ``InferSession.summary().exec_time_list``: one ``(start, end)`` pair per execute, milliseconds
  since the session was created (float32, as aclruntime keeps them); ``loop`` executes per ``infer``.
* ``free_resource()`` releases this session; ``finalize()`` is a *static* method that destroys
  every device context of the process, after which every open session fails.
* ``reset_summaryinfo()``; ``MemorySummary.get_h2d_time_list()`` / ``get_d2h_time_list()``
  (lower case), process-wide.

Annotations stay evaluated (no ``from __future__ import annotations``) so that the signatures
read as the real source writes them.
"""
import fake_om


class InferSession:
    def __init__(self, device_id: int, model_path: str, acl_json_path: str = None,
                 debug: bool = False, loop: int = 1):
        self.device_id = device_id
        self.model_path = model_path
        self.loop = loop
        self._om = fake_om.FakeOm(device_id, model_path, loop)
        self._exec_time_list = []

    def __del__(self):
        om = getattr(self, "_om", None)
        if om is not None:
            om.release("its InferSession was destroyed")

    @staticmethod
    def finalize():
        fake_om.destroy_all_contexts("the static InferSession.finalize() destroyed every device context")

    def get_inputs(self):
        return self._om.inputs()

    def get_outputs(self):
        return self._om.outputs()

    def set_loop_count(self, loop):
        self.loop = self._om.loop = loop

    def reset_summaryinfo(self):
        self._exec_time_list.clear()

    def infer(self, feeds, mode='static', custom_sizes=100000, out_array=True):
        if mode != "static":
            raise RuntimeError(f"mode {mode!r}: this .om has static shapes")
        outputs, spans = self._om.execute(list(feeds))
        self._exec_time_list += spans
        return outputs

    def free_resource(self):
        self._om.release("free_resource() was called")

    def summary(self):
        return fake_om.Sumary(list(self._exec_time_list))


class MemorySummary:
    @staticmethod
    def get_h2d_time_list():
        return list(fake_om.H2D_TIME_LIST)

    @staticmethod
    def get_d2h_time_list():
        return list(fake_om.D2H_TIME_LIST)

    @staticmethod
    def reset():
        fake_om.reset_transfers()
