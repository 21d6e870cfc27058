# retinanet_tiny_synthetic.py plus a hook that saves each rank's final weights, to check that
# distributed training keeps the ranks in sync. Needs tests/configs on PYTHONPATH.
_base_ = './retinanet_tiny_synthetic.py'

custom_imports = dict(imports=['rexnet_backbones', 'rank_state_hook'], allow_failed_imports=False)
custom_hooks = [dict(type='RankStateDumpHook')]
