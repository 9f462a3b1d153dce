"""What a benchmark does last: its result as JSON, a markdown table, an optional plot, and the
table on stdout (benchmarks/results/<name>.{json,md,png})."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def write(
    stem: Path,
    result: dict,
    markdown: Callable[[dict], str],
    plot: Callable[[dict, Path], None] | None = None,
) -> None:
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    stem.with_suffix(".md").write_text(text)
    if plot is not None:
        plot(result, stem.with_suffix(".png"))
    print(text)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    """Lay out, write (110 dpi) and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
