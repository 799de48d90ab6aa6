"""The rows a results dict (``results.json``, see :mod:`ivr_core.evaluation.tester`) is shown
as, by ``ivr test``, ``ivr demo`` and ``ivr report`` alike."""

from __future__ import annotations

from typing import Any


def result_rows(res: dict[str, Any], controls: bool = True) -> list[tuple[str, dict, str]]:
    """``(label, headline metrics, key)`` per row of ``res``: the final output, then every
    module's chain of iterations (global and full models) or the iterations of the single
    chain, then (``controls``) the best single candidate, the oracle and the uniform
    attention. ``key`` names the row across runs ("final", "iter I", "best", "oracle",
    "uniform") for comparing one run's row with another's."""
    rows = [("final", res, "final")]
    iterations = res.get("iterations") or []
    if isinstance(res.get("modules"), dict) and res["modules"]:
        rows += [(f"{name} iter {i}", r, f"iter {i}") for name, chain in res["modules"].items()
                 for i, r in enumerate(chain)]
    elif len(iterations) > 1:
        rows += [(f"iter {i}", r, f"iter {i}") for i, r in enumerate(iterations)]
    if not controls:
        return rows
    best = res.get("best_candidate") or {}
    if best:  # the attention's final answer against its best input and the oracle
        rows.append(("best single candidate",
                     {k: v.get("value") for k, v in best.items() if isinstance(v, dict)},
                     "best"))
    if isinstance(res.get("oracle"), dict):
        rows.append(("oracle (best candidate per region)", res["oracle"], "oracle"))
    if isinstance(res.get("uniform_attention"), dict):
        rows.append(("uniform attention (control)", res["uniform_attention"], "uniform"))
    return rows
