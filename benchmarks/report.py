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


def adapter_runs(baselines: list[str]) -> list[tuple[str, dict]]:
    """(row name, config overrides) for the shipped stage-3 adapter and each of `baselines`
    (adapter GGUFs; "none": the base model), every one at the shipped prior weight, so
    rows on the same inputs differ by the adapter alone (benchmarks/reasoning_*.py)."""
    from edge_app.llm.model import default_prior_weight

    runs = [("shipped adapter", {})]  # "auto": what `deemo-edge file` runs
    weight = default_prior_weight()
    for path in baselines:
        name = "no adapter" if path == "none" else Path(path).name
        runs.append((name, {"answer.llm.lora_path": path, "answer.llm.prior_weight": weight}))
    return runs


def judged(text: str, label: str, lines: list[str], truth: str) -> dict:
    """The local judge's fields for one answer (reasoning `text`, `label`) given the cue `lines`
    the LLM saw and the `truth` (benchmarks/reasoning_*.py)."""
    from edge_app.llm import reasoning
    from export import judge

    j = judge.judge(text, lines, truth, label)
    return {"clue_overlap": j.clue, "label_overlap": j.label, "hallucinated": sorted(j.hallucinated),
            "other_emotion": sorted(reasoning.named_emotions(text) - {label})}  # fmt: skip


def share(rows: list[dict], key: str) -> float:
    """Share of `rows` whose `key` is truthy (3 decimals; 0 for no rows)."""
    return round(sum(bool(r[key]) for r in rows) / max(1, len(rows)), 3)


def judged_figures(rows: list[dict]) -> dict:
    """Means over rows with `judged` fields: clue overlap (None when no row has one), label overlap."""
    clue = [r["clue_overlap"] for r in rows if r["clue_overlap"] is not None]
    return {"clue_overlap": round(sum(clue) / len(clue), 2) if clue else None,
            "label_overlap": round(sum(r["label_overlap"] for r in rows) / max(1, len(rows)), 2)}  # fmt: skip


def rows_table(summary: dict[str, dict], first: str) -> list[str]:
    """A markdown table, one row per run of `summary` ({run: {column: value}}), first column `first`."""
    keys = list(next(iter(summary.values())))
    lines = [f"| {first} | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    return lines + [f"| {name} | " + " | ".join(str(s[k]) for k in keys) + " |" for name, s in summary.items()]


def reasoning_side_by_side(windows: dict[str, list[dict]], head: Callable[[dict], str]) -> list[str]:
    """One markdown bullet per input: `head(first run's row)`, then every run's reasoning."""
    lines = ["", "Every window's reasoning (" + " / ".join(windows) + "):", ""]
    for rows in zip(*windows.values()):
        texts = " / ".join(f"{x['source']}: {x['reasoning']}" for x in rows)
        lines.append(f"- {head(rows[0])}: {texts}")
    return lines
