"""``type='CompatSSDHead'``: mmdet 3.3.0's ``SSDHead`` that can predict (needs mmdet).

mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls`` (for v3det's custom
classification channels), but ``SSDHead`` skips ``AnchorHead.__init__`` and never sets it, so every
SSD / SSDLite model fails at validation and test with ``AttributeError: 'SSDHead' object has no
attribute 'loss_cls'`` (open-mmlab/mmdetection issues 11305 and 11780). This subclass only adds the
missing attribute; training and the softmax scoring are mmdet's own.
"""
from __future__ import annotations

from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS

__all__ = ['CompatSSDHead']


@MODELS.register_module()
class CompatSSDHead(SSDHead):
    """``SSDHead`` with ``loss_cls = None`` (SSD computes its classification loss inline), so that
    ``predict_by_feat`` takes the plain softmax path as in mmdet < 3.3."""

    loss_cls = None
