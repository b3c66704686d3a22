"""Datasets: the middle format (CustomDataset), COCO, Pascal VOC, shapes, and wrappers."""

from detcore.data.datasets.coco import CocoDataset
from detcore.data.datasets.custom import CustomDataset
from detcore.data.datasets.shapes import ShapesDataset
from detcore.data.datasets.voc import VOCDataset, XMLDataset
from detcore.data.datasets.wrappers import ClassBalancedDataset, ConcatDataset, RepeatDataset

#: name -> class, registered by the built-in data plugin
DATASETS = {
    cls.__name__: cls
    for cls in (
        CustomDataset,
        CocoDataset,
        VOCDataset,
        XMLDataset,
        ShapesDataset,
        ConcatDataset,
        RepeatDataset,
        ClassBalancedDataset,
    )
}

__all__ = ["DATASETS", *DATASETS]
