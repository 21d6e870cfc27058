# mmdet's runtime, with crash-safe checkpoints (AtomicCheckpointHook: atomic files and last_checkpoint).
_base_ = 'mmdet::_base_/default_runtime.py'
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
