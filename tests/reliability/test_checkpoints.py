"""R2 covers every step boundary: each checkpoint in the flows is a crash point of its R2 test."""

from __future__ import annotations

import re
from pathlib import Path

from tests.reliability.harness import STEP_BOUNDARIES

FLOWS_DIR = Path(__file__).resolve().parents[2] / "layers" / "erphub" / "erphub" / "flows"


def test_r2_crashes_at_every_checkpoint_of_every_flow() -> None:
    in_code = {
        (path.stem.split("_")[0], name)
        for path in FLOWS_DIR.glob("*.py")
        for name in re.findall(r'checkpoint\("([^"]+)"\)', path.read_text(encoding="utf-8"))
    }
    assert in_code == {(flow, p) for flow, points in STEP_BOUNDARIES.items() for p in points}
