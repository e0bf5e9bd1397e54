"""The instance-type catalog (built-ins, operator YAML) and the host-capacity readers."""

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiffin.backends import capacity
from tiffin.backends.capacity import GpuInfo, HostCapacity
from tiffin.core.errors import BadRequest
from tiffin.core.instance_types import (
    BUILTIN_INSTANCE_TYPES,
    GiB,
    InstanceType,
    KiB,
    MiB,
    TiB,
    find,
    format_cpu,
    format_memory,
    load_catalog,
    parse_cpu,
    parse_memory,
)

# --- built-in catalog -------------------------------------------------------------------------

BUILTINS: dict[str, tuple[dict[str, str], str | None, str | None]] = {
    "cpu.1": ({"cpu": "500m", "memory": "2Gi"}, None, None),
    "cpu.2": ({"cpu": "1", "memory": "2Gi"}, None, None),
    "cpu.4": ({"cpu": "2", "memory": "8Gi"}, None, None),
    "cpu.8": ({"cpu": "4", "memory": "16Gi"}, None, None),
    "gpu.t4.1": ({"cpu": "4", "memory": "16Gi", "gpu": "1"}, "nvidia-tesla-t4", "16Gi"),
    "gpu.l4.1": ({"cpu": "4", "memory": "16Gi", "gpu": "1"}, "nvidia-l4", "24Gi"),
    "gpu.a100.1": ({"cpu": "12", "memory": "85Gi", "gpu": "1"}, "nvidia-tesla-a100", "80Gi"),
}


def test_missing_file_gives_the_builtin_catalog(tmp_path: Path) -> None:
    catalog = load_catalog(tmp_path / "instance-types.yaml")
    assert [t.name for t in catalog] == list(BUILTINS)
    assert catalog == list(BUILTIN_INSTANCE_TYPES)


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_values(name: str) -> None:
    requests, gpu_type, gpu_memory = BUILTINS[name]
    instance_type = find(BUILTIN_INSTANCE_TYPES, name)
    assert instance_type is not None
    assert instance_type.requests() == requests
    assert instance_type.gpu_type == gpu_type
    assert instance_type.gpu_memory == gpu_memory
    assert instance_type.group == ("gpu" if gpu_type else "cpu")
    assert instance_type.gpu_count == (1 if gpu_type else 0)
    assert instance_type.description
    assert float(instance_type.price) > 0


def test_builtin_raw_numbers() -> None:
    cpu_1 = find(BUILTIN_INSTANCE_TYPES, "cpu.1")
    a100 = find(BUILTIN_INSTANCE_TYPES, "gpu.a100.1")
    assert cpu_1 is not None and a100 is not None
    assert (cpu_1.cpu_millicores, cpu_1.memory_bytes) == (500, 2 * GiB)
    assert (a100.cpu_millicores, a100.memory_bytes) == (12000, 85 * GiB)


def test_find_unknown_name_is_none() -> None:
    assert find(BUILTIN_INSTANCE_TYPES, "cpu.3") is None
    assert find([], "cpu.1") is None


# --- operator catalog file --------------------------------------------------------------------

CUSTOM = """
instance_types:
  - name: cpu.small
    description: "Small CPU"
    price: "0.1"
    cpu: 2
    memory: 4Gi
  - name: gpu.big
    description: "Big GPU"
    price: 2.5
    cpu: 1500m
    memory: 1536Mi
    gpu: 2
    gpu_type: nvidia-h100
    gpu_memory: 80Gi
  - name: cpu.tiny
    description: ""
    price: "0"
    cpu: "0.25"
    memory: 268435456
    gpu: null
    gpu_type: null
    gpu_memory: null
"""


def test_custom_catalog_replaces_the_builtins(tmp_path: Path) -> None:
    path = tmp_path / "instance-types.yaml"
    path.write_text(CUSTOM)
    catalog = load_catalog(path)
    assert [t.name for t in catalog] == ["cpu.small", "gpu.big", "cpu.tiny"]
    assert find(catalog, "cpu.1") is None
    assert catalog[0] == InstanceType(
        name="cpu.small",
        description="Small CPU",
        group="cpu",
        price="0.1",
        cpu_millicores=2000,
        memory_bytes=4 * GiB,
        gpu_count=0,
        gpu_type=None,
        gpu_memory=None,
    )
    gpu = catalog[1]
    assert (gpu.group, gpu.price, gpu.gpu_count, gpu.gpu_type) == ("gpu", "2.5", 2, "nvidia-h100")
    assert gpu.requests() == {"cpu": "1500m", "memory": "1536Mi", "gpu": "2"}
    assert gpu.gpu_memory == "80Gi"
    assert catalog[2].requests() == {"cpu": "250m", "memory": "256Mi"}
    assert catalog[2].gpu_count == 0


VALID: dict[str, Any] = {
    "name": "ok",
    "description": "fine",
    "price": "0.1",
    "cpu": 1,
    "memory": "1Gi",
}


def _catalog_file(tmp_path: Path, bad: dict[str, Any] | None, drop: str | None = None) -> Path:
    """A catalog whose third entry (index 2) is VALID with `bad` applied and `drop` removed."""
    entry = {**VALID, "name": "third", **(bad or {})}
    if drop:
        del entry[drop]
    entries = [{**VALID, "name": "first"}, {**VALID, "name": "second"}, entry]
    path = tmp_path / "instance-types.yaml"
    path.write_text(yaml.safe_dump({"instance_types": entries}))
    return path


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"memory": "lots"}, "instance_types[2].memory must be a size like 4Gi, not 'lots'."),
        ({"memory": "-1Gi"}, "instance_types[2].memory"),
        ({"memory": 0}, "instance_types[2].memory"),
        ({"memory": "4GB"}, "instance_types[2].memory"),
        ({"memory": None}, "instance_types[2].memory"),
        ({"cpu": -1}, "instance_types[2].cpu"),
        ({"cpu": "two"}, "instance_types[2].cpu"),
        ({"cpu": 0}, "instance_types[2].cpu"),
        ({"cpu": "0.5m"}, "instance_types[2].cpu"),
        ({"cpu": True}, "instance_types[2].cpu"),
        ({"price": "-0.1"}, "instance_types[2].price"),
        ({"price": -1}, "instance_types[2].price"),
        ({"price": "free"}, "instance_types[2].price"),
        ({"price": None}, "instance_types[2].price"),
        ({"name": ""}, "instance_types[2].name"),
        ({"name": 5}, "instance_types[2].name"),
        ({"name": "has space"}, "instance_types[2].name"),
        ({"description": 3}, "instance_types[2].description"),
        ({"gpu": -1, "gpu_type": "nvidia-l4"}, "instance_types[2].gpu "),
        ({"gpu": 1.5, "gpu_type": "nvidia-l4"}, "instance_types[2].gpu "),
        ({"gpu": "1", "gpu_type": "nvidia-l4"}, "instance_types[2].gpu "),
        ({"gpu": True, "gpu_type": "nvidia-l4"}, "instance_types[2].gpu "),
        ({"gpu": 1}, "instance_types[2].gpu_type is missing"),
        ({"gpu": 1, "gpu_type": ""}, "instance_types[2].gpu_type"),
        ({"gpu": 1, "gpu_type": 7}, "instance_types[2].gpu_type"),
        ({"gpu_type": "nvidia-l4"}, "instance_types[2].gpu_type is set but gpu is 0"),
        ({"gpu": 1, "gpu_type": "nvidia-l4", "gpu_memory": "huge"}, "[2].gpu_memory"),
        ({"gpus": 1}, "instance_types[2] has an unknown field 'gpus'"),
        ({"name": "first"}, "instance_types[2].name 'first' is already used by instance_types[0]"),
    ],
)
def test_malformed_entry_names_the_field(tmp_path: Path, bad: dict[str, Any], expected: str) -> None:
    path = _catalog_file(tmp_path, bad)
    with pytest.raises(BadRequest) as caught:
        load_catalog(path)
    message = caught.value.message
    assert expected in message
    assert message.startswith(f"{path}: ")
    assert message.endswith(".")
    assert "\n" not in message


@pytest.mark.parametrize("field", ["name", "description", "price", "cpu", "memory"])
def test_missing_required_field(tmp_path: Path, field: str) -> None:
    path = _catalog_file(tmp_path, None, drop=field)
    with pytest.raises(BadRequest, match=rf"instance_types\[2\]\.{field} is missing"):
        load_catalog(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("instance_types: [\n", "is not valid YAML"),
        ("", "top-level instance_types list"),
        ("- name: cpu.1\n", "top-level instance_types list"),
        ("other: 1\n", "top-level instance_types list"),
        ("instance_types: {name: x}\n", "top-level instance_types list"),
        ("instance_types:\n", "top-level instance_types list"),
        ("instance_types: []\n", "instance_types must list at least one instance type"),
        ("instance_types: [3]\n", "instance_types[0] must be a mapping"),
    ],
)
def test_malformed_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "instance-types.yaml"
    path.write_text(text)
    with pytest.raises(BadRequest) as caught:
        load_catalog(path)
    assert expected in caught.value.message
    assert str(path) in caught.value.message
    assert "\n" not in caught.value.message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="could not be read"):
        load_catalog(tmp_path)
    binary = tmp_path / "instance-types.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BadRequest, match="could not be read"):
        load_catalog(binary)


# --- amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "millicores"),
    [
        ("500m", 500),
        ("2", 2000),
        (2, 2000),
        ("0.5", 500),
        (0.5, 500),
        (1.5, 1500),
        ("1.25", 1250),
        (" 250m ", 250),
        ("2000m", 2000),
        ("0", 0),
        (".5", 500),
    ],
)
def test_parse_cpu(value: str | int | float, millicores: int) -> None:
    assert parse_cpu(value) == millicores


@pytest.mark.parametrize(
    "value", ["", "abc", "-1", "-500m", "1.5m", "0.0001", "2 cores", "1e", "m", float("inf")]
)
def test_parse_cpu_rejects(value: str | int | float) -> None:
    with pytest.raises(BadRequest, match="CPU amount") as caught:
        parse_cpu(value)
    assert repr(value) in caught.value.message


def test_parse_cpu_rejects_bool() -> None:
    with pytest.raises(BadRequest):
        parse_cpu(True)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("2Gi", 2 * GiB),
        ("512Mi", 512 * MiB),
        ("1Ki", KiB),
        ("1Ti", TiB),
        ("1.5Gi", 1536 * MiB),
        ("1K", 1000),
        ("1k", 1000),
        ("2M", 2_000_000),
        ("3G", 3_000_000_000),
        ("1T", 10**12),
        ("1073741824", GiB),
        (1073741824, GiB),
        ("0", 0),
        (" 4 Gi ", 4 * GiB),
    ],
)
def test_parse_memory(value: str | int, size: int) -> None:
    assert parse_memory(value) == size


@pytest.mark.parametrize("value", ["lots", "-1Gi", "4GB", "1.5", "", "Gi", "4Xi", "0.1Ki", -5])
def test_parse_memory_rejects(value: str | int) -> None:
    with pytest.raises(BadRequest, match="memory size") as caught:
        parse_memory(value)
    assert repr(value) in caught.value.message


@pytest.mark.parametrize(
    ("millicores", "text"), [(500, "500m"), (1000, "1"), (1500, "1500m"), (12000, "12"), (0, "0")]
)
def test_format_cpu(millicores: int, text: str) -> None:
    assert format_cpu(millicores) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(2 * GiB, "2Gi"), (1536 * MiB, "1536Mi"), (512 * MiB, "512Mi"), (3 * KiB, "3Ki"), (10, "10")],
)
def test_format_memory(size: int, text: str) -> None:
    assert format_memory(size) == text
    assert parse_memory(text) == size


# --- host capacity ----------------------------------------------------------------------------


def _builtin(name: str) -> InstanceType:
    instance_type = find(BUILTIN_INSTANCE_TYPES, name)
    assert instance_type is not None
    return instance_type


def test_can_host_within_limits() -> None:
    host = HostCapacity(cpu_millicores=2000, memory_bytes=8 * GiB, gpus=())
    assert host.can_host(_builtin("cpu.1"))
    assert host.can_host(_builtin("cpu.4"))
    assert host.why_not(_builtin("cpu.4")) is None
    assert not host.can_host(_builtin("cpu.8"))
    assert not host.can_host(_builtin("gpu.t4.1"))


def test_why_not_cpu() -> None:
    host = HostCapacity(cpu_millicores=2000, memory_bytes=64 * GiB)
    why = host.why_not(_builtin("cpu.8"))
    assert why == "Instance type 'cpu.8' needs 4 CPU cores but this machine has 2."
    small = HostCapacity(cpu_millicores=500, memory_bytes=64 * GiB)
    assert "needs 1 CPU core but this machine has 0.5" in str(small.why_not(_builtin("cpu.2")))


def test_why_not_memory() -> None:
    host = HostCapacity(cpu_millicores=8000, memory_bytes=15 * GiB + 512 * MiB)
    why = host.why_not(_builtin("cpu.8"))
    assert why == "Instance type 'cpu.8' needs 16 GiB of memory but this machine has 15.5 GiB."


def test_why_not_memory_close_sizes_use_mib() -> None:
    host = HostCapacity(cpu_millicores=8000, memory_bytes=16 * GiB - MiB)
    why = host.why_not(_builtin("cpu.8"))
    assert why is not None
    assert "needs 16384 MiB of memory but this machine has 16383 MiB" in why


def test_why_not_gpus() -> None:
    no_gpus = HostCapacity(cpu_millicores=16000, memory_bytes=128 * GiB)
    why = no_gpus.why_not(_builtin("gpu.t4.1"))
    assert why == "Instance type 'gpu.t4.1' needs an nvidia-tesla-t4 GPU; this machine has no GPUs."
    untyped = InstanceType("gpu.any", "", "gpu", "1", 1000, GiB, 1, None, None)
    assert no_gpus.why_not(untyped) == "Instance type 'gpu.any' needs 1 GPU but this machine has none."
    # GPU types are matched: an H100 is not an A100.
    one_h100 = HostCapacity(16000, 128 * GiB, (GpuInfo(0, "NVIDIA H100", 80 * GiB),))
    assert one_h100.why_not(_builtin("gpu.a100.1")) == (
        "Instance type 'gpu.a100.1' needs an nvidia-tesla-a100 GPU; this machine has none"
        " (it has 1 nvidia-h100)."
    )
    assert one_h100.can_host(untyped)
    two = InstanceType("gpu.two", "", "gpu", "1", 1000, GiB, 2, "nvidia-h100", None)
    assert (
        one_h100.why_not(two) == "Instance type 'gpu.two' needs 2 nvidia-h100 GPUs; this machine has only 1."
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_v1_cpu_quota(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "150000")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    assert capacity._cgroup_cpu_limit(tmp_path) == 1500


def test_cgroup_v1_cpu_quota_in_cpu_cpuacct(tmp_path: Path) -> None:
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "50000")
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    assert capacity._cgroup_cpu_limit(tmp_path) == 500


def test_cgroup_v1_cpu_unlimited(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    assert capacity._cgroup_cpu_limit(tmp_path) is None


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("max 100000", None), ("150000 100000", 1500), ("200000 50000", 4000), ("junk", None)],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, text: str, millicores: int | None) -> None:
    _write(tmp_path / "cpu.max", text)
    assert capacity._cgroup_cpu_limit(tmp_path) == millicores


def test_cgroup_cpu_absent(tmp_path: Path) -> None:
    assert capacity._cgroup_cpu_limit(tmp_path) is None


def test_cpu_quota_caps_visible_cpus(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "50000 100000")
    assert capacity._detect_cpu_millicores(tmp_path) == 500
    assert capacity._detect_cpu_millicores(tmp_path / "absent") >= 1000


@pytest.mark.parametrize(
    ("relative", "text", "limit"),
    [
        ("memory.max", "max", None),
        ("memory.max", "1073741824", GiB),
        ("memory/memory.limit_in_bytes", "9223372036854771712", None),
        ("memory/memory.limit_in_bytes", "536870912", 512 * MiB),
        ("memory.max", "garbage", None),
    ],
)
def test_cgroup_memory_limit(tmp_path: Path, relative: str, text: str, limit: int | None) -> None:
    _write(tmp_path / relative, text)
    assert capacity._cgroup_memory_limit(tmp_path) == limit


def test_memory_limit_caps_total(tmp_path: Path) -> None:
    _write(tmp_path / "memory.max", str(MiB))
    assert capacity._detect_memory_bytes(tmp_path) == MiB
    assert capacity._detect_memory_bytes(tmp_path / "absent") > MiB


NVIDIA_SMI = """\
0, NVIDIA H100 80GB HBM3, 81559
1, Tesla T4, 15360
"""


def test_parse_nvidia_smi_two_gpus() -> None:
    assert capacity._parse_nvidia_smi(NVIDIA_SMI) == (
        GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * MiB),
        GpuInfo(index=1, name="Tesla T4", memory_bytes=15360 * MiB),
    )


def test_parse_nvidia_smi_empty_and_junk() -> None:
    assert capacity._parse_nvidia_smi("") == ()
    assert capacity._parse_nvidia_smi("\nNVIDIA-SMI has failed\n") == ()
    assert capacity._parse_nvidia_smi("0, Odd GPU, [N/A]") == (GpuInfo(0, "Odd GPU", 0),)


def test_no_nvidia_smi_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert capacity._query_nvidia_smi() == ""


def test_detect_host_capacity_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "_query_nvidia_smi", lambda: NVIDIA_SMI)
    capacity.detect_host_capacity.cache_clear()
    try:
        host = capacity.detect_host_capacity()
        assert host.cpu_millicores >= 1
        assert host.memory_bytes > 0
        assert [gpu.index for gpu in host.gpus] == [0, 1]
        assert capacity.detect_host_capacity() is host
    finally:
        capacity.detect_host_capacity.cache_clear()
