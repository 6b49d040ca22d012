"""What an EC2 instance type name says about the machine. Pure: no boto3, safe to import from the core.

Decided from the name alone so that a launch needs no DescribeInstanceTypes call (and no extra IAM
permission). EC2 names are `<series><generation><attributes>.<size>`: `g5.xlarge`, `m7gd.large`,
`p4de.24xlarge`.
"""

from __future__ import annotations

import re
from enum import StrEnum

_TYPE_RE = re.compile(
    r"^(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z0-9-]*)\.(?P<size>[a-z0-9-]+)$"
)

# NVIDIA (g, gr, p), AWS Trainium/Inferentia (trn, inf) and Gaudi/Qualcomm (dl) accelerators.
_NVIDIA_SERIES = frozenset({"g", "gr", "p"})
_NEURON_SERIES = frozenset({"trn", "inf"})
_OTHER_ACCELERATED_SERIES = frozenset({"dl"})
# FPGA (f1, f2) and video transcoding (vt1) cards: not GPUs (no DLAMI, no bigger disk), but work on them may
# leave the CPU idle, so the idle rules treat them like accelerators.
_CARD_SERIES = frozenset({"f", "vt"})
# High-memory `u-6tb1.112xlarge` and the like: CPU only, in a name the pattern above does not parse.
_HIGH_MEMORY_RE = re.compile(r"^u-\d+tb\d*\.[a-z0-9-]+$")


class Accelerator(StrEnum):
    NONE = "none"
    NVIDIA = "nvidia"
    NEURON = "neuron"
    OTHER = "other"


class Architecture(StrEnum):
    X86_64 = "x86_64"
    ARM64 = "arm64"


def _parts(instance_type: str) -> re.Match[str] | None:
    return _TYPE_RE.match(instance_type.strip().lower())


def family(instance_type: str) -> str:
    """`g5.xlarge` -> `g5`; unparseable names are returned whole, lower-cased."""
    name = instance_type.strip().lower()
    return name.split(".", 1)[0]


def accelerator(instance_type: str) -> Accelerator:
    parts = _parts(instance_type)
    if parts is None:
        return Accelerator.NONE
    series = parts["series"]
    if series in _NVIDIA_SERIES:
        return Accelerator.NVIDIA
    if series in _NEURON_SERIES:
        return Accelerator.NEURON
    if series in _OTHER_ACCELERATED_SERIES:
        return Accelerator.OTHER
    return Accelerator.NONE


def is_gpu_family(instance_type: str) -> bool:
    """g*, p*, trn*, inf*, dl*: machines bought for their accelerators (bigger disk, DLAMI, GPU metric)."""
    return accelerator(instance_type) is not Accelerator.NONE


def may_have_accelerators(instance_type: str | None) -> bool:
    """Whether CPU utilisation alone could miss the work on this machine, so a GPU metric must be asked for.

    True for every accelerated type (NVIDIA g/gr/p, but also AMD g4ad, Trainium/Inferentia, Gaudi and
    Qualcomm dl, FPGA f and video vt): the one configured GPU metric (the CloudWatch agent's
    `nvidia_smi_utilization_gpu`, say) exists only on some of them, and where it does not, the empty series
    reads as missing data, which keeps the machine *not idle*. That is the safe side: on a trn1.32xlarge a
    training job's host process is under 1 % of 128 vCPUs, so CPU alone would call it idle. False only for
    types known to have no accelerator (t3, m7g, c6i, r6id, u-6tb1, mac2…), which the GPU metric could never
    cover and whose empty GPU series would otherwise keep them from ever being idle. A name that cannot be
    read (empty, misspelt, a type newer than this table) counts as possibly accelerated: fail safe.
    """
    if not instance_type:
        return True
    name = instance_type.strip().lower()
    if _HIGH_MEMORY_RE.match(name):
        return False
    parts = _parts(name)
    if parts is None:
        return True
    return accelerator(name) is not Accelerator.NONE or parts["series"] in _CARD_SERIES


def architecture(instance_type: str) -> Architecture:
    """Graviton types have a `g` in the attributes after the generation (m7g, c6gn, t4g, g5g), or are a1."""
    parts = _parts(instance_type)
    if parts is None:
        return Architecture.X86_64
    if parts["series"] == "a" and parts["generation"] == "1":
        return Architecture.ARM64
    attributes = parts["attributes"].split("-", 1)[0]  # `m7i-flex`: attributes before the dash
    return Architecture.ARM64 if "g" in attributes else Architecture.X86_64
