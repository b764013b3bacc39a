"""Provider selection, with ORT's provider list and session faked (there is no GPU here)."""

from pathlib import Path
from typing import Any, ClassVar

import onnxruntime as ort
import pytest

from service import runtime
from service.errors import DeviceUnavailableError
from service.settings import Device

CUDA, CPU = runtime.CUDA, runtime.CPU


class FakeSession:
    """Records what it was asked for and activates `active` (what onnxruntime-gpu may do)."""

    active: ClassVar[list[str]] = []
    created: ClassVar[list["FakeSession"]] = []

    def __init__(self, path: str, sess_options: Any = None, providers: Any = None) -> None:
        self.requested = providers
        self.options = sess_options
        FakeSession.created.append(self)

    def get_providers(self) -> list[str]:
        return [p for p in self.active if p in self.requested]

    def get_inputs(self) -> list[Any]:
        return []


def fake_ort(
    monkeypatch: pytest.MonkeyPatch, available: list[str], active: list[str]
) -> type[FakeSession]:
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)
    monkeypatch.setattr(FakeSession, "active", active)
    monkeypatch.setattr(FakeSession, "created", [])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    return FakeSession


@pytest.mark.parametrize(
    ("device", "available", "active", "requested", "used"),
    [
        ("auto", [CUDA, CPU], [CUDA, CPU], [CUDA, CPU], "cuda"),
        ("auto", [CUDA, CPU], [CPU], [CUDA, CPU], "cpu"),  # onnxruntime-gpu's silent fallback
        ("auto", [CPU], [CPU], [CPU], "cpu"),
        ("cuda", [CUDA, CPU], [CUDA, CPU], [CUDA, CPU], "cuda"),
        ("cpu", [CUDA, CPU], [CUDA, CPU], [CPU], "cpu"),
    ],
)
def test_provider_selection(
    monkeypatch: pytest.MonkeyPatch,
    device: Device,
    available: list[str],
    active: list[str],
    requested: list[str],
    used: str,
) -> None:
    fake = fake_ort(monkeypatch, available, active)

    session = runtime.create_session(Path("model.onnx"), device, intra_op_threads=3)

    (created,) = fake.created
    assert created.requested == requested
    assert created.options.intra_op_num_threads == 3
    assert runtime.OnnxModel(session, output="y").device == used


@pytest.mark.parametrize(
    ("available", "active", "fragment"),
    [
        ([CUDA, CPU], [CPU], "did not activate"),
        ([CPU], [CPU], "offers only"),
    ],
)
def test_cuda_requested_but_not_active_is_an_error(
    monkeypatch: pytest.MonkeyPatch, available: list[str], active: list[str], fragment: str
) -> None:
    fake_ort(monkeypatch, available, active)

    with pytest.raises(DeviceUnavailableError, match=fragment):
        runtime.create_session(Path("model.onnx"), "cuda", intra_op_threads=1)
