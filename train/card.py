"""The model card (README.md) written next to every checkpoint."""
from __future__ import annotations

from detector.config import ConVitXConfig
from detector.hub import model_card

from .tables import markdown_table


COLUMNS = ("n", "accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "fpr", "ai_verdicts", "ai_precision",
           "real_verdicts", "real_precision", "uncertain_rate")


def _branch_line(b) -> str:
    if b.readout == "tokens":
        source = (b.weights or {}).get("source") or {}
        where = (f"; weights by reference (sha256 `{b.weights['sha256'][:12]}…`, converted from"
                 f" `{source.get('package')}=={source.get('version')}`)") if b.weights else ""
        return (f"- Branch `{b.name}`: timm `{b.model}` on the global view at {b.image_size or 'global'} px"
                f"{' (frozen)' if b.frozen else ''}, read at blocks `{b.blocks}` (cls + mean patch token per block,"
                f" learned block weights, RINE){where}")
    return (f"- Branch `{b.name}`: timm `{b.model}` on the {b.view} view, {b.input} input"
            f"{' (frozen)' if b.frozen else ''}; {b.kwargs or ''}")


def _table(metrics: dict, columns=COLUMNS) -> str:
    return markdown_table(["set", *columns], ([name, *(row.get(c) for c in columns)] for name, row in metrics.items()))


def build_card(config: ConVitXConfig, evaluation: dict | None = None, commands: dict | None = None) -> str:
    meta = config.meta
    calib = meta.get("calibration", {})
    rule, pre = config.decision, config.preprocess
    lo, hi = rule.uncertain_band
    parts = [
        f"# ConVitX `{config.name}`",
        "",
        "A fusion classifier (its branches below) that tells AI-generated images from real photographs,"
        " with a Grad-CAM heatmap of where it looked. Architecture, preprocessing and the calibrated decision rule"
        " are in `config.json`; weights in `model.safetensors`.",
        "",
        "## How to load",
        "```python",
        "from detector import Detector",
        'detector = Detector.from_pretrained("path/to/this/folder")  # or "hf-hub:org/name@<revision>"',
        'prediction = detector.predict("photo.jpg")',
        "print(prediction.label, prediction.p_fake)",
        "```",
        "",
        "## Model",
        *[_branch_line(b) for b in config.branches],
        f"- Views: native-resolution {pre.tile_size} px tiles (never resized; at most {pre.max_tiles} per image,"
        f" on an even grid; images smaller than a tile are mirror-padded), and the whole image at"
        f" {pre.global_size}x{pre.global_size}. Tile features are averaged per image before the fused head.",
        f"- Decision: {rule.describe()} (calibrated p; temperature {rule.temperature:.3f}, threshold"
        f" {rule.threshold:.3f}, can't-tell band {lo:.3f}–{hi:.3f})",
        "",
        "## Training data",
        f"- Data: `{meta.get('train_data', 'n/a')}`; sources: {', '.join(meta.get('train_sources', [])) or 'n/a'}",
        f"- {meta.get('train_images', 'n/a')} training images, {meta.get('validation_images', 'n/a')} validation"
        " images (content-hashed hold-out from the train split; used for model selection and calibration only)",
        f"- Threshold chosen on validation so that at most {calib.get('max_fpr', 0.05):.0%} of real images"
        " (averaged over sources) are flagged.",
    ]
    precision = calib.get("verdict_precision")
    if precision:
        parts += ["", "## Calibration", ""]
        for name, info in precision.items():
            value = "n/a" if info["precision"] is None else f"{info['precision']:.1%}"
            parts.append(f"- `{name}` verdicts on validation: {value} precise (target {info['target']:.0%}, averaged"
                         f" over sources): {'reached' if info['reached'] else '**NOT reached** within the allowed band'}")
        for warning in calib.get("warnings", []):
            parts.append(f"- **Warning:** {warning}")
    if meta.get("validation_metrics"):
        parts += ["", "## Validation (calibrated threshold)", "", _table(meta["validation_metrics"])]
    if evaluation:
        parts += ["", "## Test results", "", f"Data: `{evaluation.get('data')}`, split `{evaluation.get('split')}`.", ""]
        parts += [_table(evaluation["per_source"])]
        if evaluation.get("robustness"):
            parts += ["", "### Robustness (AUC per degradation)", ""]
            rob = evaluation["robustness"]
            names = list(next(iter(rob.values())).keys())
            parts.append(markdown_table(["set", *names], ([source, *(row.get(n) for n in names)] for source, row in rob.items())))
        if evaluation.get("comparison"):
            parts += ["", "### Beside the first embedded model (0.1, whole image squashed to 64 px)", "",
                      evaluation["comparison"]]
        if evaluation.get("ablation"):
            parts += ["", "### Design ablation", "", evaluation["ablation"]]
        if evaluation.get("leave_one_source_out"):
            parts += ["", "### Leave-one-source-out", "", evaluation["leave_one_source_out"]]
    if commands:
        parts += ["", "## Reproduce", "", "```bash", *commands.values(), "```"]
    parts += [
        "",
        "## Intended use",
        "A second opinion for people checking whether an image is AI-generated. The probability is calibrated on"
        " held-out data; `uncertain` means the model should not be trusted either way.",
        "",
        "## Limitations",
        "- Trained on a few sources; generators, editing tools and compression it has not seen can fool it.",
        "- A verdict is not proof: never use it alone to accuse anyone.",
        "- Heavily re-compressed, resized or screenshotted images lose the traces it relies on.",
        "",
    ]
    return str(model_card("\n".join(parts)))  # huggingface_hub writes the YAML metadata header
