"""A deterministic sample ProxyWhirl deployment, for demos, tests and benchmarks."""

from export_assets.lib.sample.deployment import SampleDeployment, write_sample_deployment
from export_assets.lib.sample.hostile import HOSTILE_STRINGS

__all__ = ["HOSTILE_STRINGS", "SampleDeployment", "write_sample_deployment"]
