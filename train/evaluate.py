"""``python -m train evaluate``: metrics per source, robustness, calibration and ROC plots."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from detector.hub import CARD_NAME, load_checkpoint  # noqa: E402

from .augment import DEGRADATIONS  # noqa: E402
from .card import build_card  # noqa: E402
from .data import Record, load_records  # noqa: E402
from .metrics import per_source_metrics, predict_logits  # noqa: E402
from .tables import markdown_table  # noqa: E402


def evaluate(model_ref: str, data: str, split: str = "test", sources: list[str] | None = None,
             out: str | None = None, robustness: bool = True, update_card: bool = False,
             num_workers: int = 1, command: str | None = None, loso_table: str | None = None,
             ablation_table: str | None = None, compare: str | None = None) -> dict:
    model, config, folder = load_checkpoint(model_ref)
    records = load_records(data, split=split, sources=sources)
    labels = np.array([r.label for r in records])

    rule = config.decision

    def p_fake(degrade=None) -> np.ndarray:
        return rule.p_fake(predict_logits(model, records, degrade=degrade, num_workers=num_workers))

    clean = p_fake()
    result = {
        "model": str(model_ref),
        "data": data,
        "split": split,
        "threshold": rule.threshold,
        "temperature": rule.temperature,
        "uncertain_band": list(rule.uncertain_band),
        "per_source": per_source_metrics(records, clean, rule),
    }

    if robustness:
        table: dict[str, dict[str, float | None]] = {}
        for degradation, fn in DEGRADATIONS.items():
            scores = clean if degradation == "clean" else p_fake(fn)
            for name, auc in _aucs(records, scores).items():
                table.setdefault(name, {})[degradation] = auc
            print(f"robustness {degradation}: overall AUC {table['overall'][degradation]:.4f}", file=sys.stderr)
        result["robustness"] = table

    if out:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        (out_dir / "metrics.md").write_text(to_markdown(result))
        _plots(records, clean, labels, out_dir)
    if loso_table:
        result["leave_one_source_out"] = Path(loso_table).read_text()
    if ablation_table:
        result["ablation"] = Path(ablation_table).read_text()
    if compare:
        result["comparison"] = comparison_table(result, json.loads(Path(compare).read_text()))
    if update_card:
        if not (Path(str(model_ref)).is_dir()):
            raise SystemExit("--update-card needs a local checkpoint folder")
        commands = {k: v for k, v in {"fit": config.meta.get("fit_command"), "evaluate": command}.items() if v}
        (folder / CARD_NAME).write_text(build_card(config, evaluation=result, commands=commands))
    print(to_markdown(result))
    return result


def comparison_table(new: dict, old: dict) -> str:
    """This model beside another on the same splits: AUC per source, CIFAKE accuracy, robustness."""
    rows = [[name, old["per_source"].get(name, {}).get("auc"), row.get("auc")] for name, row in new["per_source"].items()]
    rows.append(["macro AUC", *(r["per_source"]["overall"].get("macro_auc") for r in (old, new))])
    rows.append(["CIFAKE accuracy (stored threshold)", *(r["per_source"].get("cifake", {}).get("accuracy") for r in (old, new))])
    for degradation in ("jpeg_q75", "jpeg_q50", "resize_0.5x", "blur_r1", "crop_0.7"):
        rows.append([f"overall AUC, {degradation}",
                     *(r.get("robustness", {}).get("overall", {}).get(degradation) for r in (old, new))])
    return markdown_table(["set", f"AUC `{old['model']}`", "AUC this model"], rows) + "\n"


def _aucs(records: list[Record], scores: np.ndarray) -> dict[str, float | None]:
    labels = np.array([r.label for r in records])
    sources = np.array([r.source for r in records])
    result = {"overall": float(roc_auc_score(labels, scores))}
    for source in sorted(set(sources)):
        mask = sources == source
        result[source] = float(roc_auc_score(labels[mask], scores[mask])) if len(set(labels[mask])) == 2 else None
    valid = [v for k, v in result.items() if k != "overall" and v is not None]
    result["macro"] = float(np.mean(valid)) if valid else None
    return result


def to_markdown(result: dict) -> str:
    cols = ("n", "accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "fpr", "ai_precision", "real_precision", "uncertain_rate")
    lines = [f"Model `{result['model']}` on `{result['data']}` ({result['split']}), threshold {result['threshold']:.3f}",
             "", markdown_table(["source", *cols], ([name, *(m.get(c) for c in cols)] for name, m in result["per_source"].items()))]
    overall = result["per_source"]["overall"]
    lines += ["", f"Macro AUC over sources: {overall.get('macro_auc') or float('nan'):.4f}",
              f"Confusion (overall, rows true real/fake, cols predicted real/fake): {overall['confusion']}"]
    if "robustness" in result:
        names = list(result["robustness"]["overall"].keys())
        lines += ["", markdown_table(["AUC", *names], ([source, *(row[n] for n in names)]
                                                         for source, row in result["robustness"].items()))]
    return "\n".join(lines) + "\n"


def _plots(records: list[Record], scores: np.ndarray, labels: np.ndarray, out_dir: Path) -> None:
    sources = np.array([r.source for r in records])
    fig, ax = plt.subplots(figsize=(5, 5))
    prob_true, prob_pred = calibration_curve(labels, scores, n_bins=10, strategy="quantile")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.plot(prob_pred, prob_true, "o-", label="ConVitX")
    ax.set(xlabel="predicted P(AI-generated)", ylabel="observed fraction AI-generated", title="Reliability")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "reliability.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    for name in ["overall", *sorted(set(sources))]:
        mask = np.ones(len(labels), bool) if name == "overall" else sources == name
        if len(set(labels[mask])) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels[mask], scores[mask])
        ax.plot(fpr, tpr, lw=2.5 if name == "overall" else 1, label=f"{name} ({roc_auc_score(labels[mask], scores[mask]):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(xlabel="false-positive rate (real flagged)", ylabel="true-positive rate", title="ROC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "roc.png", dpi=120)
    plt.close(fig)
