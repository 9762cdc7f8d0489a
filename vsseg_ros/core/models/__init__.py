"""Networks: the MobileNetV2 backbone, light heads and the per-frame segmentation network."""

from vsseg_ros.core.models.heads import BoundaryHead, LiteHead
from vsseg_ros.core.models.mobilenetv2 import MobileNetV2Backbone
from vsseg_ros.core.models.perframe import PerFrameSegNet, count_parameters, fold_batchnorm

__all__ = ["MobileNetV2Backbone", "LiteHead", "BoundaryHead", "PerFrameSegNet", "count_parameters",
           "fold_batchnorm"]
