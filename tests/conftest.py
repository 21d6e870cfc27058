import os
from pathlib import Path

import pytest

# Nothing may download at run time: make any hub access fail fast instead of retrying.
os.environ.setdefault('HF_HUB_OFFLINE', '1')

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get('REXNET_REFERENCE', ROOT.parent / 'shared' / 'reference'))


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """../shared/reference: official-code layouts, seeded official checkpoints, inputs and logits."""
    if not (REFERENCE / 'official_state_dict_layouts.json').is_file():
        pytest.skip(f'official reference data not found at {REFERENCE} (set REXNET_REFERENCE to its folder)')
    return REFERENCE


_TRUST_VARS = ('REXNET_TRUST_CHECKPOINTS', 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', 'TORCH_FORCE_WEIGHTS_ONLY_LOAD')


@pytest.fixture(autouse=True)
def _no_trust_leaks():
    """A test that opts into trusted (pickle-executing) loading must not leak it into later tests."""
    saved = {k: os.environ.get(k) for k in _TRUST_VARS}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
