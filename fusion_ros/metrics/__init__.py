"""ROS-free evaluation metrics: image-fusion quality, detection mAP (COCO) and segmentation IoU."""
from .detection import DetectionReport, evaluate_detections, plot_pr_curves
from .fusion import (
    average_gradient,
    entropy,
    fusion_metrics,
    mutual_information,
    qabf,
    spatial_frequency,
    ssim,
    standard_deviation,
    vifp,
)
from .segmentation import ConfusionMatrix

__all__ = [
    "ConfusionMatrix",
    "DetectionReport",
    "average_gradient",
    "entropy",
    "evaluate_detections",
    "fusion_metrics",
    "mutual_information",
    "plot_pr_curves",
    "qabf",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "vifp",
]
