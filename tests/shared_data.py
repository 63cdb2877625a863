"""Where every test finds the project's public reference data: ``$FLEETWISE_SHARED_DATA`` if set, else
``../shared/data`` beside the checkout. Tests that read it skip when a file is absent (a clone elsewhere, a
user's laptop): it is data the suite checks fleetwise against, not a service CI must provide.

    from tests.shared_data import shared
    TRACE = shared("traces", "azure_llm_conv_2023.csv")
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("FLEETWISE_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def shared(*parts: str) -> Path:
    """A path under the shared data directory (it may not exist: check before reading)."""
    return SHARED_DATA.joinpath(*parts)
