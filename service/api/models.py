"""What the repository holds: every folder, ready or with the reason it is not."""

from fastapi import APIRouter

from service.api.dependencies import RepositoryDep
from service.api.schemas import ErrorBody, ModelInfo, ModelList
from service.repository import Model

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
async def list_models(repository: RepositoryDep) -> ModelList:
    return ModelList(models=[model_info(m) for m in repository.models.values()])


@router.get("/{name}", responses={404: {"model": ErrorBody}})
async def get_model(name: str, repository: RepositoryDep) -> ModelInfo:
    return model_info(repository.get(name))


def model_info(model: Model) -> ModelInfo:
    info = ModelInfo(name=model.name, ready=model.ready, reason=model.reason, device=model.device)
    spec = model.spec
    if spec is None:
        return info
    return info.model_copy(
        update={
            "version": spec.version,
            "architecture": spec.architecture,
            "description": spec.description,
            "input_length": spec.input_length,
            "min_length": spec.min_length,
            "horizon": spec.horizon,
            "output": spec.output,
            "features": spec.features,
            "uncertainty": bool(spec.masks),
            "metrics": spec.metrics,
            "calibration": None if spec.calibration is None else spec.calibration.map_fields(),
        }
    )
