# retinanet_tiny_synthetic.py plus a hook that compares, before training, the backbone as the Runner left it
# (sync_bn conversion, model wrapper) with a freshly built one. Needs tests/configs on PYTHONPATH.
_base_ = './retinanet_tiny_synthetic.py'

custom_imports = dict(imports=['rexnet_backbones', 'conversion_check_hook'], allow_failed_imports=False)
custom_hooks = [dict(type='ConversionCheckHook')]
