"""Which image a launch uses: the configured one, else the latest AWS-published image for the family.

GPU, Trainium and Inferentia families get the newest AWS Deep Learning AMI (DescribeImages, owner amazon,
newest CreationDate); everything else gets Amazon Linux 2023 from its SSM public parameter. Either way the
image is described once, because the launch needs its root device name and snapshot size.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from providers.aws.calls import AwsCaller
from providers.aws.config import AwsConfig
from providers.aws.families import Accelerator, Architecture, accelerator, architecture
from providers.errors import InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ssm import SSMClient


@dataclass(frozen=True)
class ImageInfo:
    image_id: str
    name: str
    architecture: str
    root_device_name: str
    root_snapshot_gb: int | None  # the root volume must be at least this big
    creation_date: str = ""


def image_info(raw: Mapping[str, Any]) -> ImageInfo:
    root_device = str(raw.get("RootDeviceName") or "/dev/xvda")
    snapshot_gb: int | None = None
    for mapping in raw.get("BlockDeviceMappings") or ():
        if mapping.get("DeviceName") == root_device:
            size = (mapping.get("Ebs") or {}).get("VolumeSize")
            snapshot_gb = int(size) if size is not None else None
    return ImageInfo(
        image_id=str(raw["ImageId"]),
        name=str(raw.get("Name") or ""),
        architecture=str(raw.get("Architecture") or ""),
        root_device_name=root_device,
        root_snapshot_gb=snapshot_gb,
        creation_date=str(raw.get("CreationDate") or ""),
    )


def newest_image(images: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The available image with the latest CreationDate (ISO-8601 strings sort chronologically)."""
    available = [img for img in images if img.get("State", "available") == "available"]
    if not available:
        return None
    return max(available, key=lambda img: (str(img.get("CreationDate") or ""), str(img.get("ImageId"))))


def dlami_pattern(config: AwsConfig, instance_type: str) -> str | None:
    """The DLAMI name pattern for an accelerated type, or None when no AWS image fits it."""
    kind = accelerator(instance_type)
    if kind is Accelerator.NVIDIA:
        if architecture(instance_type) is Architecture.ARM64:
            return config.dlami_name_nvidia_arm64
        return config.dlami_name_nvidia_x86_64
    if kind is Accelerator.NEURON:
        return config.dlami_name_neuron
    return None


class AmiResolver:
    def __init__(self, ec2: EC2Client, ssm: SSMClient, caller: AwsCaller, config: AwsConfig) -> None:
        self._ec2 = ec2
        self._ssm = ssm
        self._caller = caller
        self._config = config
        self._described: dict[str, ImageInfo] = {}  # images are immutable, so their description is too
        self._lock = threading.Lock()

    def resolve(self, instance_type: str, ami_id: str | None = None) -> ImageInfo:
        chosen = ami_id or self._config.ami_id
        if chosen:
            return self.describe(chosen)
        kind = accelerator(instance_type)
        if kind is Accelerator.OTHER:
            raise InvalidRequestError(
                f"no AWS-published default image for {instance_type}: set an AMI id for this family",
                operation="ami:resolve",
            )
        pattern = dlami_pattern(self._config, instance_type)
        if pattern is not None:
            return self._latest_dlami(pattern, architecture(instance_type))
        return self._al2023(architecture(instance_type))

    def describe(self, image_id: str) -> ImageInfo:
        with self._lock:
            cached = self._described.get(image_id)
        if cached is not None:
            return cached
        response = self._caller.call(
            "ec2:DescribeImages", lambda: self._ec2.describe_images(ImageIds=[image_id])
        )
        images = response.get("Images") or []
        if not images:
            raise NotFoundError(
                f"image {image_id} does not exist or is not visible", operation="ec2:DescribeImages"
            )
        info = image_info(images[0])
        with self._lock:
            self._described[image_id] = info
        return info

    def _latest_dlami(self, pattern: str, arch: Architecture) -> ImageInfo:
        response = self._caller.call(
            "ec2:DescribeImages",
            lambda: self._ec2.describe_images(
                Owners=list(self._config.dlami_owners),
                Filters=[
                    {"Name": "name", "Values": [pattern]},
                    {"Name": "architecture", "Values": [arch.value]},
                    {"Name": "state", "Values": ["available"]},
                ],
            ),
        )
        best = newest_image(response.get("Images") or [])
        if best is None:
            raise NotFoundError(
                f"no Deep Learning AMI named {pattern!r} ({arch.value}) in {self._config.region}; "
                "set an AMI id or the DLAMI name pattern",
                operation="ec2:DescribeImages",
            )
        info = image_info(best)
        with self._lock:
            self._described[info.image_id] = info
        return info

    def _al2023(self, arch: Architecture) -> ImageInfo:
        name = self._config.al2023_parameter.format(arch=arch.value)
        response = self._caller.call("ssm:GetParameter", lambda: self._ssm.get_parameter(Name=name))
        value = response.get("Parameter", {}).get("Value")
        if not value:
            raise NotFoundError(f"SSM parameter {name} has no value", operation="ssm:GetParameter")
        return self.describe(str(value))
