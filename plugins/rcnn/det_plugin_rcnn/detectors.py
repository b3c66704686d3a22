"""The R-CNN family's detectors: ``RPN`` (proposals only), ``FastRCNN`` (given proposals) and
``FasterRCNN`` (RPN + RoI head). Everything is in their parts; these classes only fix the composition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detcore.models.detectors import SingleStageDetector, TwoStageDetector
from detcore.settings import Delegate, Settings


def _sub(cfg: Mapping[str, Any] | None, key: str) -> dict[str, Any] | None:
    if cfg is None or cfg.get(key) is None:
        return None
    return dict(cfg[key])


class RPN(SingleStageDetector):
    """Region proposal network as a detector: backbone -> (neck) -> ``rpn_head``.

    The head is stored as ``bbox_head`` (the reference checkpoints' ``bbox_head.rpn_conv...`` keys) and
    receives ``train_cfg.rpn`` and ``test_cfg.rpn``. Eval mode returns the proposals, one ``Instances``
    per image with ``bboxes`` (original-image pixels with ``rescale``), ``scores`` and ``labels`` (0);
    evaluate them with ``CocoMetric(metric = ["proposal"])`` (AR@100/300/1000).
    """

    component_kinds = {"rpn_head": "dense_head"}
    #: ``rpn_proposal`` is unused here; accepted (and checked) for train_cfgs shared with Faster R-CNN
    train_settings = Settings(rpn=Delegate("rpn_head"), rpn_proposal=Delegate("rpn_head", phase="test_cfg"))
    test_settings = Settings(rpn=Delegate("rpn_head"))

    def __init__(
        self,
        backbone: Mapping[str, Any],
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        rpn_head: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if rpn_head is None:
            raise ValueError("RPN: 'rpn_head' (a dense_head table, e.g. RPNHead) is required")
        super().__init__(backbone, neck, rpn_head, _sub(train_cfg, "rpn"), _sub(test_cfg, "rpn"), init_cfg)


class FastRCNN(TwoStageDetector):
    """Fast R-CNN (Girshick, 2015): precomputed proposals (the batch's ``proposals``, from the
    ``LoadProposals`` transform) -> RoI head. Args as :class:`TwoStageDetector` without ``rpn_head``."""

    def __init__(
        self,
        backbone: Mapping[str, Any],
        roi_head: Mapping[str, Any],
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            neck=neck,
            rpn_head=None,
            roi_head=roi_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
        )


class FasterRCNN(TwoStageDetector):
    """Faster R-CNN (Ren et al., 2015): backbone -> (neck) -> RPN proposals -> RoI head."""

    def __init__(
        self,
        backbone: Mapping[str, Any],
        rpn_head: Mapping[str, Any],
        roi_head: Mapping[str, Any],
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            neck=neck,
            rpn_head=rpn_head,
            roi_head=roi_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
        )
