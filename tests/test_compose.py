"""docker-compose.yml: every service that serves the API runs hardened, the GPU one included."""

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
API_SERVICES = ("api", "api-gpu")


def services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services  # with the `<<: *hardening` merges resolved


def test_api_services_run_unprivileged_on_a_read_only_root() -> None:
    for name in API_SERVICES:
        service = services()[name]
        assert service["user"] == "1000:1000", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert any(t.startswith("/tmp:") for t in service["tmpfs"]), name


def test_api_services_mount_the_models_read_only() -> None:
    for name in API_SERVICES:
        assert any(v.endswith(":/app/models:ro") for v in services()[name]["volumes"]), name
