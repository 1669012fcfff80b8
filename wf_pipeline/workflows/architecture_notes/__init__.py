"""The architecture notes workflow (architecture_notes_v1): docs/ARCHITECTURE.md for a repository root.

Everything specific to it lives here: payload schemas (``payloads``), what a source file
declares (``sources``: imports and entry points, per language), the per-file context
extract (``context_extract``), the deterministic analysis (``analysis``: module graph,
entry points, synthesis, verification), the markdown (``render``), its gates
(``gates``) and its offline turns (``offline``). ``plugin.register`` plugs them into the
generic registries. Its output file is declared by its profile (``outputs:``), not here.
"""
