"""TensorRT on an NVIDIA GPU: one serialized engine per batch size, run through the Python API
(TensorRT 10/11 named-tensor API) with torch CUDA tensors as buffers.

Precision: 'fp32' builds with TF32 disabled, so convolutions and matmuls accumulate in full fp32.
'default' builds an fp16 engine, as TensorRT deployments (and the seeds' T4 column) run:
``BuilderFlag.FP16`` where this TensorRT has it (TensorRT 10). TensorRT 11 removed the
reduced-precision builder flags (networks are strongly typed); there 'default' is fp32 tensors
with TF32 tensor-core math on Ampere and newer GPUs, which keeps fp16's 10-bit mantissa and is
reported as 'fp16' (the tolerance class it belongs to); on older GPUs it is 'fp32'.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from harness.backends.base import ArtifactMismatch, Backend, Session, looks_like_oom
from harness.peak import Peak, accelerator_peak

def _logger(trt):
    """A TensorRT logger that keeps warnings and errors for exception messages."""

    class _Log(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity, msg):
            if severity in kept:
                self.messages.append(f"[{severity.name}] {msg}")

    kept = (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR,
            trt.ILogger.Severity.WARNING)

    return _Log()


def _failure(what: str, messages: list[str]) -> Exception:
    text = f"{what}:\n" + "\n".join(messages[-40:])
    return MemoryError(text) if looks_like_oom(text) else RuntimeError(text)


class _TensorRtSession(Session):
    def __init__(self, trt, runtime, engine, input_shapes: Mapping[str, tuple[int, ...]]):
        import torch

        self._torch = torch
        self._trt = trt
        self._runtime = runtime  # an engine must not outlive the runtime that deserialized it
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        self._inputs: dict[str, torch.Tensor] = {}
        self._outputs: dict[str, torch.Tensor] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = torch.from_numpy(np.empty(0, trt.nptype(engine.get_tensor_dtype(name)))).dtype
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                if name not in input_shapes:
                    raise ArtifactMismatch(f"the engine has input {name}, which was not requested "
                                           f"(requested: {', '.join(input_shapes)})")
                if not self._context.set_input_shape(name, tuple(input_shapes[name])):
                    low, _, high = engine.get_tensor_profile_shape(name, 0)
                    raise ArtifactMismatch(
                        f"input {name}: requested {tuple(input_shapes[name])}, the engine takes "
                        f"{tuple(low)} to {tuple(high)} (its optimisation profile 0)")
                buffers = self._inputs
            else:
                buffers = self._outputs
            shape = tuple(self._context.get_tensor_shape(name))
            try:
                buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            except torch.cuda.OutOfMemoryError as error:
                raise MemoryError(str(error)) from error
            self._context.set_tensor_address(name, buffers[name].data_ptr())
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._timed = False

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.cuda.stream(self._stream):
            for name, buffer in self._inputs.items():
                buffer.copy_(torch.from_numpy(np.ascontiguousarray(feeds[name])))
            self._start.record(self._stream)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            self._end.record(self._stream)
            outputs = {name: buffer.cpu().numpy() for name, buffer in self._outputs.items()}
        self._stream.synchronize()
        self._timed = True
        return outputs

    def last_compute_ms(self) -> float | None:
        return self._start.elapsed_time(self._end) if self._timed else None

    def io_shapes(self) -> dict[str, dict[str, tuple]]:
        """The engine's own tensor shapes (ICudaEngine.get_tensor_shape: -1 where the ONNX left
        an axis dynamic); an input's dynamic axis that optimisation profile 0 pins (min == max,
        as compile() builds it) reads as that size. Written from the TensorRT 10 Python API
        reference; not run on this project's CPU-only CI."""
        engine, trt = self._engine, self._trt
        shapes: dict[str, dict[str, tuple]] = {"inputs": {}, "outputs": {}}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dims = [int(d) for d in engine.get_tensor_shape(name)]
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                low, _, high = engine.get_tensor_profile_shape(name, 0)
                dims = [lo if d < 0 and lo == hi else d for d, lo, hi in zip(dims, low, high)]
                kind = "inputs"
            else:
                kind = "outputs"
            shapes[kind][name] = tuple(None if d < 0 else d for d in dims)
        return shapes

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
        self._inputs.clear()
        self._outputs.clear()


def nvidia_smi(field: str, device: int | None = None) -> str:
    """One ``nvidia-smi --query-gpu`` field (``driver_version``, ``name``) of GPU ``device``
    (the first without one), or 'absent'."""
    import subprocess

    command = ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"]
    if device is not None:
        command.append(f"--id={device}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "absent"


class TensorRtBackend(Backend):
    name = "tensorrt"
    artifact_suffix = ".engine"
    reports_compute_time = True  # CUDA events around execute_async_v3

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, ("tensorrt is not installed: pip install tensorrt (on a machine with an "
                           "NVIDIA GPU and driver)")
        try:
            import torch
        except ImportError:
            return False, "torch is not installed: pip install a CUDA build of torch"
        if not torch.cuda.is_available():
            return False, (f"no CUDA GPU visible to torch {torch.__version__} "
                           f"(torch.cuda.is_available() is False): run on a machine with an NVIDIA "
                           f"GPU and a CUDA build of torch")
        return True, ""

    def versions(self) -> dict[str, str]:
        import torch

        trt = self.require("tensorrt")
        # an engine only runs on the GPU model and TensorRT version that built it
        return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(self.device),
                "cuda": str(torch.version.cuda),
                "tf32": "off" if self.requested_precision == "fp32" else "on",
                "fp16_flag": str(self._fp16_engine(trt))}

    def machine(self) -> None:
        return None  # an accelerator row is keyed by its --soc

    def environment(self, spec=None) -> dict:
        return {**super().environment(spec), "driver": nvidia_smi("driver_version")}

    def _fp16_engine(self, trt) -> bool:
        return self.requested_precision != "fp32" and hasattr(trt.BuilderFlag, "FP16")

    @property
    def precision(self) -> str:
        import torch

        if self.requested_precision == "fp32":
            return "fp32"
        trt = self.require("tensorrt")
        if self._fp16_engine(trt):
            return "fp16"
        return "fp16" if torch.cuda.get_device_capability(self.device) >= (8, 0) else "fp32"

    def peak(self, precision: str, cache_dir: Path | None = None) -> Peak:
        """The GPU's documented dense peak for the math the engine runs: an fp16 engine's fp16,
        TensorRT 11's 'default' TF32 (reported as 'fp16', its tolerance class), else fp32."""
        import torch

        math = precision
        if precision == "fp16" and not self._fp16_engine(self.require("tensorrt")):
            math = "tf32"
        return accelerator_peak(torch.cuda.get_device_name(self.device), math, precision)

    def compile(self, onnx_path: Path, input_shapes: Mapping[str, tuple[int, ...]],
                out_path: Path, spec) -> Path:
        trt = self.require("tensorrt")
        log = _logger(trt)
        builder = trt.Builder(log)
        network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
        parser = trt.OnnxParser(network, log)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError(f"TensorRT cannot parse {onnx_path}:\n" + "\n".join(errors))
        config = builder.create_builder_config()
        if self.requested_precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)
        elif self._fp16_engine(trt):
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for name, shape in input_shapes.items():
            profile.set_shape(name, tuple(shape), tuple(shape), tuple(shape))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise _failure(f"TensorRT could not build {onnx_path} for {dict(input_shapes)}",
                           log.messages)
        out_path = Path(out_path)
        out_path.write_bytes(memoryview(serialized))
        return out_path

    def open(self, artifact: Path, input_shapes: Mapping[str, tuple[int, ...]]) -> Session:
        trt = self.require("tensorrt")
        import torch

        torch.cuda.set_device(self.device)
        log = _logger(trt)
        runtime = trt.Runtime(log)
        engine = runtime.deserialize_cuda_engine(Path(artifact).read_bytes())
        if engine is None:
            raise _failure(f"TensorRT could not load {artifact}", log.messages)
        return _TensorRtSession(trt, runtime, engine, input_shapes)


BACKEND = TensorRtBackend  # what harness.backends.backend_class('tensorrt') gives
