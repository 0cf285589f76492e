"""One package per model; each registers its ModelSpec on import (see harness/spec.py)."""
