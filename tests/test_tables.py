"""train/tables.py: the one Markdown table builder, and the reports that use it."""
from __future__ import annotations

import numpy as np
import pytest

from detector import get_config
from train.card import build_card
from train.evaluate import comparison_table, to_markdown
from train.tables import cell, markdown_table


def test_cells_blank_missing_values_round_floats_and_escape_pipes():
    assert [cell(None), cell(0.123456), cell(np.float32(0.5)), cell(7), cell(True), cell("a|b")] == [
        "", "0.1235", "0.5000", "7", "True", r"a\|b"]
    assert cell(0.98765, digits=3) == "0.988"


def test_table_shape_and_padding():
    table = markdown_table(["set", "auc", "n"], [["alpha", 0.5, 3], ["beta", None]])
    assert table.splitlines() == ["| set | auc | n |", "|---|---|---|", "| alpha | 0.5000 | 3 |", "| beta |  |  |"]
    with pytest.raises(ValueError, match="3 cells"):
        markdown_table(["a", "b"], [[1, 2, 3]])


def _columns(table_lines: list[str]) -> set[int]:
    return {line.replace(r"\|", "").count("|") for line in table_lines}


def _metrics(auc):
    return {"n": 10, "accuracy": 0.9, "auc": auc, "fpr": None, "ai_verdicts": 4, "ai_precision": 1.0,
            "real_verdicts": 5, "real_precision": 0.8, "uncertain_rate": 0.1, "confusion": [[4, 1], [0, 5]]}


def test_reports_build_well_formed_tables_with_the_helper():
    per_source = {"overall": {**_metrics(0.91), "macro_auc": 0.9}, "alpha|x": _metrics(None)}
    result = {"model": "m", "data": "d", "split": "test", "threshold": 0.5, "per_source": per_source,
              "robustness": {"overall": {"clean": 0.9, "jpeg_q75": None}, "alpha|x": {"clean": 0.8, "jpeg_q75": 0.7}}}
    report = to_markdown(result)
    rows = [line for line in report.splitlines() if line.startswith("|")]
    assert r"| alpha\|x | 10 | 0.9000 |  |" in report  # the pipe in a source name does not add a column
    assert _columns(rows[:4]) == {11} and _columns(rows[4:]) == {4}  # 9 metric columns (TPR at 1% and 5% FPR among them)

    comparison = comparison_table(result, {**result, "model": "old"})
    assert comparison.splitlines()[:2] == ["| set | AUC `old` | AUC this model |", "|---|---|---|"]
    assert "| overall | 0.9100 | 0.9100 |" in comparison and _columns(comparison.splitlines()) == {4}

    config = get_config("convitx_tiny")
    config.meta["validation_metrics"] = per_source
    card = build_card(config, evaluation=result)
    assert "| set | n | accuracy | auc | tpr_at_1pct_fpr | tpr_at_5pct_fpr | fpr | ai_verdicts |" in card
    assert "| set | clean | jpeg_q75 |" in card and "| overall | 0.9000 |  |" in card
