"""The status of a deployment, as the bentoml client reads it (docs/bentocloud-api.md §5.1).

The client waits on these exact strings (`running` or `scaled-to-zero` let `get_client()` through,
`terminated` ends `terminate --wait`), and they are stored as-is; a StrEnum keeps every module to the
same spelling while each value stays the string on the wire and in the database.
"""

from enum import StrEnum


class DeploymentStatus(StrEnum):
    UNKNOWN = "unknown"
    NON_DEPLOYED = "non-deployed"
    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    FAILED = "failed"
    DEPLOYING = "deploying"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    IMAGE_BUILDING = "image-building"
    IMAGE_BUILD_FAILED = "image-build-failed"
    IMAGE_BUILD_SUCCEEDED = "image-build-succeeded"
    SCALED_TO_ZERO = "scaled-to-zero"
