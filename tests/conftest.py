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
