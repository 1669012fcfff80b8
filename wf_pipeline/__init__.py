"""wf_pipeline: declarative multi-turn agent workflows over codebases, on Dagster."""

__version__ = "0.1.0"
