"""Evaluation metrics: COCO (bbox, segm, proposal recall through pycocotools) and VOC mAP."""

from detcore.evaluation.coco_metric import CocoMetric
from detcore.evaluation.mean_ap import average_precision, eval_map
from detcore.evaluation.voc_metric import VOCMetric

#: name -> class, registered by the built-in metrics plugin
METRICS = {"CocoMetric": CocoMetric, "VOCMetric": VOCMetric}

__all__ = ["CocoMetric", "VOCMetric", "eval_map", "average_precision", "METRICS"]
