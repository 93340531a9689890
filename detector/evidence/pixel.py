"""The pixel model as one kind of evidence: its calibrated score and Grad-CAM map."""

from __future__ import annotations

from ..images import CannotJudgeError, DecodedImage
from .base import NOTE, STATISTICAL, UNCERTAIN, Evidence, EvidenceKind


def _num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


class PixelModelEvidence(EvidenceKind):
    """Wraps a ``Detector``; only its public ``predict_decoded`` is used."""

    name = "pixel_model"

    def __init__(self, detector, cam: bool = True):
        self.detector = detector
        self.cam = cam

    def collect(self, item: DecodedImage) -> list[Evidence]:
        return self.collect_batch([item])[0]

    def collect_batch(self, items: list[DecodedImage]) -> list[list[Evidence]]:
        if not items:
            return []
        try:
            predictions = self.detector.predict_decoded([item.image for item in items], cam=self.cam)
        except CannotJudgeError as exc:
            if len(items) == 1:
                return [[self.cannot_judge(str(exc))]]
            # One image the model cannot judge must not cost the others theirs: retry one by one.
            return [self.collect_batch([item])[0] for item in items]
        return [[self._evidence(prediction)] for prediction in predictions]

    def cannot_judge(self, reason: str) -> Evidence:
        return Evidence(
            self.name,
            "model",
            UNCERTAIN,
            NOTE,
            f"The pixel model cannot judge this image: {reason}",
            {"reason": reason},
        )

    def _evidence(self, prediction) -> Evidence:
        lo, hi = prediction.uncertain_band
        statement = (
            f"The pixel model gives p(AI-generated)={_num(prediction.p_fake)}: "
            + {
                "ai_generated": f"at or above its threshold {_num(prediction.threshold)}",
                "real": f"below its threshold {_num(prediction.threshold)}",
                UNCERTAIN: f"inside its uncertain band {_num(lo)}–{_num(hi)}, so it cannot tell",
            }.get(prediction.label, prediction.label)
            + "."
        )
        return Evidence(self.name, "model", prediction.label, STATISTICAL, statement, prediction.to_dict(), prediction)
