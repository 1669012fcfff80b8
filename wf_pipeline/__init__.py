"""wf_pipeline: declarative multi-turn agent workflows over codebases, on Dagster."""

from importlib.metadata import PackageNotFoundError, version

# The version is written once, in pyproject.toml; installs (wheel or editable) carry it as metadata.
try:
    __version__ = version("wf_pipeline")
except PackageNotFoundError:  # a source tree imported without being installed has no metadata
    __version__ = "0+unknown"
