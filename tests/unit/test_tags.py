"""BentoML tag parts: what bentoml accepts, and nothing more."""

import pytest

from tiffin.core.errors import BadRequest
from tiffin.core.tags import check_tag_part


@pytest.mark.parametrize("value", ["echo", "v1", "a.b-c_d", "0", "x" * 63])
def test_valid_parts(value: str) -> None:
    assert check_tag_part(value, "bento name") == value


@pytest.mark.parametrize("value", ["", "Echo", "-echo", "echo-", "a b", "v1\n", "x" * 64, "a/b"])
def test_invalid_parts(value: str) -> None:
    with pytest.raises(BadRequest, match="bento name"):
        check_tag_part(value, "bento name")
