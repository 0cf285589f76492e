"""Checkpoints written the way each upstream project's training code saves them, from any
state_dict: the exact file name the seed names, the nesting and key prefix of the card
(``spec.checkpoint``), and the entries upstream stores beside the weights (epoch, optimizer
state, mmcv's ``meta``), so that a run given them takes the user's path through the loader.

``python -m tests.upstream_checkpoints DIR [--models a,b]`` writes the registered models'
seeded networks so into DIR, for trying ``pytest -m accuracy --weights-dir DIR`` by hand."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from harness.spec import Checkpoint


def _optimizer_state(state_dict: dict, **group) -> dict:
    """An optimizer's state_dict in torch's own shape (no steps taken: empty per-parameter state)."""
    return {"state": {}, "param_groups": [{**group, "params": list(range(len(state_dict)))}]}


# What each upstream training script stores beside the weights (read from the upstream sources
# named in each card's ``upstream``): plain containers, as torch.load(weights_only=True) accepts.
_BESIDE_THE_WEIGHTS = {
    # Efficient-3DCNNs main.py: save_checkpoint(state, is_best) copies the best to *_best.pth
    "efficient3dcnn": lambda sd: {"epoch": 211, "arch": "mobilenetv2", "best_prec1": 0.811,
                                  "optimizer": _optimizer_state(sd, lr=0.1, momentum=0.9, dampening=0.9,
                                                                weight_decay=1e-3, nesterov=False)},
    # FLAVR main.py: myutils.save_checkpoint({epoch, state_dict, optimizer, best_psnr, lr})
    "flavr": lambda sd: {"epoch": 199, "best_psnr": 32.2, "lr": 2e-4,
                         "optimizer": _optimizer_state(sd, lr=2e-4, betas=(0.9, 0.99), eps=1e-8,
                                                       weight_decay=0, amsgrad=False)},
    # flownet2-pytorch main.py: save_checkpoint({arch, epoch, state_dict, best_EPE})
    "flownet2": lambda sd: {"arch": "FlowNet2", "epoch": 0, "best_EPE": 1.4},
    # GMA train.py: torch.save(model.state_dict()) of the DataParallel model, nothing beside
    "gma": lambda sd: {},
    # mmcv's save_checkpoint: {'meta': {...}, 'state_dict': ...} (the released files drop the optimizer)
    "slowfast": lambda sd: {"meta": {"mmcv_version": "1.0.2", "mmaction_version": "0.6.0",
                                     "time": "Thu Jul 16 12:34:56 2020", "epoch": 256, "iter": 300032,
                                     "config": "model = dict(type='Recognizer3D', backbone=dict(type='ResNet3dSlowFast'))"}},
}


def upstream_payload(name: str, card: Checkpoint, state_dict: dict) -> dict:
    """What upstream's ``torch.save`` receives for this state_dict (keys as the network names
    them), for the model ``name`` whose card declares the checkpoint format ``card``; a model
    this module does not know gets an ``epoch`` beside its weights."""
    prefix = card.strip_prefix or ""
    weights = {prefix + key: value for key, value in state_dict.items()}
    beside = _BESIDE_THE_WEIGHTS.get(name, lambda sd: {"epoch": 1})(state_dict)
    if card.nesting is None:
        assert not beside, f"{name}: a bare state_dict holds nothing beside the weights"
        return weights
    return {**beside, card.nesting: weights}


def write_upstream_checkpoint(name: str, card: Checkpoint, state_dict: dict, directory: Path) -> Path:
    """``directory/<the seed's file name>`` in upstream's format; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / card.filename
    torch.save(upstream_payload(name, card, state_dict), path)
    return path


def write_seeded_checkpoints(directory: Path, names: tuple[str, ...] | None = None) -> list[Path]:
    """The registered models' seeded networks as upstream-format checkpoints in ``directory``.
    The same seed gives the same bytes, so the suite's content-keyed cache serves every later run."""
    from harness import checkpoint, registry

    paths = []
    for spec in registry.all_specs():
        if names is None or spec.name in names:
            network = checkpoint.build_network(spec, "smoke", checkpoint.seeded_weights())
            paths.append(write_upstream_checkpoint(spec.name, spec.checkpoint, network.state_dict(), directory))
            del network
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--models", help="comma-separated model names (default: all registered)")
    args = parser.parse_args(argv)
    names = tuple(n.strip() for n in args.models.split(",")) if args.models else None
    for path in write_seeded_checkpoints(args.directory, names):
        print(path)


if __name__ == "__main__":
    main()
