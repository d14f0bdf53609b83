"""The `semcache create-index` bootstrap: idempotent, clear about failures."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path


def create_index(redis_url: str, model_dir: Path, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SEMCACHE_REDIS_URL": redis_url,
        "SEMCACHE_MODEL_DIR": str(model_dir),
        "SEMCACHE_KEY_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "semcache.cli", "create-index"], env=env, capture_output=True, text=True, check=False
    )


def test_create_index_is_idempotent(redis_url: str, model_dir: Path) -> None:
    prefix = f"cli{uuid.uuid4().hex[:8]}:"
    first = create_index(redis_url, model_dir, prefix)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("created")
    again = create_index(redis_url, model_dir, prefix)
    assert again.returncode == 0
    assert again.stdout.strip().endswith("already there")


def test_create_index_reports_an_unreachable_server(model_dir: Path) -> None:
    result = create_index("redis://127.0.0.1:1/0", model_dir, "x:")
    assert result.returncode == 1
    assert "redis FT.CREATE failed" in result.stderr
