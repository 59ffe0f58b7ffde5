"""System checks: each fires with its stable id under the settings it guards against, and a
production configuration passes ``check --deploy --fail-level WARNING`` with no issue at all."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Error
from django.core.checks import Warning as CheckWarning
from django.core.checks.registry import registry

from ops import checks

ROOT = Path(__file__).resolve().parents[2]
S3_ARCHIVES = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": "b"}}
FS_ARCHIVES = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {}}
REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {}}}
MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def production(settings):
    """Settings every check is happy with; each test breaks one thing."""
    settings.DEBUG = False
    settings.HTTPS = True
    settings.ALLOWED_HOSTS = ["support.example.com"]
    settings.DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    settings.CHANNEL_LAYERS = REDIS_LAYER
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    settings.LLM_MODEL = "m"
    settings.OPENAI_API_KEY = ""
    settings.STORAGES = {**settings.STORAGES, "archives": S3_ARCHIVES}
    return settings


ALL_CHECKS = (
    checks.check_debug_with_production_backends,
    checks.check_debug_in_deploy,
    checks.check_channel_layer,
    checks.check_model_configured,
    checks.check_archive_storage,
    checks.check_llm_model,
    checks.check_https,
    checks.check_allowed_hosts,
)


def _ids() -> list[str]:
    return sorted(str(message.id) for check in ALL_CHECKS for message in check(None))


def test_production_settings_raise_nothing(production):
    assert _ids() == []


def test_w001_debug_with_a_production_database(production):
    production.DEBUG = True
    [message] = checks.check_debug_with_production_backends(None)
    assert isinstance(message, CheckWarning)
    assert message.id == "ops.W001"
    assert "DATABASE_URL and REDIS_URL" in message.msg
    assert checks.check_debug_in_deploy(None) == []  # said once, not twice
    assert _ids() == ["ops.W001"]


def test_w001_debug_in_deploy_mode_without_production_backends(production):
    production.DEBUG = True
    production.DATABASE_URL = ""
    production.REDIS_URL = ""
    assert checks.check_debug_with_production_backends(None) == []
    assert [m.id for m in checks.check_debug_in_deploy(None)] == ["ops.W001"]


def test_w002_in_memory_channel_layer(production):
    production.CHANNEL_LAYERS = MEMORY_LAYER
    assert _ids() == ["ops.W002"]


def test_w003_offline_assistant_only(production):
    production.LLM_BASE_URL = ""
    production.LLM_MODEL = ""
    assert _ids() == ["ops.W003"]
    production.OPENAI_API_KEY = "sk-test"  # a fallback model alone is a model
    assert _ids() == []


def test_w004_filesystem_archives_with_a_shared_database(production):
    production.STORAGES = {**production.STORAGES, "archives": FS_ARCHIVES}
    assert _ids() == ["ops.W004"]
    production.DATABASE_URL = ""  # one machine, one SQLite file: local archives are fine
    assert _ids() == []


def test_e001_llm_base_url_without_a_model(production):
    production.LLM_MODEL = ""
    [message] = checks.check_llm_model(None)
    assert isinstance(message, Error)
    assert message.id == "ops.E001"
    assert _ids() == ["ops.E001"]


def test_w005_https_unset(production):
    production.HTTPS = False
    assert _ids() == ["ops.W005"]


def test_w006_any_host_allowed(production):
    production.ALLOWED_HOSTS = ["support.example.com", "*"]
    assert _ids() == ["ops.W006"]


def test_checks_are_registered_with_the_right_deploy_flag():
    everyday = set(registry.get_checks(include_deployment_checks=False))
    deploy = set(registry.get_checks(include_deployment_checks=True)) - everyday
    assert {
        checks.check_debug_with_production_backends,
        checks.check_llm_model,
        checks.check_allowed_hosts,
    } <= everyday
    assert {
        checks.check_debug_in_deploy,
        checks.check_channel_layer,
        checks.check_model_configured,
        checks.check_archive_storage,
        checks.check_https,
    } <= deploy


def _manage_check(env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        # Start from a clean slate: none of the variables a check looks at leaks in.
        if not key.startswith(("LLM_", "OPENAI_", "AWS_", "DATABASE_", "REDIS_", "CELERY_"))
        and key not in {"DEBUG", "SECRET_KEY", "HTTPS", "ALLOWED_HOSTS"}
    }
    env.update({"VAR_DIR": str(tmp_path / "var"), **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_environment_passes_check_deploy_with_no_issues(tmp_path):
    result = _manage_check(
        {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "HTTPS": "true",
            "ALLOWED_HOSTS": "support.example.com",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "LLM_BASE_URL": "http://127.0.0.1:9/v1",
            "LLM_MODEL": "m",
            "AWS_STORAGE_BUCKET_NAME": "b",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_embedded_default_in_deploy_mode_is_flagged(tmp_path):
    result = _manage_check(
        {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(60)},
        tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    for check_id in ("ops.W002", "ops.W003", "ops.W005"):
        assert check_id in output
    # The rest are not: no DATABASE_URL (so local archives are right), DEBUG off, named hosts.
    for check_id in ("ops.W001", "ops.W004", "ops.W006", "ops.E001"):
        assert check_id not in output


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("RATE_LIMIT_SESSION_BURST", "abc", "RATE_LIMIT_SESSION_BURST must be an integer"),
        ("RATE_LIMITS_ENABLED", "maybe", "RATE_LIMITS_ENABLED must be true or false"),
        ("RATE_LIMIT_STORAGE_URL", "foo://x", "RATE_LIMIT_STORAGE_URL must be a Redis URL"),
        ("REDIS_URL", "127.0.0.1:6379", "REDIS_URL must be a Redis URL"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_clear_line(tmp_path, name, value, says):
    result = _manage_check({name: value}, tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"supportbot: {says}"), result.stderr
    assert "Traceback" not in result.stderr
