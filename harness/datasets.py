"""A streamed dataset over an index of items, shared by every model's reader.

A reader lists the items its dataset's own index names (a split file, a folder scan), and
gives a function that turns one item into samples. :class:`IndexedDataset` streams them,
counts what was read, records each item that was missing or failed (by name, with the
reason) instead of dropping it, and says whether the run saw the whole dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from harness.spec import DatasetLayoutError, Sample


@dataclass(frozen=True)
class Item:
    id: str  # the item's name as the dataset names it
    path: Path  # the file or folder it lives in
    meta: object = None  # label, ground-truth path, ... as the reader needs


class ItemUnreadable(Exception):
    """Raised by a reader's ``load`` when one item cannot be read; recorded, not fatal."""


class IndexedDataset:
    def __init__(
        self,
        root: Path,
        items: Sequence[Item],
        load: Callable[[Item], Iterable[Sample]],
        limit: int | None = None,
        generated: bool = False,
    ):
        self.root = Path(root)
        self.items = list(items)
        self._load = load
        self.limit = limit
        self.generated = generated
        self.read: int = 0
        self.samples: int = 0
        self.missing: list[str] = []
        self.failed: dict[str, str] = {}

    def __iter__(self) -> Iterator[Sample]:
        self.read, self.samples, self.missing, self.failed = 0, 0, [], {}
        for item in self.items[: self.limit] if self.limit else self.items:
            if not item.path.exists():
                self.missing.append(item.id)
                continue
            try:
                produced = list(self._load(item))
            except ItemUnreadable as err:
                self.failed[item.id] = str(err)
                continue
            self.read += 1
            for sample in produced:
                self.samples += 1
                yield sample

    @property
    def complete(self) -> bool:
        return (
            not self.generated
            and self.read == len(self.items)
            and not self.missing
            and not self.failed
        )

    @property
    def summary(self) -> dict:
        return {
            "root": str(self.root),
            "generated": self.generated,
            "listed": len(self.items),
            "limit": self.limit,
            "read": self.read,
            "samples": self.samples,
            "missing": len(self.missing),
            "missing_names": self.missing[:20],
            "failed": self.failed,
            "complete": self.complete,
        }


def require_layout(root: Path, required: Iterable[str], layout: str) -> None:
    """Raise a DatasetLayoutError naming what is absent and showing the expected tree."""
    root = Path(root)
    absent = [r for r in required if not (root / r).exists()]
    if absent:
        raise DatasetLayoutError(
            f"{root}: not the expected dataset layout; missing {', '.join(absent)}.\n"
            f"Expected:\n{layout}"
        )
