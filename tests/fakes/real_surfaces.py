"""The public surface of the real ais_bench the harness relies on, per generation, as read in the
real sources; tests/test_ascend.py checks each fake against it (names, signatures, static-ness,
what the calls return), so that a fake cannot drift from the tool it stands in for.

Signatures are written as ``str(inspect.signature(...))`` prints the real source's ``def`` line.
``absent`` names what the generation does not have: the harness detects features by name, so a
fake must not grow them either.
"""
from __future__ import annotations

INSTANCE, STATIC = "instance", "static"

SURFACES = {
    "tools": {
        "source": "Ascend/tools@9d6da90fd0d3e5d232676c7a4527f7d92ac70e5c "
                  "ais-bench_workload/tool/ais_bench/ais_bench/infer/interface.py "
                  "(aclruntime: backend/python/src/PyInferenceSession/PyInferenceSession.cpp)",
        "distribution_version": "0.0.2",
        "InferSession": {
            "__init__": (INSTANCE, "(self, device_id: int, model_path: str, acl_json_path: str = None, "
                                   "debug: bool = False, loop: int = 1)"),
            "get_inputs": (INSTANCE, "(self)"),
            "get_outputs": (INSTANCE, "(self)"),
            "set_loop_count": (INSTANCE, "(self, loop)"),
            "infer": (INSTANCE, "(self, feeds, mode='static', custom_sizes=100000)"),
            "reset_sumaryinfo": (INSTANCE, "(self)"),
            "sumary": (INSTANCE, "(self)"),
            # Destroy() of this session, then TensorContext::Finalize(): every device of the process
            "finalize": (INSTANCE, "(self)"),
        },
        "InferSession_absent": ("summary", "free_resource", "reset_summaryinfo"),
        "MemorySummary": {
            "get_H2D_time_list": (STATIC, "()"),
            "get_D2H_time_list": (STATIC, "()"),
            "reset": (STATIC, "()"),
        },
        "MemorySummary_absent": ("get_h2d_time_list", "get_d2h_time_list"),
        # ModelInferenceProcessor::Execute pushes the float milliseconds around aclmdlExecute
        "exec_time_entry": "float",
        "finalize_is_process_wide": True,
    },
    "msit": {
        "source": "Ascend/msit@42a9c8071218c51f88ee6c25278f0102b1d6e69e "
                  "ait/components/benchmark/ais_bench/infer/interface.py (the last commit before "
                  "ais_bench left the repository; aclruntime: backend/python/src/PyInterface/"
                  "PyInterface.cpp, backend/base/module/ModelInfer/ModelInferenceProcessor.cpp)",
        "distribution_version": "7.0.0",
        "InferSession": {
            "__init__": (INSTANCE, "(self, device_id: int, model_path: str, acl_json_path: str = None, "
                                   "debug: bool = False, loop: int = 1)"),
            "get_inputs": (INSTANCE, "(self)"),
            "get_outputs": (INSTANCE, "(self)"),
            "set_loop_count": (INSTANCE, "(self, loop)"),
            "infer": (INSTANCE, "(self, feeds, mode='static', custom_sizes=100000, out_array=True)"),
            "reset_summaryinfo": (INSTANCE, "(self)"),
            "summary": (INSTANCE, "(self)"),
            "free_resource": (INSTANCE, "(self)"),
            # aclruntime.InferenceSession.finalize(): TensorContext::Finalize, every device
            "finalize": (STATIC, "()"),
        },
        "InferSession_absent": ("sumary", "reset_sumaryinfo"),
        "MemorySummary": {
            "get_h2d_time_list": (STATIC, "()"),
            "get_d2h_time_list": (STATIC, "()"),
            "reset": (STATIC, "()"),
        },
        "MemorySummary_absent": ("get_H2D_time_list", "get_D2H_time_list"),
        # Execute pushes {start, end}: float ms since the session's zero point (InitSumaryInfo)
        "exec_time_entry": "(start, end)",
        "finalize_is_process_wide": True,
    },
}

# Both generations' aclruntime ``tensor_desc`` (what get_inputs()/get_outputs() list): these
# attributes, ``shape`` a list of ints (-1 where the model leaves a dimension dynamic).
TENSOR_DESC_ATTRIBUTES = ("name", "datatype", "format", "shape", "realsize", "size")

# An intermediate generation exists (ait, e.g. mjlovesz/sync-ait@01a6ad8c3a5da2b9d1962239d24852e3132078a4):
# sumary() with a static finalize(), free_resource() and lower-case MemorySummary. The harness
# detects each feature by name, so it needs no fake of its own.
