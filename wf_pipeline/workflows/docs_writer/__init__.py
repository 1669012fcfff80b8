"""The docs writer workflow (docs_writer_thread_v1): a README.md per directory, bottom-up.

Everything specific to it lives here: payload schemas (``payloads``), extraction per
language (``extract``), grounding of code spans (``grounding``), the evidence rule
(``evidence``), the offline verification (``verify``), the README structure and
renderer (``render``), its gates (``gates``), its offline turns (``offline``) and its
output sink (``sink``). ``plugin.register`` plugs them into the generic registries.
"""
