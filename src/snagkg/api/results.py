"""Run results, written as ``results.json``."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import write_json


@dataclass
class Results:
    """The outcome of a training run, written as ``results.json``."""
    valid: Dict[str, float]
    test: Dict[str, float]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    epoch_seconds: float
    parameters: int
    dataset: Dict[str, Any]
    config: Dict[str, Any]
    stopped_early: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The results as a plain dict."""
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        """Write the results as JSON to ``path`` atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "Results":
        """Read ``results.json`` (one-line error when it is missing or malformed)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SnagError("results.json not found (is the run finished?)", path) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise SnagError(f"not valid JSON: {exc}", path) from None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def summary(self) -> str:
        """A few human-readable lines: the test metrics and the run's size and time."""
        def fmt(m: Optional[Dict[str, float]]) -> str:
            if not m:
                return "-"
            line = " ".join(f"{k}={m[k]:.4f}" if k != "mr" else f"mr={m[k]:.1f}" for k in ("mrr", "mr", "hits@1", "hits@3", "hits@10") if k in m)
            return line + (f" (the first {m['limit']:,} queries)" if m.get("limit") else "")
        return (f"valid: {fmt(self.valid)}\ntest:  {fmt(self.test)}\n"
                f"best epoch {self.best_epoch} of {self.epochs_run}, {self.train_seconds:.1f}s training "
                f"({self.epoch_seconds:.2f}s/epoch median), {self.parameters:,} parameters")
