"""``python -m harness.localise MODEL --backend X [--precision default]``: localise one model's
first batch on one backend and write the table, the plot and the worst-sample picture under
``--report-dir/localise/<model>-<backend>-<precision>-<profile>``."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Sequence

from harness import localise_report
from harness.backends import backend_class
from harness.localise import deployed_run, localise, relative_error
from harness.defaults import DEFAULT_CACHE_DIR, DEFAULT_REPORT_DIR


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of a command that runs one model's first batch (this one, harness.keep_fp32):
    the model, its profile and batch size, and where its cache, data and weights are."""
    parser.add_argument("model")
    parser.add_argument("--profile", default="smoke", choices=("smoke", "full"))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path(DEFAULT_CACHE_DIR))
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--weights-dir", type=Path, default=None)
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = add_model_arguments(argparse.ArgumentParser(
        prog="python -m harness.localise",
        description="Where a deployed model starts to differ from the fp32 ONNX Runtime "
                    "reference: per-node error table, plot and worst-sample picture."))
    parser.add_argument("--backend", required=True)
    parser.add_argument("--precision", default=None, choices=("fp32", "default"),
                        help="default: the backend's own default")
    parser.add_argument("--report-dir", type=Path, default=Path(DEFAULT_REPORT_DIR))
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from harness import registry, stages

    parser = _parser()
    args = parser.parse_args(argv)
    spec = registry.get(args.model)
    backend = backend_class(args.backend)(precision=args.precision)
    available, why = backend.availability()
    if not available and backend.localises:
        parser.error(f"--backend {args.backend}: {why}")
    onnx_path = stages.onnx_for(spec, args.profile, args.cache_dir, args.weights_dir)
    group, feeds = first_batch(spec, args.profile, args.data_root, args.cache_dir,
                                args.batch_size)
    network = stages.torch_network(spec, args.profile,
                                   stages.load_weights(spec, args.weights_dir))
    result = localise(onnx_path, backend, feeds, time_limit_s=args.time_limit,
                      module_names={name for name, _ in network.named_modules()}, label=spec.name,
                      spec=spec)
    print(result.summary())
    if result.unavailable:
        return 1
    folder = (args.report_dir / "localise"
              / f"{spec.name}-{args.backend}-{result.precision}-{args.profile}")
    paths = localise_report.write(result, folder)
    picture, left_out = _worst_sample_picture(spec, backend, onnx_path, network, group, feeds,
                                              folder)
    _print_paths({**paths, "picture": picture}, left_out)
    return 0


def first_batch(spec, profile: str, data_root, cache_dir: Path, batch_size: int):
    """The first batch of the model's dataset: (its samples, the feeds)."""
    from harness import stages
    from harness.outputs import batches

    dataset = stages.open_dataset(spec, profile, data_root, cache_dir, limit=batch_size)
    for group, feeds in batches(dataset, batch_size, spec.input_names):
        return group, feeds
    raise SystemExit(f"{spec.name}: the dataset under {data_root or 'the generated default'} "
                     f"yielded no sample")


def _worst_sample_picture(spec, backend, onnx_path: Path, network, group, feeds,
                          folder: Path) -> tuple[Path | None, list[str]]:
    """The batch's worst sample as the deployed model (unmarked) and PyTorch give it, drawn
    into ``folder``; returns the picture and the outputs it could not draw."""
    from harness.outputs import torch_forward
    from harness.pictures import worst_sample

    with tempfile.TemporaryDirectory(prefix="localise-") as tmp:
        deployed = deployed_run(backend, onnx_path, feeds, Path(tmp), spec)
    reference = torch_forward(network, feeds, spec.output_names)
    worst = max(range(len(group)), key=lambda i: max(
        relative_error(deployed[n][i], reference[n][i])[0] for n in spec.output_names))
    return worst_sample(spec, {n: reference[n][worst] for n in spec.output_names},
                        {n: deployed[n][worst] for n in spec.output_names},
                        folder / "worst_sample.png", group[worst].id)


def _print_paths(paths: dict[str, Path | None], left_out: Sequence[str]) -> None:
    for kind, path in paths.items():
        if path is not None:
            print(f"{kind}: {path}")
    if left_out:
        print(f"no picture for outputs {', '.join(left_out)}")
