"""Detection under image corruptions (``detcore test-robustness``): the test set evaluated once clean and
once per corruption and severity, summarised as the benchmark does (Michaelis et al. 2019):

- ``P_clean``: the metric on clean images (severity 0);
- ``mPC``: mean Performance under Corruption, the metric averaged over corruptions and severities 1..5;
- ``rPC``: relative Performance under Corruption, ``mPC / P_clean``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detcore.data.corruptions import BENCHMARK, CORRUPTIONS, EXTRA, FAMILIES
from detcore.errors import DetcoreError

GROUPS: dict[str, tuple[str, ...]] = {
    "benchmark": BENCHMARK,
    "all": BENCHMARK + EXTRA,
    "holdout": EXTRA,
    **FAMILIES,
}


def resolve_corruptions(names: Sequence[str]) -> list[str]:
    """Group names (benchmark, all, holdout, noise, blur, weather, digital) and corruption names, in order."""
    out: list[str] = []
    for name in names:
        for corruption in GROUPS.get(name, (name,)):
            if corruption not in CORRUPTIONS:
                known = ", ".join([*GROUPS, *CORRUPTIONS])
                raise DetcoreError(f"--corruptions: unknown {corruption!r}; known: {known}")
            if corruption not in out:
                out.append(corruption)
    return out


def corrupted_config(cfg: Any, corruption: str, severity: int, seed: int = 0) -> Any:
    """A copy of ``cfg`` whose test pipeline corrupts every image right after loading it."""
    from detcore.config import Config

    data = copy.deepcopy(cfg.to_dict())
    pipeline = data.get("data", {}).get("test", {}).get("pipeline")
    if not pipeline:
        raise DetcoreError(f"{cfg.filename or 'the config'}: test-robustness needs data.test.pipeline")
    loads = [i for i, step in enumerate(pipeline) if str(step.get("type", "")).endswith("LoadImageFromFile")]
    if not loads:
        raise DetcoreError(f"{cfg.filename or 'the config'}: data.test.pipeline has no LoadImageFromFile")
    step = {"type": "Corrupt", "corruption": corruption, "severity": severity, "seed": seed}
    pipeline.insert(loads[0] + 1, step)
    return Config(data, dict(cfg.provenance), cfg.filename)


def summarize(clean: float, corrupted: dict[str, dict[int, float]]) -> dict[str, float]:
    """``P_clean``, ``mPC`` (corruptions and severities >= 1) and ``rPC`` (NaN when ``P_clean`` is 0)."""
    values = [v for by_severity in corrupted.values() for s, v in by_severity.items() if s >= 1]
    mpc = float(np.mean(values)) if values else float("nan")
    return {"P_clean": clean, "mPC": mpc, "rPC": mpc / clean if clean > 0 else float("nan")}


def format_table(metric: str, clean: float, corrupted: dict[str, dict[int, float]]) -> str:
    severities = sorted({s for by_severity in corrupted.values() for s in by_severity})
    lines = [f"{'corruption':<20}" + "".join(f"{'sev ' + str(s):>9}" for s in severities) + f"{'mean':>9}"]
    for name, by_severity in corrupted.items():
        cells = "".join(f"{by_severity[s]:>9.3f}" for s in severities)
        lines.append(f"{name:<20}{cells}{np.mean(list(by_severity.values())):>9.3f}")
    summary = summarize(clean, corrupted)
    lines += [
        "",
        f"Clean performance [P] ({metric}) = {clean:.4f}",
        f"Mean Performance under Corruption [mPC] ({metric}) = {summary['mPC']:.4f}",
        f"Relative Performance under Corruption [rPC] ({metric}) = {100 * summary['rPC']:.1f} %",
    ]
    return "\n".join(lines)


def evaluate(
    cfg: Any, checkpoint: str | Path, work_dir: str | Path, device: str | None = None
) -> dict[str, float]:
    """The test metrics of ``cfg``'s model with ``checkpoint``'s weights on its test set as configured."""
    from detcore.engine import Runner

    runner = Runner.from_config(cfg, work_dir=str(work_dir), device=device)
    return runner.test(str(checkpoint))
