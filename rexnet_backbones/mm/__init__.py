"""OpenMMLab integration: ``type='ReXNet'`` for mmdet and mmseg configs (needs mmengine)."""
from .backbone import ReXNet
from .checks import EXPORTABLE, backbone_out_channels, check_exportable, check_in_channels

__all__ = ['ReXNet', 'backbone_out_channels', 'check_in_channels', 'check_exportable', 'EXPORTABLE']
