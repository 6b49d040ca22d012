"""Everything the AWS provider needs, in one frozen value built by the bot's settings layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from providers.retry import RetryPolicy

CLOUDWATCH_STATISTICS = frozenset({"Maximum", "Average", "Minimum", "Sum", "SampleCount"})

# Name patterns of the AWS Deep Learning AMIs the provider picks for accelerated families (owner "amazon",
# newest CreationDate wins). A configured `ami_id` always takes precedence.
DLAMI_NVIDIA_X86_64 = "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) *"
DLAMI_NVIDIA_ARM64 = "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) *"
DLAMI_NEURON = "Deep Learning AMI Neuron (Ubuntu 22.04) *"
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"


@dataclass(frozen=True)
class AwsConfig:
    """AWS provider settings. Defaults follow DESIGN §2/§5; every field is overridable from configuration.

    `endpoint_url` overrides every client's endpoint; when it is None, botocore's own resolution applies,
    which honours `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`) from the environment or the profile.

    The GPU metric is optional because EC2 publishes none: it comes from the CloudWatch agent (e.g. namespace
    "CWAgent", name "nvidia_smi_utilization_gpu"). GetMetricData matches dimensions exactly, so the agent
    must aggregate that metric by `gpu_metric_dimension` alone (`aggregation_dimensions`).
    """

    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = None
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    # Launch
    ami_id: str | None = None
    gpu_root_volume_gb: int = 100
    default_root_volume_gb: int = 30
    root_volume_type: str = "gp3"
    iam_instance_profile: str | None = None  # name or ARN
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    dlami_owners: tuple[str, ...] = ("amazon",)
    dlami_name_nvidia_x86_64: str = DLAMI_NVIDIA_X86_64
    dlami_name_nvidia_arm64: str = DLAMI_NVIDIA_ARM64
    dlami_name_neuron: str = DLAMI_NEURON
    al2023_parameter: str = AL2023_PARAMETER  # `{arch}` becomes x86_64 or arm64

    # Listing: DescribeInstances MaxResults (EC2 accepts 5-1000; larger pages mean fewer requests)
    describe_page_size: int = 1000

    # Quota guard on running managed instances
    quota_warn_at: int = 10
    quota_refuse_at: int = 50

    # Utilisation
    cpu_statistic: str = "Maximum"
    gpu_metric_namespace: str | None = None
    gpu_metric_name: str | None = None
    gpu_metric_dimension: str = "InstanceId"

    # Run command
    command_timeout_seconds: int = 3600

    # Prices
    pricing_region: str = "us-east-1"  # the Pricing API answers only in a few regions
    # False: never call the Pricing API (air-gapped accounts, emulators); the cache and table serve.
    use_pricing_api: bool = True
    price_ttl: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if not self.region:
            raise ValueError("region must not be empty")
        if self.connect_timeout_seconds <= 0 or self.read_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive")
        if self.gpu_root_volume_gb < 8 or self.default_root_volume_gb < 8:
            raise ValueError("root volumes must be at least 8 GB")
        if not 5 <= self.describe_page_size <= 1000:
            raise ValueError("describe_page_size must be within 5..1000")
        if not 0 < self.quota_warn_at <= self.quota_refuse_at:
            raise ValueError("need 0 < quota_warn_at <= quota_refuse_at")
        if self.cpu_statistic not in CLOUDWATCH_STATISTICS:
            raise ValueError(f"cpu_statistic must be one of {sorted(CLOUDWATCH_STATISTICS)}")
        if (self.gpu_metric_namespace is None) != (self.gpu_metric_name is None):
            raise ValueError("set both gpu_metric_namespace and gpu_metric_name, or neither")
        if self.command_timeout_seconds < 1:
            raise ValueError("command_timeout_seconds must be positive")
        if self.price_ttl <= timedelta(0):
            raise ValueError("price_ttl must be positive")
        if "{arch}" not in self.al2023_parameter:
            raise ValueError("al2023_parameter must contain '{arch}'")

    @property
    def gpu_metric_enabled(self) -> bool:
        return self.gpu_metric_namespace is not None and self.gpu_metric_name is not None
