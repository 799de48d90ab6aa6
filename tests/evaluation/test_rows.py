"""The rows a results dict is shown as: the same for ``ivr test`` and ``ivr report``."""

from rich.console import Console

from ivr_cli.display import results_table
from ivr_core.evaluation.metrics import HEADLINE_KEYS
from ivr_core.evaluation.rows import result_rows


def headline(x: float) -> dict:
    return dict(zip(HEADLINE_KEYS, (x, x + 0.01, x + 0.02, x + 0.03)))


def full_results() -> dict:
    res = headline(0.5)
    res["iterations"] = [headline(0.1), headline(0.2)]
    res["modules"] = {"local": [headline(0.1), headline(0.2)], "global": [headline(0.1),
                                                                          headline(0.3)]}
    res["best_candidate"] = {k: {"value": 0.4, "candidate": "global 1"} for k in HEADLINE_KEYS}
    res["oracle"], res["uniform_attention"] = headline(0.9), headline(0.45)
    res["context"] = {**headline(0.6), "iterations": [headline(0.61), headline(0.62)],
                      "oracle": headline(0.95)}
    return res


def test_rows_of_a_full_model():
    rows = result_rows(full_results())
    assert [(label, key) for label, _, key in rows] == [
        ("final", "final"), ("local iter 0", "iter 0"), ("local iter 1", "iter 1"),
        ("global iter 0", "iter 0"), ("global iter 1", "iter 1"),
        ("best single candidate", "best"), ("oracle (best candidate per region)", "oracle"),
        ("uniform attention (control)", "uniform")]
    assert rows[4][1]["inst_ap"] == 0.3 and rows[5][1]["cls_ac"] == 0.4


def test_rows_of_a_single_chain_and_of_a_baseline():
    res = {**headline(0.5), "iterations": [headline(0.1), headline(0.2)]}
    assert [label for label, _, _ in result_rows(res)] == ["final", "iter 0", "iter 1"]
    baseline = {**headline(0.5), "iterations": [headline(0.5)]}
    assert [label for label, _, _ in result_rows(baseline)] == ["final"]
    assert [label for label, _, _ in result_rows(full_results()["context"],
                                                 controls=False)] == ["final", "iter 0", "iter 1"]


def test_the_console_table_shows_those_rows_then_the_context_classes():
    console = Console(width=200, record=True)
    console.print(results_table({"full": full_results()}, "mtest"))
    text = console.export_text()
    labels = [label for label, _, _ in result_rows(full_results())] + [
        "context classes, final", "context classes, iter 0", "context classes, iter 1"]
    positions = [text.index(label) for label in labels]
    assert positions == sorted(positions)
    assert "0.950" not in text  # the context's controls stay out of the console table
    assert "0.330" in text  # global iter 1's cls_ac
