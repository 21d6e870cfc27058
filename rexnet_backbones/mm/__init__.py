"""OpenMMLab integration: ``type='ReXNet'`` for mmdet and mmseg configs (needs mmengine)."""
from .backbone import ReXNet

__all__ = ['ReXNet']
