"""ROS-free evaluation metrics: image-fusion quality, detection mAP (COCO) and segmentation IoU."""
from .detection import DetectionReport, evaluate_detections, plot_pr_curves
from .fusion import (
    CONVENTIONS,
    METRIC_KEYS,
    Convention,
    average_gradient,
    entropy,
    fusion_metrics,
    fusion_metrics_of_many,
    grey_image,
    mutual_information,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    vifp,
)
from .segmentation import ConfusionMatrix

__all__ = [
    "CONVENTIONS",
    "METRIC_KEYS",
    "ConfusionMatrix",
    "Convention",
    "DetectionReport",
    "average_gradient",
    "entropy",
    "evaluate_detections",
    "fusion_metrics",
    "fusion_metrics_of_many",
    "grey_image",
    "mutual_information",
    "plot_pr_curves",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "vifp",
]
