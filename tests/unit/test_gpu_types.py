"""GPU types: nvidia-smi names mapped to the catalog's identifiers, the ledger handing out GPUs of the
type an instance type names, the instance types a machine's own GPUs add, and a Service's settings
carrying the GPU type to its replicas."""

import pytest

from tiffin.backends.capacity import GpuInfo, HostCapacity, with_machine_gpus
from tiffin.backends.gpu_types import GPU_FAMILIES, gpu_type_of
from tiffin.backends.ledger import Allocation, Ledger, Shortage
from tiffin.backends.protocol import BentoRef, Resources
from tiffin.core import deployment_config as dc
from tiffin.core.instance_types import BUILTIN_INSTANCE_TYPES, GiB, InstanceType, MiB, find
from tiffin.reconciler.specs import RuntimeContext, replica_template

# --- names -------------------------------------------------------------------------------------------

# What `nvidia-smi --query-gpu=name` prints on real machines → the identifier instance types use.
NVIDIA_SMI_NAMES = [
    ("Tesla T4", "nvidia-tesla-t4"),
    ("NVIDIA T4", "nvidia-tesla-t4"),
    ("NVIDIA L4", "nvidia-l4"),
    ("NVIDIA L40S", "nvidia-l40s"),
    ("NVIDIA L40", "nvidia-l40"),
    ("NVIDIA A10G", "nvidia-a10g"),
    ("NVIDIA A10", "nvidia-a10"),
    ("NVIDIA A100-SXM4-80GB", "nvidia-tesla-a100"),
    ("NVIDIA A100-SXM4-40GB", "nvidia-tesla-a100"),
    ("NVIDIA A100-PCIE-40GB", "nvidia-tesla-a100"),
    ("NVIDIA A100 80GB PCIe", "nvidia-tesla-a100"),
    ("NVIDIA H100 80GB HBM3", "nvidia-h100"),
    ("NVIDIA H100 PCIe", "nvidia-h100"),
    ("NVIDIA H100 NVL", "nvidia-h100"),
    ("NVIDIA H200", "nvidia-h200"),
    ("NVIDIA H200 NVL", "nvidia-h200"),
    ("NVIDIA GH200 480GB", "nvidia-gh200"),
    ("NVIDIA B200", "nvidia-b200"),
    ("Tesla V100-SXM2-16GB", "nvidia-tesla-v100"),
    ("Tesla V100-PCIE-32GB", "nvidia-tesla-v100"),
    ("Tesla P100-PCIE-16GB", "nvidia-tesla-p100"),
    ("Tesla P4", "nvidia-tesla-p4"),
    ("Tesla K80", "nvidia-tesla-k80"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "nvidia-rtx-pro-6000"),
    # No known family: the name's words, without memory and form factor.
    ("NVIDIA RTX 6000 Ada Generation", "nvidia-rtx-6000-ada"),
    ("NVIDIA RTX A6000", "nvidia-rtx-a6000"),
    ("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"),
    ("Quadro RTX 8000", "nvidia-quadro-rtx-8000"),
]


@pytest.mark.parametrize(("name", "gpu_type"), NVIDIA_SMI_NAMES)
def test_nvidia_smi_names_map_to_gpu_types(name: str, gpu_type: str) -> None:
    assert gpu_type_of(name) == gpu_type
    assert gpu_type_of(name.upper()) == gpu_type_of(name.lower()) == gpu_type


@pytest.mark.parametrize(
    "identifier", [*GPU_FAMILIES.values(), "nvidia-rtx-6000-ada", "amd-mi300x", "nvidia-geforce-rtx-4090"]
)
def test_identifiers_map_to_themselves(identifier: str) -> None:
    assert gpu_type_of(identifier) == identifier


@pytest.mark.parametrize(
    ("written", "gpu_type"),
    [
        ("nvidia-a100-80gb", "nvidia-tesla-a100"),  # bentoml's spellings of the same families
        ("nvidia-h100-80gb", "nvidia-h100"),
        ("nvidia-tesla-h100", "nvidia-h100"),
        ("nvidia-h200-141gb", "nvidia-h200"),
        ("nvidia-a100", "nvidia-tesla-a100"),
        ("NVIDIA-L4", "nvidia-l4"),
    ],
)
def test_catalog_spellings_of_a_family_agree(written: str, gpu_type: str) -> None:
    assert gpu_type_of(written) == gpu_type


def test_every_builtin_gpu_type_is_a_known_family() -> None:
    builtin = {item.gpu_type for item in BUILTIN_INSTANCE_TYPES if item.gpu_type}
    assert builtin == {"nvidia-tesla-t4", "nvidia-l4", "nvidia-tesla-a100"}
    assert builtin <= set(GPU_FAMILIES.values())


# --- the ledger ------------------------------------------------------------------------------------

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559 * MiB)
T4 = GpuInfo(1, "Tesla T4", 15360 * MiB)
ONE_H100 = HostCapacity(cpu_millicores=16000, memory_bytes=128 * GiB, gpus=(H100,))


def one_gpu(gpu_type: str | None) -> Resources:
    return Resources(cpu_millicores=1000, memory_bytes=GiB, gpus=1, gpu_type=gpu_type)


def test_the_ledger_refuses_gpus_of_another_type() -> None:
    ledger = Ledger(ONE_H100, range(16))

    refused = ledger.reserve("r-t4", one_gpu("nvidia-tesla-t4"))

    assert refused == Shortage("needs 1 nvidia-tesla-t4 GPU; this machine has 1 nvidia-h100 (in use: 0)")
    granted = ledger.reserve("r-h100", one_gpu("nvidia-h100"))
    assert isinstance(granted, Allocation) and granted.gpu_indices == (0,)


def test_the_ledger_accepts_the_right_type_however_it_is_spelled() -> None:
    for spelling in ("nvidia-h100", "nvidia-h100-80gb", "nvidia-tesla-h100", "NVIDIA H100 80GB HBM3"):
        granted = Ledger(ONE_H100, range(16)).reserve("r", one_gpu(spelling))
        assert isinstance(granted, Allocation) and granted.gpu_indices == (0,), spelling


def test_the_ledger_picks_gpus_of_the_type_among_others() -> None:
    host = HostCapacity(16000, 128 * GiB, (H100, T4, GpuInfo(2, "Tesla T4", 15360 * MiB)))
    ledger = Ledger(host, range(16))

    first, second = (
        ledger.reserve("a", one_gpu("nvidia-tesla-t4")),
        ledger.reserve("b", one_gpu("nvidia-tesla-t4")),
    )
    third = ledger.reserve("c", one_gpu("nvidia-tesla-t4"))

    assert isinstance(first, Allocation) and first.gpu_indices == (1,)
    assert isinstance(second, Allocation) and second.gpu_indices == (2,)
    assert third == Shortage("waiting for 1 nvidia-tesla-t4 GPU: 0 of 2 free on this machine")
    too_many = ledger.reserve("d", Resources(gpus=3, gpu_type="nvidia-tesla-t4"))
    assert too_many == Shortage(
        "needs 3 nvidia-tesla-t4 GPUs; this machine has 1 nvidia-h100 (in use: 0)"
        " and 2 nvidia-tesla-t4 (in use: 2)"
    )
    ledger.release("a")
    again = ledger.reserve("c", one_gpu("nvidia-tesla-t4"))
    assert isinstance(again, Allocation) and again.gpu_indices == (1,)


def test_a_replica_without_a_gpu_type_takes_any_gpu() -> None:
    ledger = Ledger(HostCapacity(16000, 128 * GiB, (H100, T4)), range(16))

    first, second = ledger.reserve("a", one_gpu(None)), ledger.reserve("b", one_gpu(None))

    assert isinstance(first, Allocation) and first.gpu_indices == (0,)
    assert isinstance(second, Allocation) and second.gpu_indices == (1,)
    assert ledger.reserve("c", one_gpu(None)) == Shortage("waiting for 1 GPU(s): 0 free on this machine")


def test_a_typed_request_on_a_machine_without_gpus() -> None:
    ledger = Ledger(HostCapacity(16000, 128 * GiB), range(16))

    refused = ledger.reserve("r", one_gpu("nvidia-l4"))

    assert refused == Shortage("needs 1 nvidia-l4 GPU; this machine has no GPUs")


# --- what the machine adds to the catalog ------------------------------------------------------------


def test_an_h100_machine_gets_an_h100_instance_type() -> None:
    catalog = with_machine_gpus(BUILTIN_INSTANCE_TYPES, ONE_H100)

    assert catalog[: len(BUILTIN_INSTANCE_TYPES)] == list(BUILTIN_INSTANCE_TYPES)
    assert [item.name for item in catalog[len(BUILTIN_INSTANCE_TYPES) :]] == ["gpu.h100.1"]
    h100 = find(catalog, "gpu.h100.1")
    assert h100 == InstanceType(
        name="gpu.h100.1",
        description="1 NVIDIA H100 80GB HBM3 (79.6 GiB), 12 CPU cores, 96 GiB memory",
        group="gpu",
        price="3.1859",
        cpu_millicores=12000,
        memory_bytes=96 * GiB,
        gpu_count=1,
        gpu_type="nvidia-h100",
        gpu_memory="81559Mi",
    )
    assert ONE_H100.can_host(h100)
    assert isinstance(Ledger(ONE_H100, range(16)).reserve("r", one_gpu(h100.gpu_type)), Allocation)


def test_machine_types_share_the_machine_between_its_gpus() -> None:
    eight = tuple(GpuInfo(i, "NVIDIA H200", 143771 * MiB) for i in range(8))
    host = HostCapacity(cpu_millicores=192000, memory_bytes=2048 * GiB, gpus=eight)

    (h200,) = with_machine_gpus(BUILTIN_INSTANCE_TYPES, host)[len(BUILTIN_INSTANCE_TYPES) :]

    assert (h200.name, h200.gpu_count, h200.gpu_type) == ("gpu.h200.1", 1, "nvidia-h200")
    assert (h200.cpu_millicores, h200.memory_bytes) == (18000, 192 * GiB)
    small = HostCapacity(cpu_millicores=1500, memory_bytes=GiB // 2, gpus=(T4, H100))
    added = with_machine_gpus([], small)
    assert [(t.name, t.cpu_millicores, t.memory_bytes) for t in added] == [
        ("gpu.t4.1", 1000, GiB // 2),
        ("gpu.h100.1", 1000, GiB // 2),
    ]
    assert all(small.can_host(item) for item in added)


def test_gpu_types_the_catalog_names_add_nothing() -> None:
    t4_machine = HostCapacity(16000, 128 * GiB, (GpuInfo(0, "Tesla T4", 15360 * MiB),))
    assert with_machine_gpus(BUILTIN_INSTANCE_TYPES, t4_machine) == list(BUILTIN_INSTANCE_TYPES)
    a100_machine = HostCapacity(16000, 128 * GiB, (GpuInfo(0, "NVIDIA A100-SXM4-40GB", 40960 * MiB),))
    assert with_machine_gpus(BUILTIN_INSTANCE_TYPES, a100_machine) == list(BUILTIN_INSTANCE_TYPES)
    no_gpus = HostCapacity(16000, 128 * GiB)
    assert with_machine_gpus(BUILTIN_INSTANCE_TYPES, no_gpus) == list(BUILTIN_INSTANCE_TYPES)
    twice = with_machine_gpus(with_machine_gpus(BUILTIN_INSTANCE_TYPES, ONE_H100), ONE_H100)
    assert twice == with_machine_gpus(BUILTIN_INSTANCE_TYPES, ONE_H100)


def test_an_unknown_gpu_gets_a_type_named_after_it() -> None:
    host = HostCapacity(16000, 64 * GiB, (GpuInfo(0, "NVIDIA RTX 6000 Ada Generation", 49140 * MiB),))

    (added,) = with_machine_gpus(BUILTIN_INSTANCE_TYPES, host)[len(BUILTIN_INSTANCE_TYPES) :]

    assert (added.name, added.gpu_type) == ("gpu.rtx-6000-ada.1", "nvidia-rtx-6000-ada")
    assert added.description.startswith("1 NVIDIA RTX 6000 Ada Generation (48 GiB), ")


# --- from a Service's settings to its replicas -----------------------------------------------------


def test_a_replica_asks_for_the_gpu_type_of_its_instance_type() -> None:
    bento = {"name": "echo", "service": "service:Echo", "services": [{"name": "Echo", "config": {}}]}
    catalog = with_machine_gpus(BUILTIN_INSTANCE_TYPES, ONE_H100)
    runtime = RuntimeContext("d1", "rev", BentoRef("echo:v1"), bento, {}, "http://api", "token")

    def resources(config: dict[str, object]) -> Resources:
        (settings,) = dc.service_settings(config, bento, catalog)
        return replica_template(runtime, settings).resources

    t4 = resources({"services": {"Echo": {"instance_type": "gpu.t4.1"}}})
    assert t4 == Resources(4000, 16 * GiB, 1, "nvidia-tesla-t4")
    assert resources({"services": {"Echo": {"instance_type": "gpu.h100.1"}}}).gpu_type == "nvidia-h100"
    assert resources({"services": {"Echo": {"instance_type": "cpu.2"}}}).gpu_type is None
    own = {"services": {"Echo": {"config_overrides": {"resources": {"gpu": 1}}}}}
    assert resources(own) == Resources(None, None, 1, None)  # GPUs without a type: any GPU
    assert isinstance(Ledger(ONE_H100, range(16)).reserve("r", resources(own)), Allocation)
    refused = Ledger(ONE_H100, range(16)).reserve("r", t4)
    assert refused == Shortage("needs 1 nvidia-tesla-t4 GPU; this machine has 1 nvidia-h100 (in use: 0)")
