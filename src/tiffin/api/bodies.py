"""Request bodies as the bentoml client sends them (every key present, unset ones as null)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LabelItem(Body):
    key: str
    value: str


class CreateRepository(Body):
    name: str
    description: str | None = ""


class CreateArtifact(Body):
    version: str
    description: str | None = ""
    manifest: dict[str, Any] | None = None
    build_at: str | None = None
    labels: list[LabelItem] | None = None


class UpdateArtifact(Body):
    description: str | None = None
    manifest: dict[str, Any] | None = None
    labels: list[LabelItem] | None = None


class FinishUpload(Body):
    status: str
    reason: str | None = ""


class PresignPart(Body):
    upload_id: str
    part_number: int = Field(ge=1, le=10000)


class CompletedPart(Body):
    part_number: int = Field(ge=1, le=10000)
    etag: str


class CompleteMultipart(Body):
    upload_id: str
    parts: list[CompletedPart] = Field(min_length=1)


class CreateToken(Body):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = ""
    scopes: list[str] | None = None
    expired_at: str | None = None


class SecretItemBody(Body):
    key: str
    value: str = ""
    sub_path: str | None = None


class SecretContentBody(Body):
    type: str = "env"
    items: list[SecretItemBody]
    path: str | None = None
    stage: str | None = "runtime"


class UpdateSecret(Body):
    content: SecretContentBody
    description: str | None = None


class CreateSecret(UpdateSecret):
    name: str


class EnvItem(Body):
    name: str
    value: str | None = ""


class DeploymentBody(Body):
    """UpdateDeployment (docs/bentocloud-api.md §3.5); CreateDeployment adds `name` and `dev`."""

    bento: str
    access_authorization: bool | None = False
    envs: list[EnvItem] | None = None
    labels: list[LabelItem] | None = None
    secrets: list[str] | None = None
    services: dict[str, dict[str, Any] | None] | None = None
    canary: dict[str, Any] | None = None

    def config(self) -> dict[str, Any]:
        """The config to store and echo back: what the client sent, minus bento, name and dev."""
        return self.model_dump(
            include={"access_authorization", "envs", "labels", "secrets", "services", "canary"}
        )


class CreateDeployment(DeploymentBody):
    name: str | None = None
    dev: bool | None = False


class Rollback(Body):
    revision: str = Field(min_length=1)
