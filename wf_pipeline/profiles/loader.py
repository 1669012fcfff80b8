"""Layered profile loading and validation.

Profiles live in ``<layer root>/profiles/*.yaml`` (or ``*.yml``). Layers are searched
in order workspace, user, built-in; the first layer that defines a workflow_id wins.
Every profile in every layer is fully validated, so a broken file is reported even
when a higher layer shadows it. Each way a profile can be wrong has its own code.
A profile's ``family``, ``extends`` and ``include`` are resolved on its raw YAML first
(`wf_pipeline.profiles.inheritance`), bases and fragments looked up through the same layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from wf_pipeline.builtin import PROFILE_DIR, builtin_root
from wf_pipeline.errors import (
    CATALOGUE,
    PROFILE_ARTIFACT_POLICY_CONFLICT,
    PROFILE_DUPLICATE_GATE_ID,
    PROFILE_DUPLICATE_OUTPUT_TYPE,
    PROFILE_DUPLICATE_SEQ,
    PROFILE_DUPLICATE_TURN_ID,
    PROFILE_DUPLICATE_WORKFLOW_ID,
    PROFILE_GATE_RULE_RANGE,
    PROFILE_GATE_RULE_TYPE,
    PROFILE_GATE_RULE_UNKNOWN,
    PROFILE_NOT_FOUND,
    PROFILE_OUTPUT_DUPLICATE_PATH,
    PROFILE_OUTPUT_FORMAT_MISMATCH,
    PROFILE_PARSE_ERROR,
    PROFILE_SCHEMA_INVALID,
    PROFILE_TEMPLATE_SYNTAX,
    PROFILE_TEMPLATE_UNDEFINED,
    PROFILE_UNDECLARED_GATE,
    PROFILE_UNKNOWN_FINAL_ARTIFACT_TYPE,
    PROFILE_UNKNOWN_GATE_TYPE,
    PROFILE_UNKNOWN_TURN,
    PROFILE_UNRESOLVED_INPUT_REF,
    PROFILE_UNRESOLVED_PROMPT_REF,
    PROFILE_WHEN_FINAL_TURN,
    ErrorCode,
    ProfileError,
    WfError,
    lookup,
)
from wf_pipeline.gates import gate_type, gate_types, rule_problems, rules_digest
from wf_pipeline.gates.registry import rules_overrides_digest
from wf_pipeline.metadata.canonical import canonical_json, digest, is_digest, sha256_hex
from wf_pipeline.metadata.payloads import output_model
from wf_pipeline.metadata.yaml_documents import YamlFileProblem, read_yaml_file
from wf_pipeline.profiles.activations import catalog_activation_problems, check_activation_entries
from wf_pipeline.profiles.budget import check_prompt_budgets
from wf_pipeline.profiles.encryption import EncryptionPolicy, resolve_encryption
from wf_pipeline.profiles.expressions import Expression, FieldKind
from wf_pipeline.profiles.expressions import validate as validate_expression
from wf_pipeline.profiles.inheritance import Resolution, resolve_profile_document
from wf_pipeline.profiles.layers import Layer, LayerName, load_layered
from wf_pipeline.profiles.redaction import RedactionPolicy, resolve_redaction
from wf_pipeline.profiles.render import (
    RENDER_VARIABLES,
    PromptTemplate,
    referenced_names,
    template_from_text,
)
from wf_pipeline.profiles.retention import RetentionPolicy, resolve_retention
from wf_pipeline.profiles.retry import RetryPolicy, resolve_retry
from wf_pipeline.profiles.schema import CONTEXT_INPUT, GateSpec, Profile, TurnSpec
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.settings import Settings

log = product_logger(__name__)

ArtifactReader = Callable[[str], bytes]
DEFAULT_USER_CONFIG_DIR = "~/.config/wf"
# Length of the digest prefix in code versions: short enough to read, long enough to differ.
CODE_VERSION_HEX = 12


@dataclass(frozen=True)
class LoadedProfile:
    """A validated profile with its prompt templates resolved, and where it was loaded from.

    Attributes:
        profile: the validated profile.
        layer: the layer that defined it.
        source_path: its YAML file.
        templates: turn_id -> the user prompt template.
        system_prompts: turn_id -> the system prompt template, or None.
        snapshot_id: the CAS artifact of the profile snapshot it was rebuilt from
            (`wf_pipeline.profiles.snapshot`, a thread's pinned profile); None when it was
            loaded from its file.
        resolution: its family, the bases and fragments it was resolved from and where each
            field came from (`wf_pipeline.profiles.inheritance`); None when rebuilt from a
            snapshot, which holds the resolved profile only.
    """

    profile: Profile
    layer: LayerName
    source_path: Path
    templates: dict[str, PromptTemplate]  # turn_id -> user prompt template
    system_prompts: dict[str, PromptTemplate | None]  # turn_id -> system prompt template
    snapshot_id: str | None = None
    resolution: Resolution | None = None

    @property
    def workflow_id(self) -> str:
        """The profile's workflow id."""
        return self.profile.workflow_id

    @property
    def retention(self) -> RetentionPolicy:
        """The profile's resolved retention windows (`wf_pipeline.profiles.retention`); checked at load."""
        return resolve_retention(
            self.profile.retention,
            workflow_id=self.workflow_id,
            layer=self.layer,
            path=str(self.source_path),
        )

    @property
    def encryption(self) -> EncryptionPolicy:
        """The profile's resolved encryption levels (`wf_pipeline.profiles.encryption`); checked at load."""
        return resolve_encryption(
            self.profile.encryption,
            workflow_id=self.workflow_id,
            layer=self.layer,
            path=str(self.source_path),
        )

    @property
    def redaction(self) -> RedactionPolicy:
        """The profile's resolved redaction preset and opt-outs (`wf_pipeline.profiles.redaction`); checked at load."""
        return resolve_redaction(
            self.profile.redaction,
            workflow_id=self.workflow_id,
            layer=self.layer,
            path=str(self.source_path),
        )

    @functools.cached_property
    def gate_rules_digests(self) -> dict[str, str]:
        """gate_id -> `wf_pipeline.gates.rules_digest` of the gate's declaration (resolved rules).

        Rules were validated at load, so this raises nothing for a loaded profile.
        """
        return {gate.gate_id: rules_digest(gate) for gate in self.profile.gates}

    @functools.cached_property
    def gate_threshold_digests(self) -> dict[str, str]:
        """gate_id -> `wf_pipeline.gates.registry.rules_overrides_digest`, for gates that set a rule off its default."""
        found = {gate.gate_id: rules_overrides_digest(gate) for gate in self.profile.gates}
        return {gate_id: value for gate_id, value in found.items() if value is not None}

    def branch(self, turn_id: str) -> tuple[Expression, dict[str, FieldKind]] | None:
        """The parsed ``when:`` of ``turn_id`` and the kind of each field it reads, or None.

        Checked at load (`check_branches`), so this raises nothing for a loaded profile
        whose plug-ins are registered.

        Raises:
            KeyError: the profile has no such turn.
        """
        turn = self.profile.turn(turn_id)
        if turn.when is None:
            return None
        return _branch_of(self.profile, turn)

    def _undeclared_retry(self, turn_id: str) -> RetryPolicy:
        # The policy the turn would have without a ``retry`` block.
        turn = self.profile.turn(turn_id)
        return resolve_retry(
            None,
            retry_limit=turn.retry_limit,
            retry_limit_given="retry_limit" in turn.model_fields_set,
            max_turn_retries=self.profile.thread_policy.max_turn_retries,
            turn_id=turn_id,
            path=str(self.source_path),
        )

    def retry_policy(self, turn_id: str) -> RetryPolicy:
        """The resolved retry policy of ``turn_id`` (`wf_pipeline.profiles.retry`); checked at load.

        Raises:
            KeyError: the profile has no such turn.
        """
        turn = self.profile.turn(turn_id)
        return resolve_retry(
            turn.retry,
            retry_limit=turn.retry_limit,
            retry_limit_given="retry_limit" in turn.model_fields_set,
            max_turn_retries=self.profile.thread_policy.max_turn_retries,
            turn_id=turn_id,
            path=str(self.source_path),
        )

    def _turn_prompt_digests(self, turn_id: str) -> dict[str, Any]:
        # The turn's prompts, the thresholds of the gate that checks it (a changed threshold
        # changes the verdicts) and its declared retry policy (it decides the recorded
        # sequence of attempts). Rules at their defaults and an undeclared policy add
        # nothing, so a profile setting neither keeps its code versions (and threads).
        system = self.system_prompts.get(turn_id)
        parts: dict[str, Any] = {
            "prompt": self.templates[turn_id].digest,
            "system": system.digest if system else None,
        }
        gate_id = self.profile.turn(turn_id).gate_id
        if gate_id in self.gate_threshold_digests:
            parts["gate_rules"] = self.gate_threshold_digests[gate_id]
        when = self.profile.turn(turn_id).when
        if when is not None:
            # A changed condition changes which turns run; an unconditional turn adds nothing.
            parts["when"] = when
        policy = self.retry_policy(turn_id)
        if policy.declared and policy.to_json() != self._undeclared_retry(turn_id).to_json():
            # Only a policy that differs from the turn's default: ``retry: {}`` or a block
            # spelling out the defaults keeps the code version, as gate rules at their defaults do.
            parts["retry"] = policy.to_json()
        return parts

    @property
    def code_version(self) -> str:
        """Profile version plus a digest of every turn's prompt templates, gate thresholds and retry policy.

        Changing any prompt's text, setting a gate rule to another value (a rule at its
        default adds nothing) or a turn's ``retry`` block changes it; nothing else about
        where or how the profile was loaded does, and neither do its budgets or its
        ``retention`` block.
        """
        by_turn = {turn_id: self._turn_prompt_digests(turn_id) for turn_id in sorted(self.templates)}
        return f"{self.profile.version}-{sha256_hex(canonical_json(by_turn))[:CODE_VERSION_HEX]}"

    def turn_code_version(self, turn_id: str) -> str:
        """Profile version plus a digest of this turn's own prompt templates, its gate's thresholds and its retry policy.

        Args:
            turn_id: a turn of this profile.

        Returns:
            ``<version>-<12 hex>``; it changes only when this turn's prompt texts, the
            thresholds of its gate (`gate_threshold_digests`) or its ``retry`` block change.

        Raises:
            ProfileError: ``PROFILE_UNKNOWN_TURN`` (figure: turn_id) when the profile has no
                such turn.
        """
        if turn_id not in self.templates:
            raise ProfileError(
                PROFILE_UNKNOWN_TURN, f"{self.workflow_id} has no turn {turn_id!r}", turn_id=turn_id
            )
        turn_digest = sha256_hex(canonical_json(self._turn_prompt_digests(turn_id)))
        return f"{self.profile.version}-{turn_digest[:CODE_VERSION_HEX]}"


@dataclass(frozen=True)
class ShadowedProfile:
    """A profile a higher layer overrides; listed so users can see what they replaced."""

    workflow_id: str
    layer: LayerName
    source_path: Path


@dataclass(frozen=True)
class ProfileProblem:
    """A profile file that did not load, kept apart so the other profiles still load.

    Attributes:
        path: the file.
        layer: the layer it sits in.
        error: why it did not load (a ``PROFILE_*`` code, its message names the file).
    """

    path: Path
    layer: LayerName
    error: ProfileError

    @property
    def message(self) -> str:
        """The error's message, led by the profile file when the message does not name it
        (a template's error names the template, not the profile that uses it)."""
        text = self.error.message
        return text if str(self.path) in text else f"{self.path}: {text}"

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "layer", "code", "message"}``, the shape ``wf profiles validate --json`` lists;
        the message always names the profile file."""
        return {
            "path": str(self.path),
            "layer": self.layer,
            "code": self.error.code,
            "message": self.message,
        }


@dataclass(frozen=True)
class ProfileCatalog:
    """The loaded profiles by workflow id, the ones higher layers shadow, and the files that failed.

    A file that fails to load is one entry of ``problems``; it never hides the other
    profiles of its layer or of any other layer.
    """

    profiles: dict[str, LoadedProfile]
    shadowed: tuple[ShadowedProfile, ...] = field(default=())
    problems: tuple[ProfileProblem, ...] = field(default=())

    def get(self, workflow_id: str) -> LoadedProfile:
        """The loaded profile of ``workflow_id``.

        Args:
            workflow_id: the workflow id to look up.

        Returns:
            Its `LoadedProfile`.

        Raises:
            ProfileError: ``PROFILE_NOT_FOUND`` (figures: workflow_id, the files that failed
                to load) when no layer defines it; the message names those files, one of
                which may be the profile meant.
        """
        try:
            return self.profiles[workflow_id]
        except KeyError:
            failed = [f"{problem.path} ({problem.error.code})" for problem in self.problems]
            raise ProfileError(
                PROFILE_NOT_FOUND,
                f"no profile defines workflow_id {workflow_id!r}"
                + (f"; {len(failed)} profile file(s) failed to load: {', '.join(failed)}" if failed else ""),
                workflow_id=workflow_id,
                failed_files=[str(problem.path) for problem in self.problems],
            ) from None

    def all(self) -> list[LoadedProfile]:
        """Every loaded profile, in workflow id order."""
        return [self.profiles[workflow_id] for workflow_id in sorted(self.profiles)]


# --- layers ------------------------------------------------------------------------


def default_layers(
    settings: Settings, workspace_dir: Path, env: Mapping[str, str] | None = None
) -> list[Layer]:
    """Workspace, user config (``WF_CONFIG_DIR`` or ~/.config/wf), built-in; without repeats.

    The repository root is often both the workspace and the built-in root; a root that
    equals an earlier layer's is skipped so its profiles are not loaded twice.
    """
    configured = settings.config_dir if env is None else env.get("WF_CONFIG_DIR")
    user_root = Path(configured or DEFAULT_USER_CONFIG_DIR)
    candidates: list[Layer] = [
        Layer("workspace", workspace_dir),
        Layer("user", user_root),
        Layer("builtin", settings.builtin_root),
    ]
    layers: list[Layer] = []
    seen: set[Path] = set()
    for layer in candidates:
        root = layer.root.expanduser().resolve()
        if root not in seen:
            seen.add(root)
            layers.append(Layer(layer.name, root))
    return layers


def load_catalog(
    layers: Iterable[Layer], artifact_reader: ArtifactReader | None = None, *, warn: bool = True
) -> ProfileCatalog:
    """Load and validate every profile of every layer; the first layer to define an id wins.

    A file that fails to load (not YAML, schema-invalid, a template that does not parse...)
    becomes one `ProfileProblem` and one logged warning (``CODE: message``, naming the
    file); every other file of every layer still loads. When two files of one layer define
    the same workflow id, the first by path is kept and the second is the problem
    (``PROFILE_DUPLICATE_WORKFLOW_ID``, figures: workflow_id, layer, paths). The winners'
    activation graph is checked last (`wf_pipeline.profiles.activations`): a profile that
    activates an unknown workflow (``PROFILE_ACTIVATION_UNKNOWN_WORKFLOW``) or sits on an
    activation cycle (``PROFILE_ACTIVATION_CYCLE``, figure: cycle) is a problem too.

    Args:
        layers: the layers, highest precedence first (see `default_layers`); every profile's
            bases and fragments are looked up in them in the same order.
        artifact_reader: reads ``sha256:`` prompt refs from the CAS; None when profiles name
            only files.
        warn: log each bad file as a warning; False for a caller that reports the problems
            itself (``wf profiles validate`` lists them), so no file is reported twice.

    Returns:
        The `ProfileCatalog`: the winning profile per workflow id, the ones later layers
        define too as shadowed, and the files that failed as problems (path order per
        layer). Raises nothing for a bad file.
    """
    layers = list(layers)

    def duplicate(path: Path, layer: Layer, earlier: LoadedProfile, loaded: LoadedProfile) -> ProfileError:
        return ProfileError(
            PROFILE_DUPLICATE_WORKFLOW_ID,
            f"{path}: workflow_id {loaded.workflow_id!r} is already defined in the "
            f"{layer.name} layer by {earlier.source_path}",
            workflow_id=loaded.workflow_id,
            layer=layer.name,
            paths=[str(earlier.source_path), str(path)],
        )

    found = load_layered(
        layers,
        Layer.profile_files,
        lambda path, layer: load_profile_file(path, layer, artifact_reader, search=layers),
        lambda loaded: loaded.workflow_id,
        duplicate,
    )
    winners = found.winners
    shadowed = [ShadowedProfile(wid, name, loaded.source_path) for wid, name, loaded in found.shadowed]
    problems: list[ProfileProblem] = []
    for path, name, exc in found.problems:
        problem = ProfileProblem(path, name, exc)
        problems.append(problem)
        if warn:
            log.warning("%s: %s (the other profiles still load)", exc.code, problem.message)
    # The activation graph spans profiles: checked once the winners are known.
    activation_problems = catalog_activation_problems(
        {wid: loaded.profile for wid, loaded in winners.items()},
        {wid: str(loaded.source_path) for wid, loaded in winners.items()},
    )
    for workflow_id, exc in sorted(activation_problems.items()):
        loaded = winners.pop(workflow_id)
        problem = ProfileProblem(loaded.source_path, loaded.layer, exc)
        problems.append(problem)
        if warn:
            log.warning("%s: %s (the other profiles still load)", exc.code, problem.message)
    return ProfileCatalog(profiles=winners, shadowed=tuple(shadowed), problems=tuple(problems))


# --- one file ----------------------------------------------------------------------


def load_profile_file(
    path: Path,
    layer: Layer | LayerName | None = None,
    artifact_reader: ArtifactReader | None = None,
    *,
    search: Sequence[Layer] | None = None,
) -> LoadedProfile:
    """Load and fully validate one profile file.

    ``layer`` may be a full Layer, or just a layer name (default "workspace") whose
    root is then the folder holding the file's ``profiles/`` directory (or the file's
    own folder otherwise), which is what ``wf profiles validate FILE`` needs.

    Args:
        path: the profile's YAML file.
        layer: the layer it belongs to, or a layer name.
        artifact_reader: reads ``sha256:`` prompt refs from the CAS; None when it names
            only files.
        search: the layers its bases and fragments are looked up in, highest precedence
            first; None: its own layer, then the package's built-in layer
            (`wf_pipeline.builtin.builtin_root`), so a lone copy of a built-in profile still
            finds the built-in bases it extends.

    Returns:
        The `LoadedProfile`, with its bases and fragments resolved (``resolution``) and every
        turn's prompt templates resolved, each against the layer of the document that
        declared the turn.

    Raises:
        ProfileError: ``PROFILE_PARSE_ERROR`` (unreadable or not YAML, or a key given twice;
            figure: line); ``PROFILE_SCHEMA_INVALID`` or a schema validator's own code
            (``PROFILE_FAILURE_POLICY_CONFLICT``, ``PROFILE_DEDUPE_KEY_INCOMPLETE``,
            ``PROFILE_UNKNOWN_DEDUPE_FIELD``...; figure: fields); ``PROFILE_DUPLICATE_TURN_ID``,
            ``PROFILE_DUPLICATE_SEQ``, ``PROFILE_DUPLICATE_OUTPUT_TYPE``,
            ``PROFILE_DUPLICATE_GATE_ID`` (figure: repeated); ``PROFILE_UNKNOWN_GATE_TYPE``,
            ``PROFILE_GATE_RULE_UNKNOWN``, ``PROFILE_GATE_RULE_TYPE``, ``PROFILE_GATE_RULE_RANGE``
            (figures: gate_id, rule, value) for a gate's ``rules`` its gate type refuses,
            ``PROFILE_UNDECLARED_GATE``, ``PROFILE_UNRESOLVED_INPUT_REF``,
            ``PROFILE_UNKNOWN_FINAL_ARTIFACT_TYPE``, ``PROFILE_ARTIFACT_POLICY_CONFLICT``;
            ``PROFILE_UNRESOLVED_PROMPT_REF``, ``PROFILE_TEMPLATE_SYNTAX`` and
            ``PROFILE_TEMPLATE_UNDEFINED`` for its prompt templates;
            ``PROFILE_BUDGET_TOO_SMALL`` when a turn's worst-case prompt is over
            ``max_prompt_bytes`` (`wf_pipeline.profiles.budget`); ``PROFILE_RETENTION_INVALID``
            (figure: field) for a bad ``retention`` block (`wf_pipeline.profiles.retention`);
            ``PROFILE_ENCRYPTION_INVALID`` (figure: field) for a bad ``encryption`` block;
            ``PROFILE_REDACTION_INVALID`` (figure: field) for a bad ``redaction`` block
            (`wf_pipeline.profiles.redaction`); ``PROFILE_RETRY_INVALID``,
            ``PROFILE_RETRY_UNKNOWN_CODE``, ``PROFILE_RETRY_CONFLICT`` (figures: turn_id and
            field, code, or the figures that disagree) for a bad turn ``retry`` block
            (`wf_pipeline.profiles.retry`); ``PROFILE_WHEN_*`` for a turn's ``when:``
            (`check_branches`); ``PROFILE_ACTIVATION_UNKNOWN_CONDITION``,
            ``PROFILE_ACTIVATION_BAD_TARGET``, ``PROFILE_ACTIVATION_DUPLICATE`` for a bad
            ``activates:`` entry; the inheritance codes of
            `wf_pipeline.profiles.inheritance.resolve_profile_document`
            (``PROFILE_INHERITANCE_CYCLE``, ``PROFILE_BASE_NOT_FOUND``,
            ``PROFILE_FRAGMENT_NOT_FOUND``, ``PROFILE_EXTENDS_NON_BASE``,
            ``PROFILE_BASE_INVALID``, ``PROFILE_FRAGMENT_INVALID``, ``PROFILE_TURN_ID_CONFLICT``,
            ``PROFILE_GATE_ID_CONFLICT``, ``PROFILE_FAMILY_MISMATCH``). Every error carries the
            file's path.
    """
    path = Path(path)
    if not isinstance(layer, Layer):
        parent = path.resolve().parent
        layer = Layer(layer or "workspace", parent.parent if parent.name == PROFILE_DIR else parent)
    raw, resolution = resolve_profile_document(_read(path), path, layer, _search_layers(layer, search))
    profile = _validate(path, raw)
    where = {"path": str(path), "workflow_id": profile.workflow_id}
    _check_structure(profile, where)
    check_branches(profile, where)
    resolve_retention(profile.retention, workflow_id=profile.workflow_id, layer=layer.name, path=str(path))
    resolve_encryption(profile.encryption, workflow_id=profile.workflow_id, layer=layer.name, path=str(path))
    resolve_redaction(profile.redaction, workflow_id=profile.workflow_id, layer=layer.name, path=str(path))
    templates: dict[str, PromptTemplate] = {}
    system_prompts: dict[str, PromptTemplate | None] = {}
    for turn in profile.ordered_turns():
        # A turn from a base or fragment reads its prompts from that file's layer.
        turn_layer = resolution.turn_layer(turn.turn_id, layer) if resolution is not None else layer
        templates[turn.turn_id] = _resolve_template(turn.prompt_ref, turn, turn_layer, artifact_reader, where)
        system_prompts[turn.turn_id] = (
            _resolve_template(turn.system_prompt_ref, turn, turn_layer, artifact_reader, where)
            if turn.system_prompt_ref is not None
            else None
        )
    check_prompt_budgets(profile, templates, system_prompts, where)
    for turn in profile.ordered_turns():
        resolve_retry(
            turn.retry,
            retry_limit=turn.retry_limit,
            retry_limit_given="retry_limit" in turn.model_fields_set,
            max_turn_retries=profile.thread_policy.max_turn_retries,
            turn_id=turn.turn_id,
            path=str(path),
            timeout_ms=turn.timeout_ms,
        )
    return LoadedProfile(
        profile=profile,
        layer=layer.name,
        source_path=path,
        templates=templates,
        system_prompts=system_prompts,
        resolution=resolution,
    )


def _search_layers(layer: Layer, search: Sequence[Layer] | None) -> list[Layer]:
    """Where a profile's bases and fragments are looked up (see `load_profile_file`)."""
    if search is not None:
        return list(search)
    builtin = Layer("builtin", builtin_root())
    return [layer] if builtin.root.resolve() == layer.root.resolve() else [layer, builtin]


def _read(path: Path) -> Any:
    """The YAML document of a profile file, as read (``PROFILE_PARSE_ERROR`` otherwise)."""
    try:
        raw = read_yaml_file(path)
    except YamlFileProblem as exc:
        raise ProfileError(
            PROFILE_PARSE_ERROR, f"{path} {exc.reason}", path=str(path), line=exc.line
        ) from None
    return raw


def _validate(path: Path, raw: Any) -> Profile:
    """The `Profile` of a resolved profile mapping (the schema's codes otherwise)."""
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise _schema_error(path, exc) from None


def _schema_error(path: Path, exc: ValidationError) -> ProfileError:
    """The ProfileError for a schema violation.

    Validators in schema.py that have a code of their own raise it as the pydantic error
    type (``PROFILE_...``). When every error of the file carries the same such code, that
    code is reported with the validator's figures; otherwise ``PROFILE_SCHEMA_INVALID``.
    Either way ``fields`` lists the dotted path of every offending field.
    """
    errors = exc.errors()
    fields = sorted({".".join(str(part) for part in err["loc"]) or "<root>" for err in errors})
    coded = [err for err in errors if err["type"] in CATALOGUE]
    if coded and len(coded) == len(errors) and len({err["type"] for err in coded}) == 1:
        first = coded[0]
        return ProfileError(
            lookup(first["type"]),
            f"{path}: {', '.join(fields)}: {first['msg']}",
            path=str(path),
            fields=fields,
            **(first.get("ctx") or {}),
        )
    return ProfileError(
        PROFILE_SCHEMA_INVALID,
        f"{path} does not match the profile schema at: {', '.join(fields)}",
        path=str(path),
        fields=fields,
    )


def _repeated(values: Iterable[Any]) -> list[Any]:
    seen: set[Any] = set()
    repeated: list[Any] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


def _check_structure(profile: Profile, where: dict[str, str]) -> None:
    """Cross-references inside the profile, each failure with its own code."""
    turns = profile.ordered_turns()
    uniqueness = (
        (PROFILE_DUPLICATE_TURN_ID, "turn_id", [turn.turn_id for turn in turns]),
        (PROFILE_DUPLICATE_SEQ, "seq", [turn.seq for turn in turns]),
        (PROFILE_DUPLICATE_OUTPUT_TYPE, "output_type", [turn.output_type for turn in turns]),
        (PROFILE_DUPLICATE_GATE_ID, "gate_id", [gate.gate_id for gate in profile.gates]),
    )
    for code, name, values in uniqueness:
        repeated = _repeated(values)
        if repeated:
            raise ProfileError(
                code, f"{where['path']}: {name} repeated: {repeated}", **where, repeated=repeated
            )

    known_types = gate_types()
    for gate in profile.gates:
        if gate.gate_type not in known_types:
            raise ProfileError(
                PROFILE_UNKNOWN_GATE_TYPE,
                f"{where['path']}: gate {gate.gate_id} has unknown gate_type {gate.gate_type!r}",
                **where,
                gate_id=gate.gate_id,
                gate_type=gate.gate_type,
            )
        _check_gate_rules(gate, where)

    declared_gates = {gate.gate_id for gate in profile.gates}
    produced: set[str] = {CONTEXT_INPUT}
    for turn in turns:
        if turn.gate_id is not None and turn.gate_id not in declared_gates:
            raise ProfileError(
                PROFILE_UNDECLARED_GATE,
                f"{where['path']}: turn {turn.turn_id} names undeclared gate {turn.gate_id!r}",
                **where,
                turn_id=turn.turn_id,
                gate_id=turn.gate_id,
            )
        for input_ref in turn.input_refs:
            if input_ref not in produced:
                raise ProfileError(
                    PROFILE_UNRESOLVED_INPUT_REF,
                    f"{where['path']}: turn {turn.turn_id} reads {input_ref!r}, which no earlier turn produces",
                    **where,
                    turn_id=turn.turn_id,
                    input_ref=input_ref,
                )
        produced.add(turn.output_type)

    final = profile.final_artifact_type
    if final is not None and final not in produced - {CONTEXT_INPUT}:
        raise ProfileError(
            PROFILE_UNKNOWN_FINAL_ARTIFACT_TYPE,
            f"{where['path']}: final_artifact_type {final!r} is no turn's output_type",
            **where,
            final_artifact_type=final,
        )
    _check_artifact_policy(profile, where)
    check_activation_entries(profile, where)
    _check_outputs(profile, where)


# A declared output's format -> the final turn output formats it can hold.
_OUTPUT_FORMAT_HOLDS = {"markdown": ("markdown",), "text": ("markdown",), "json": ("json",)}


def _check_outputs(profile: Profile, where: dict[str, str]) -> None:
    """Declared outputs: one path each, and a format that can hold the final turn's output.

    Paths and formats are checked by the schema (``PROFILE_OUTPUT_PATH_*``,
    ``PROFILE_OUTPUT_UNKNOWN_FORMAT``); these two relate outputs to each other and to the turns.
    """
    outputs = profile.outputs or []
    # Case-insensitively: README.md and readme.md are one file on macOS and Windows.
    first_of: dict[str, str] = {}
    for output in outputs:
        first = first_of.setdefault(output.path.casefold(), output.path)
        if first is not output.path:
            raise ProfileError(
                PROFILE_OUTPUT_DUPLICATE_PATH,
                f"{where['path']}: outputs {first!r} and {output.path!r} are one file",
                **where,
                repeated=[first],
                paths=[first, output.path],
            )
    final_type = profile.final_artifact_type or profile.ordered_turns()[-1].output_type
    final_turn = next(turn for turn in profile.turns if turn.output_type == final_type)
    for output in outputs:
        if final_turn.output_format not in _OUTPUT_FORMAT_HOLDS[output.format]:
            raise ProfileError(
                PROFILE_OUTPUT_FORMAT_MISMATCH,
                f"{where['path']}: output {output.path!r} is {output.format}, but the final turn "
                f"{final_turn.turn_id} writes {final_turn.output_format}",
                **where,
                output_path=output.path,
                format=output.format,
                output_format=final_turn.output_format,
            )


def _rule_problem_code(kind: str) -> ErrorCode:
    # One code per kind of problem `wf_pipeline.gates.rule_problems` reports.
    return {
        "unknown": PROFILE_GATE_RULE_UNKNOWN,
        "type": PROFILE_GATE_RULE_TYPE,
        "range": PROFILE_GATE_RULE_RANGE,
    }[kind]


def _check_gate_rules(gate: GateSpec, where: dict[str, str]) -> None:
    """Validate a gate's ``rules`` against its gate type's typed rules model (docs/profiles.md).

    Raises:
        ProfileError: for the first offending rule (by name): ``PROFILE_GATE_RULE_UNKNOWN``
            (a rule the gate type does not declare), ``PROFILE_GATE_RULE_TYPE`` (wrong type,
            or a required rule missing) or ``PROFILE_GATE_RULE_RANGE`` (outside its bounds);
            figures: path, workflow_id, gate_id, gate_type, rule, value, expected.
    """
    problems = rule_problems(gate_type(gate.gate_type).rules, gate.rules)
    if not problems:
        return
    first = problems[0]
    raise ProfileError(
        _rule_problem_code(first.kind),
        f"{where['path']}: gate {gate.gate_id} ({gate.gate_type}) rule {first.rule!r}"
        + (f" = {first.value}" if first.value is not None else "")
        + f": {first.expected}",
        **where,
        gate_id=gate.gate_id,
        gate_type=gate.gate_type,
        rule=first.rule,
        value=first.value,
        expected=first.expected,
    )


def _check_artifact_policy(profile: Profile, where: dict[str, str]) -> None:
    """Reject an artifact policy that would leave unstored bytes something reads back.

    Raises:
        ProfileError: ``PROFILE_ARTIFACT_POLICY_CONFLICT`` with ``field`` and, per output
            type or turn id, why it must be stored.
    """
    policy = profile.artifact_policy
    turns = profile.ordered_turns()
    if not policy.store_output:
        final = profile.final_artifact_type or turns[-1].output_type
        needed: dict[str, list[str]] = {}
        for turn in turns:
            readers = [f"read by turn {t.turn_id}" for t in turns if turn.output_type in t.input_refs]
            final_use = ["the final output"] if turn.output_type == final else []
            # Even an output nothing reads is how a completed turn is recognised on reuse.
            needed[turn.output_type] = readers + final_use or ["read back to reuse the completed turn"]
        raise ProfileError(
            PROFILE_ARTIFACT_POLICY_CONFLICT,
            f"{where['path']}: store_output: false cannot be honoured; every output is read back: "
            + "; ".join(f"{output} ({', '.join(why)})" for output, why in needed.items()),
            **where,
            field="artifact_policy.store_output",
            needed=needed,
        )
    readers = [turn.turn_id for turn in turns if CONTEXT_INPUT in turn.input_refs]
    if not policy.store_context_payload and readers:
        raise ProfileError(
            PROFILE_ARTIFACT_POLICY_CONFLICT,
            f"{where['path']}: store_context_payload: false cannot be honoured; turns {readers} read "
            "the context snapshot, which later turns, retries and resumes read back",
            **where,
            field="artifact_policy.store_context_payload",
            needed={CONTEXT_INPUT: [f"read by turn {turn_id}" for turn_id in readers]},
        )


def _read_ref(ref: str, layer: Layer, artifact_reader: ArtifactReader | None) -> bytes | None:
    """Bytes behind a prompt ref, or None when it does not resolve."""
    if ref.startswith("sha256:"):
        if artifact_reader is None or not is_digest(ref):
            return None
        try:
            data = artifact_reader(ref)
        except (WfError, LookupError, OSError):
            return None
        # Artifact ids hash canonical bytes; anything else under this id is not the prompt.
        return data if digest(data) == ref else None
    relative = PurePosixPath(ref)
    if relative.is_absolute() or ".." in relative.parts:
        return None  # prompts live inside the layer that declares them
    root = layer.root.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    try:
        return candidate.read_bytes()
    except OSError:
        return None


def _resolve_template(
    ref: str, turn: TurnSpec, layer: Layer, artifact_reader: ArtifactReader | None, where: dict[str, str]
) -> PromptTemplate:
    data = _read_ref(ref, layer, artifact_reader)
    if data is None:
        raise ProfileError(
            PROFILE_UNRESOLVED_PROMPT_REF,
            f"{where['path']}: turn {turn.turn_id} prompt {ref!r} does not resolve in the {layer.name} layer",
            **where,
            turn_id=turn.turn_id,
            ref=ref,
            layer_root=str(layer.root),
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(
            PROFILE_TEMPLATE_SYNTAX,
            f"{where['path']}: turn {turn.turn_id} prompt {ref!r} is not UTF-8 text",
            **where,
            turn_id=turn.turn_id,
            ref=ref,
        ) from None
    template = template_from_text(ref, text)
    try:
        _check_template_names(template, turn, where)
    except ProfileError as exc:
        if exc.code != PROFILE_TEMPLATE_SYNTAX:
            raise
        raise ProfileError(
            exc.code,
            f"{where['path']}: turn {turn.turn_id}: {exc.message}",
            **where,
            turn_id=turn.turn_id,
            **exc.details,
        ) from None
    return template


def _check_template_names(template: PromptTemplate, turn: TurnSpec, where: dict[str, str]) -> None:
    """Fail at load time on variables the runtime will never pass to this turn."""
    variables, input_keys = referenced_names(template)
    unknown = sorted(variables - RENDER_VARIABLES) + sorted(
        f"inputs.{key}" for key in input_keys - set(turn.input_refs)
    )
    if unknown:
        raise ProfileError(
            PROFILE_TEMPLATE_UNDEFINED,
            f"{where['path']}: turn {turn.turn_id} prompt {template.ref!r} reads {unknown}, "
            f"which the turn does not provide",
            **where,
            turn_id=turn.turn_id,
            ref=template.ref,
            names=unknown,
        )


# --- branches ----------------------------------------------------------------------


def upstream_turns(profile: Profile, turn: TurnSpec) -> list[TurnSpec]:
    """The turns ``turn`` depends on, transitively through ``input_refs``, in seq order.

    Args:
        profile: the profile (input refs already resolved: `_check_structure`).
        turn: one of its turns.

    Returns:
        Every turn whose output ``turn`` reads, directly or through the turns it reads;
        the built-in ``context`` input is no turn.
    """
    producers = {t.output_type: t for t in profile.turns}
    found: dict[str, TurnSpec] = {}
    pending = [ref for ref in turn.input_refs if ref in producers]
    while pending:
        producer = producers[pending.pop()]
        if producer.turn_id in found:
            continue
        found[producer.turn_id] = producer
        pending.extend(ref for ref in producer.input_refs if ref in producers)
    return sorted(found.values(), key=lambda t: t.seq)


def _branch_of(profile: Profile, turn: TurnSpec) -> tuple[Expression, dict[str, FieldKind]]:
    upstream = upstream_turns(profile, turn)
    models = {t.output_type: output_model(t.output_type) for t in upstream}
    gate_ids = {t.gate_id for t in upstream if t.gate_id is not None}
    return validate_expression(turn.when or "", models, gate_ids)


def check_branches(profile: Profile, where: dict[str, str]) -> None:
    """Check every turn's ``when:`` (docs/specs/conditional-branches.md).

    The expression must parse, use only the branch language, read fields of outputs and
    gates upstream of its turn through ``input_refs`` that their payload models (as
    registered by the workflow plug-ins) have, and compare values of one type. The turn that
    produces the final output may not be conditional: a thread always writes its output.

    Args:
        profile: the profile, after `_check_structure`.
        where: path and workflow_id, added to every error's figures.

    Raises:
        ProfileError: ``PROFILE_WHEN_SYNTAX``, ``PROFILE_WHEN_FORBIDDEN``,
            ``PROFILE_WHEN_NOT_UPSTREAM``, ``PROFILE_WHEN_UNKNOWN_FIELD``,
            ``PROFILE_WHEN_UNKNOWN_GATE``, ``PROFILE_WHEN_TYPE_MISMATCH`` (figures: turn_id,
            expression, column and the offending output_type, field or gate_id);
            ``PROFILE_WHEN_FINAL_TURN`` (figure: turn_id).
    """
    final = profile.final_artifact_type or profile.ordered_turns()[-1].output_type
    for turn in profile.ordered_turns():
        if turn.when is None:
            continue
        if turn.output_type == final:
            raise ProfileError(
                PROFILE_WHEN_FINAL_TURN,
                f"{where['path']}: turn {turn.turn_id} produces the final output {final!r} and cannot "
                "declare when: (the final output is always written)",
                **where,
                turn_id=turn.turn_id,
            )
        try:
            _branch_of(profile, turn)
        except ProfileError as exc:
            raise ProfileError(
                exc.code,
                f"{where['path']}: turn {turn.turn_id}: {exc.message}",
                **where,
                turn_id=turn.turn_id,
                **exc.details,
            ) from None
