"""One settings object for every GRAPE_* variable."""

from __future__ import annotations

import pytest

from grape_core.config import Paths
from grape_core.errors import GrapeError
from grape_core.settings import GB, settings


def test_folders_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GRAPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.data_dir == tmp_path / "data"
    assert settings.cache_dir == tmp_path / "xdg" / "grape" / "cache"
    paths = Paths.from_env()
    assert paths.data_dir == str(tmp_path / "data") and paths.cache_dir.endswith("cache")


def test_sizes_are_checked_in_one_line(monkeypatch):
    monkeypatch.setenv("GRAPE_SCREEN_MEMORY_GB", "0.5")
    assert settings.screen_memory == 0.5 * GB
    monkeypatch.delenv("GRAPE_SCREEN_MEMORY_GB")
    assert settings.screen_memory == GB
    monkeypatch.setenv("GRAPE_DOWNLOAD_MAX_GB", "-1")
    with pytest.raises(GrapeError, match=r"GRAPE_DOWNLOAD_MAX_GB='-1' is not a size in GB"):
        settings.download_max  # noqa: B018


def test_app_settings_tolerate_a_bad_value(monkeypatch):
    monkeypatch.setenv("GRAPE_APP_THREADS", "many")
    monkeypatch.setenv("GRAPE_MAX_UPLOAD_MB", "x")
    assert settings.app_threads == 1 and settings.max_upload_mb is None
    monkeypatch.setenv("GRAPE_APP_THREADS", "3")
    monkeypatch.setenv("GRAPE_MAX_UPLOAD_MB", "20")
    assert settings.app_threads == 3 and settings.max_upload_mb == 20.0


def test_the_bundled_models_are_package_data():
    assert (settings.bundled_models / "norman" / "manifest.json").is_file()
    assert (settings.annotation_dir / "orghs_genes.parquet").is_file()
