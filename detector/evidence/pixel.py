"""The pixel model as one kind of evidence: its calibrated score and Grad-CAM map."""

from __future__ import annotations

from ..config import DecisionRule
from ..images import CannotJudgeError, DecodedImage
from .base import NOTE, STATISTICAL, UNCERTAIN, Evidence, EvidenceKind


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
        # Sort out the images the model cannot judge first (cheap), so one of them never costs the
        # rest of the batch a second forward pass.
        refused: dict[int, str] = {}
        for index, item in enumerate(items):
            try:
                self.detector.check_judgeable(item.image)
            except CannotJudgeError as exc:
                refused[index] = str(exc)
        judged = [item for index, item in enumerate(items) if index not in refused]
        if refused and judged:
            results = iter(self.collect_batch(judged))
            return [[self.cannot_judge(refused[i])] if i in refused else next(results) for i in range(len(items))]
        if refused:
            return [[self.cannot_judge(reason)] for reason in refused.values()]
        try:
            predictions = self.detector.predict_decoded([item.image for item in items], cam=self.cam)
        except CannotJudgeError as exc:  # a detector with stricter rules than check_judgeable
            if len(items) == 1:
                return [[self.cannot_judge(str(exc))]]
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
        rule = DecisionRule(threshold=prediction.threshold, uncertain_band=prediction.uncertain_band)
        statement = (f"The pixel model gives {rule.percent(prediction.p_fake)} for AI-generated. "
                     f"Its rule: {rule.describe()}.")
        return Evidence(self.name, "model", prediction.label, STATISTICAL, statement, prediction.to_dict(), prediction)
