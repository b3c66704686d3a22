"""Data-pipeline transforms: callables ``sample -> sample | None`` with the reference's keys."""

from detcore.data.transforms.compose import Compose
from detcore.data.transforms.corrupt import Corrupt
from detcore.data.transforms.formatting import (
    ImageToTensor,
    PackDetInputs,
    ToTensor,
    Transpose,
)
from detcore.data.transforms.geometric import (
    Expand,
    MinIoURandomCrop,
    Pad,
    RandomCrop,
    RandomFlip,
    Resize,
    SegRescale,
)
from detcore.data.transforms.loading import LoadAnnotations, LoadImageFromFile, LoadProposals
from detcore.data.transforms.photometric import Normalize, PhotoMetricDistortion
from detcore.data.transforms.test_time_aug import MultiScaleFlipAug

#: name -> class, registered by the built-in data plugin
TRANSFORMS = {
    cls.__name__: cls
    for cls in (
        LoadImageFromFile,
        LoadAnnotations,
        LoadProposals,
        Resize,
        RandomFlip,
        Pad,
        Normalize,
        RandomCrop,
        SegRescale,
        PhotoMetricDistortion,
        Corrupt,
        Expand,
        MinIoURandomCrop,
        MultiScaleFlipAug,
        PackDetInputs,
        ImageToTensor,
        ToTensor,
        Transpose,
    )
}

__all__ = ["Compose", "TRANSFORMS", *TRANSFORMS]
