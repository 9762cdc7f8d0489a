"""Networks: backbones (MobileNetV2, dilated ResNets), heads (lite, mmseg's PSP/FCN) and the per-frame network.

Re-exported here as the public API docs/backbones.md imports (``from vsseg_ros.core.models import PerFrameSegNet``).
"""

from vsseg_ros.core.models.heads import BoundaryHead, LiteHead
from vsseg_ros.core.models.heads_mmseg import FCNHead, PSPHead
from vsseg_ros.core.models.mobilenetv2 import MobileNetV2Backbone
from vsseg_ros.core.models.perframe import PerFrameSegNet, count_parameters, fold_batchnorm
from vsseg_ros.core.models.resnet import ResNet

__all__ = [
    "MobileNetV2Backbone",
    "ResNet",
    "LiteHead",
    "PSPHead",
    "FCNHead",
    "BoundaryHead",
    "PerFrameSegNet",
    "count_parameters",
    "fold_batchnorm",
]
