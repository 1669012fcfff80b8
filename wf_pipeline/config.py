"""Former home of the settings; they live in `wf_pipeline.settings` now (kept for importers)."""

from wf_pipeline.settings import DEFAULT_HOME, EXECUTORS, SETTINGS_VARIABLES, Executor, Settings

__all__ = ["DEFAULT_HOME", "EXECUTORS", "SETTINGS_VARIABLES", "Executor", "Settings"]
