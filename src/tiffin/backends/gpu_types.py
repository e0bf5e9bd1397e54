"""GPU types: from the names nvidia-smi prints to the identifiers instance types use.

An instance type names its GPU the way BentoCloud and bentoml do (`nvidia-tesla-t4`, `nvidia-l4`,
`nvidia-tesla-a100`), while nvidia-smi prints marketing names with memory and form factor
(`Tesla T4`, `NVIDIA A100-SXM4-80GB`, `NVIDIA H100 80GB HBM3`). Both are turned into one identifier
per GPU family here, so a replica that asks for a family gets exactly that family, whatever the
memory or form factor of the card. Pure: names in, identifiers out.
"""

import re

# Known families: the model's words as nvidia-smi writes them (lowercase, one space between words)
# → the identifier the built-in catalog and bentoml use. Words match whole, so `a10` never matches
# `a100` and `l4` never matches `l40s`.
GPU_FAMILIES: dict[str, str] = {
    "k80": "nvidia-tesla-k80",
    "p4": "nvidia-tesla-p4",
    "p100": "nvidia-tesla-p100",
    "v100": "nvidia-tesla-v100",
    "t4": "nvidia-tesla-t4",
    "a10": "nvidia-a10",
    "a10g": "nvidia-a10g",
    "a30": "nvidia-a30",
    "a40": "nvidia-a40",
    "a100": "nvidia-tesla-a100",
    "l4": "nvidia-l4",
    "l40": "nvidia-l40",
    "l40s": "nvidia-l40s",
    "h100": "nvidia-h100",
    "h200": "nvidia-h200",
    "gh200": "nvidia-gh200",
    "b200": "nvidia-b200",
    "gb200": "nvidia-gb200",
    "rtx pro 6000": "nvidia-rtx-pro-6000",
}

# Words that say how much memory or which form factor, not which GPU: `80gb`, `sxm4`, `pcie`, `hbm3`,
# `nvl`, and the `generation` of `RTX 6000 Ada Generation`.
_NOT_THE_MODEL = re.compile(r"\d+gb|sxm\d*|pcie|hbm\d*e?|nvl\d*|generation|gpu")
_VENDORS = ("nvidia", "amd", "intel")


def gpu_type_of(name: str) -> str:
    """The GPU type identifier of a GPU or GPU type name, case-insensitive.

    `"NVIDIA H100 80GB HBM3"` → `nvidia-h100`, `"Tesla T4"` → `nvidia-tesla-t4`, and the identifiers
    map to themselves (`nvidia-tesla-a100`, and `nvidia-a100-80gb` → `nvidia-tesla-a100`). A GPU of no
    known family gets its name's words without memory and form factor: `"NVIDIA RTX 6000 Ada
    Generation"` → `nvidia-rtx-6000-ada`.
    """
    words = re.findall(r"[a-z0-9]+", name.lower())
    spaced = f" {' '.join(words)} "
    for model, identifier in GPU_FAMILIES.items():
        if f" {model} " in spaced:
            return identifier
    kept = [word for word in words if not _NOT_THE_MODEL.fullmatch(word)]
    if not kept or kept[0] not in _VENDORS:
        kept.insert(0, "nvidia")  # nvidia-smi leaves it out of older names: "Quadro RTX 8000"
    return "-".join(kept)
