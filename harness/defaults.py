"""The facts the command line and the harness share, stated once.

This module imports nothing: ``video_model_conformance`` (the pytest11 entry point, loaded
before the project is importable) reads it by its file path, and the harness imports it as
``harness.defaults``.
"""

# the backends harness/backends/ registers, one module each ('-' in a name is '_' in its module's;
# tests/test_install.py keeps them equal)
BACKEND_NAMES = ("ascend", "ascend-preview", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "default")  # what a user may ask for ('default' = the runtime's own choice)
PROFILES = ("smoke", "full")
SAVE_LAYOUTS = ("npz", "ais_bench")
DEFAULT_CACHE_DIR = ".cache"
DEFAULT_REPORT_DIR = "reports"
DEFAULT_FPS_REGRESSION = 0.10  # allowed FPS drop; the CPU nightly, on shared cores, passes 0.3
