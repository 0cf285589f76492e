"""ONNX Runtime: the CPU provider (embedded default), CUDA where installed with a GPU."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from harness.backends.base import Backend, BackendUnavailable, Session, looks_like_oom
from harness.backends.tensorrt import nvidia_smi
from harness.peak import Peak, accelerator_peak


class _OrtSession(Session):
    def __init__(self, session):
        self._session = session
        self._outputs = [o.name for o in session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return dict(zip(self._outputs, self._session.run(self._outputs, dict(feeds))))
        except Exception as error:  # onnxruntime raises its own exception types, not MemoryError
            if looks_like_oom(str(error)):
                raise MemoryError(f"onnxruntime: {error}") from error
            raise

    def io_shapes(self) -> dict[str, dict[str, tuple]]:
        # ONNX Runtime gives a symbolic dimension as its name (str) or None, a static one as int
        def shape(arg) -> tuple:
            return tuple(d if isinstance(d, int) else None for d in arg.shape)

        return {"inputs": {a.name: shape(a) for a in self._session.get_inputs()},
                "outputs": {a.name: shape(a) for a in self._session.get_outputs()}}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed: pip install onnxruntime"
        return True, ""

    def _on_gpu(self) -> bool:
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()

    def machine(self) -> str | None:
        return None if self._on_gpu() else super().machine()  # on the GPU, a row is keyed by --soc

    def _providers(self) -> list:
        if not self._on_gpu():
            return ["CPUExecutionProvider"]
        # the CUDA provider may use TF32 in convolutions and matmuls; fp32 asks it not to
        cuda = {"device_id": str(self.device)}
        if self.requested_precision == "fp32":
            cuda["use_tf32"] = "0"
        return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]

    def versions(self) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": repr(self._providers())}

    @property
    def precision(self) -> str:
        # TF32 keeps fp16's 10-bit mantissa, so it is judged with the fp16 tolerances
        return "fp16" if self._on_gpu() and self.requested_precision != "fp32" else "fp32"

    def peak(self, precision: str, cache_dir: Path | None = None) -> Peak:
        """The CPU's peak, or on the CUDA provider the GPU's documented dense peak for the math it
        ran: fp32 with TF32 off, else TF32 (reported as 'fp16', its tolerance class)."""
        if not self._on_gpu():
            return super().peak(precision, cache_dir)
        math = "fp32" if precision == "fp32" else "tf32"
        return accelerator_peak(nvidia_smi("name", self.device), math, precision)

    def open(self, artifact: Path, input_shapes: Mapping[str, tuple[int, ...]]) -> Session:
        ok, why = self.availability()
        if not ok:
            raise BackendUnavailable(why)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # intra-op threads spin between the parallel sections of a run, as ORT's own default and
        # onnxruntime_perf_test run them (turned off, FPS read 0.95 of the default's); they stop
        # spinning when the run returns, so they no longer keep the cores busy after it: left
        # spinning, they slowed the PyTorch reference forward that follows 1.6x (Efficient-3DCNNs
        # full: 75 vs 47 ms)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        providers = self._providers()
        session = ort.InferenceSession(str(artifact), options, providers=providers)
        if providers[0] != "CPUExecutionProvider":
            _require_provider(session, providers[0][0], artifact, self.device)
        return _OrtSession(session)


def _require_provider(session, provider: str, artifact: Path, device: int) -> None:
    """ONNX Runtime falls back to the next provider silently when one fails to initialise (a
    missing CUDA or cuDNN library, a wrong device id): a CPU run must not be reported as GPU."""
    running = session.get_providers()
    if not running or running[0] != provider:
        raise BackendUnavailable(
            f"onnxruntime: {artifact.name}: {provider} (device {device}) was requested but the "
            f"session runs on {', '.join(running) or 'no provider'}; ONNX Runtime fell back "
            f"silently, usually for a CUDA/cuDNN library it cannot load (see its log at "
            f"log_severity_level 0) or a device id this machine lacks")


BACKEND = OnnxRuntimeBackend  # what harness.backends.backend_class('onnxruntime') gives
