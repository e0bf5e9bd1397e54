"""What a replica asks Ray for, and why Ray has not placed it: pure functions, no `ray` import.

A replica's `Resources` become Ray actor options: `num_cpus` from millicores, `memory` in bytes,
`num_gpus`, and for a GPU type one custom resource per GPU, `gpu-type:<type>`, that nodes advertise
with `ray start --resources`, so a T4 replica only lands on a node that says it has T4s. Ray itself
only says an actor is pending; `why_pending` compares what the actor needs with what the alive
nodes offer and says, in one sentence, what no node has or that it waits for room. `spread_node`
picks the node a new replica should prefer, so that a Service's replicas spread over the nodes (as Ray
Serve spreads its replicas) and one node's loss takes as few of them as possible.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiffin.backends.gpu_types import gpu_type_of
from tiffin.backends.protocol import Resources

GPU_TYPE_PREFIX = "gpu-type:"
MIN_CPUS = 0.01  # what a replica that asks for no CPU reserves
_GiB = 1024**3
_MiB = 1024**2


def gpu_type_resource(gpu_type: str) -> str:
    """The custom resource a node advertises for each GPU of `gpu_type` (any spelling of the type)."""
    return f"{GPU_TYPE_PREFIX}{gpu_type_of(gpu_type)}"


def actor_options(resources: Resources) -> dict[str, Any]:
    """Ray actor options for a replica's resources. No CPU request means `MIN_CPUS` (best effort, as the
    local backend never refuses a replica that asks for nothing): Ray places an actor asking for no
    resources at all wherever the request arrives, ignoring node preferences (measured: a head started
    with `--num-cpus=0` got them), while a sliver of a CPU keeps them on the nodes meant for work."""
    options: dict[str, Any] = {"num_cpus": max((resources.cpu_millicores or 0) / 1000, MIN_CPUS)}
    if resources.memory_bytes:
        options["memory"] = resources.memory_bytes
    if resources.gpus:
        options["num_gpus"] = resources.gpus
        if resources.gpu_type:
            options["resources"] = {gpu_type_resource(resources.gpu_type): resources.gpus}
    return options


def required(resources: Resources) -> dict[str, float]:
    """The resources Ray must find on one node, by Ray's names (`CPU`, `memory`, `GPU`, custom)."""
    options = actor_options(resources)
    needs = {
        "CPU": float(options["num_cpus"]),
        "memory": float(options.get("memory", 0)),
        "GPU": float(options.get("num_gpus", 0)),
        **{name: float(amount) for name, amount in options.get("resources", {}).items()},
    }
    return {name: amount for name, amount in needs.items() if amount > 0}


@dataclass(frozen=True)
class NodeOffer:
    """One alive Ray node: its address, the total of each resource it offers, and its id."""

    address: str
    total: Mapping[str, float]
    node_id: str = ""


def nodes_from_ray(nodes: Iterable[Mapping[str, Any]]) -> list[NodeOffer]:
    """The alive nodes of `ray.nodes()`."""
    return [
        NodeOffer(
            str(node.get("NodeManagerAddress", "?")),
            dict(node.get("Resources") or {}),
            str(node.get("NodeID", "")),
        )
        for node in nodes
        if node.get("Alive")
    ]


@dataclass(frozen=True)
class Placed:
    """A replica this backend runs (or just asked Ray for): its node, and whether it is of the Service
    being placed."""

    node_id: str
    same_service: bool


def spread_node(
    needs: Mapping[str, float], nodes: Iterable[NodeOffer], placed: Sequence[Placed]
) -> str | None:
    """The node a new replica should prefer: of the alive nodes big enough for `needs`, the one with the
    fewest replicas of the same Service, then the fewest replicas; None when no node is big enough (Ray
    then keeps it pending, and `why_pending` says why). Ray may still place it elsewhere when that node
    has no room left."""
    fits = [node for node in nodes if node.node_id and _fits(needs, node)]
    if not fits:
        return None

    def crowding(node: NodeOffer) -> tuple[int, int, str]:
        here = [p for p in placed if p.node_id == node.node_id]
        return sum(p.same_service for p in here), len(here), node.node_id

    return min(fits, key=crowding).node_id


def _fits(needs: Mapping[str, float], node: NodeOffer) -> bool:
    return all(node.total.get(name, 0.0) >= amount for name, amount in needs.items())


def why_pending(needs: Mapping[str, float], nodes: Iterable[NodeOffer]) -> str:
    """Why an actor needing `needs` is not placed: what no alive node offers, or that it waits."""
    offers = list(nodes)
    if not offers:
        return "no Ray node is alive"
    if any(_fits(needs, node) for node in offers):
        return f"waiting for a Ray node with {say(needs)} free" if needs else "waiting for Ray to place it"
    missing = [k for k, v in needs.items() if all(node.total.get(k, 0.0) < v for node in offers)]
    if any(name.startswith(GPU_TYPE_PREFIX) for name in missing):
        missing = [name for name in missing if name != "GPU"]  # the GPU type says it better
    if not missing:
        return f"no single Ray node has {say(needs)} (each of the {len(offers)} alive nodes lacks some)"
    return "; ".join(_missing(name, needs[name], len(offers)) for name in missing)


def _missing(name: str, amount: float, alive: int) -> str:
    nodes = f"none of the {alive} alive Ray nodes" if alive > 1 else "the one alive Ray node does not"
    if name.startswith(GPU_TYPE_PREFIX):
        gpu_type = name.removeprefix(GPU_TYPE_PREFIX)
        unit = "GPU" if amount == 1 else "GPUs"
        verb = "offers" if alive > 1 else "offer"
        return (
            f"needs {_number(amount)} {gpu_type} {unit}; {nodes} {verb} them (a node advertises them with"
            f" `ray start --resources '{{\"{name}\": N}}'`)"
        )
    verb = "has" if alive > 1 else "have"
    return f"needs {say({name: amount})}; {nodes} {verb} that much"


def say(needs: Mapping[str, float]) -> str:
    """`"0.5 CPU, 2 GiB of memory, 1 GPU, 1 gpu-type:nvidia-tesla-t4"`."""
    parts = []
    for name, amount in needs.items():
        if name == "memory":
            parts.append(f"{_size(amount)} of memory")
        else:
            parts.append(f"{_number(amount)} {name}")
    return ", ".join(parts) or "nothing"


def _number(amount: float) -> str:
    return f"{amount:g}"


def _size(size: float) -> str:
    if size >= _GiB:
        return f"{size / _GiB:.1f} GiB".replace(".0 GiB", " GiB")
    return f"{size / _MiB:.0f} MiB"
