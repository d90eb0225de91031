"""The project file: one validated, versioned JSON/YAML document that describes a labelling project.

A project names its data source, its label schema (classes, rare flags), the encoder, model and
query strategy, the layout of the dashboard and where labels are stored. ``load_project`` validates
a file (unknown keys are rejected, every error names its field) and resolves relative paths against
the file's folder; paths that leave that folder are refused unless ``allow_outside=True``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import ConfigError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MAX_PROJECT_FILE_BYTES = 5 * 1024 * 1024

# Names users write in project files. Registries in core.embed / core.models / core.query must
# provide exactly these (a test checks both directions).
EncoderKind = Literal["tabular", "pretrained-image", "self-supervised", "model"]
Loss = Literal["ce", "class_balanced", "focal", "ldam_drw", "logit_adjusted", "balanced_softmax"]
Sampler = Literal["instance", "class_balanced", "sqrt", "riws"]
EmbeddingLoss = Literal["none", "quintuplet"]
StrategyName = Literal[
    "auto",
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "committee",
    "class_balanced_margin",
    "galaxy",
    "discovery",
    "target_class",
    "typiclust",
    "suspects",
]
ENCODER_KINDS: tuple[str, ...] = get_args(EncoderKind)
LOSSES: tuple[str, ...] = get_args(Loss)
SAMPLERS: tuple[str, ...] = get_args(Sampler)
EMBEDDING_LOSSES: tuple[str, ...] = get_args(EmbeddingLoss)
STRATEGIES: tuple[str, ...] = get_args(StrategyName)
# Cluster methods ``clusters.method`` can name (``core.clusters.CLUSTER_METHODS`` provides them).
ClusterMethodName = Literal["kmeans", "hdbscan", "linkage"]
CLUSTER_METHODS: tuple[str, ...] = get_args(ClusterMethodName)
# Learners ``model.kind`` can name; ``auto`` chooses among them at every retrain.
LearnerName = Literal["mlp", "logistic", "random_forest", "gradient_boosting", "cluster_knn"]
LEARNERS: tuple[str, ...] = get_args(LearnerName)
MODEL_KINDS: tuple[str, ...] = ("auto", *LEARNERS)
DEMO_DATASETS = ("digits-lt", "fashion-mnist-lt")

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CLASS_NAME = re.compile(r"^[^\x00-\x1f]{1,64}$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::\d{1,5})?$")
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class DataConfig(_Strict):
    """Where the items come from."""

    kind: Literal["csv", "parquet", "npz", "image_folder", "demo"]
    path: str | None = Field(None, description="File or folder, relative to the project file.")
    demo: Literal["digits-lt", "fashion-mnist-lt"] | None = Field(
        None, description="Built-in demo data set (kind: demo)."
    )
    id_column: str = Field("id", description="Column (or npz array) holding stable item ids.")
    feature_columns: list[str] | None = Field(
        None, description="Numeric feature columns; default: every numeric column but id/label."
    )
    image_field: str | None = Field(
        None, description="npz array of images, or table column of image paths."
    )
    label_column: str | None = Field(
        None, description="Optional ground-truth column, used only for simulation and evaluation."
    )
    sha256: str | None = Field(None, description="Expected SHA-256 of the data file, if pinned.")
    max_items: int | None = Field(
        None, ge=1_000,
        description="Parquet pools larger than this are opened as an id-hash sample of about this "
        "many items plus every labelled item (the dashboard maps those and says so; "
        "`tailwise score` scores the whole pool).",
    )
    info_columns: list[str] = Field(
        default_factory=list, description="Columns shown as a table in the inspector (tables only)."
    )
    image_columns: list[str] = Field(
        default_factory=list,
        description="Columns of image paths (relative to the project file) shown as tabs in the "
        "inspector; several per item.",
    )
    image_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts whose http(s) image URLs the browser may show; none by default "
        "(the server never fetches them).",
    )

    @field_validator("image_hosts")
    @classmethod
    def _hosts_ok(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not _HOST.match(host):
                raise ValueError(f"{host!r} is not a host name such as 'skyserver.example.org'")
        return [h.lower() for h in hosts]

    @model_validator(mode="after")
    def _kind_needs(self) -> DataConfig:
        if self.kind == "demo":
            if self.demo is None:
                raise ValueError("kind 'demo' needs 'demo' (one of: " + ", ".join(DEMO_DATASETS) + ")")
        elif not self.path:
            raise ValueError(f"kind '{self.kind}' needs 'path'")
        if (self.info_columns or self.image_columns) and self.kind not in ("csv", "parquet"):
            raise ValueError("info_columns and image_columns need a table (kind csv or parquet)")
        return self


class ClassConfig(_Strict):
    """One class of the label schema. A class listed without a colour gets one from ``PALETTE``
    when the project is parsed (see ``ProjectConfig``), so every class has its own colour."""

    name: str
    colour: str = "#1f77b4"
    rare: bool = False
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        v = v.strip()
        if not _CLASS_NAME.match(v):
            raise ValueError("class name must be 1-64 printable characters")
        return v

    @field_validator("colour")
    @classmethod
    def _colour_ok(cls, v: str) -> str:
        if not _COLOUR.match(v):
            raise ValueError(f"colour must look like '#1f77b4', got {v!r}")
        return v.lower()


class EncoderConfig(_Strict):
    """How items become embeddings (see README, 'Encoders')."""

    kind: EncoderKind = "tabular"
    pca_components: int | None = Field(None, ge=2, le=4096)
    dim: int = Field(64, ge=2, le=4096, description="Embedding size of the self-supervised encoder.")
    epochs: int = Field(30, ge=1, le=10_000)
    image_size: int = Field(96, ge=32, le=512, description="Input size of the pretrained encoder.")
    batch_size: int = Field(256, ge=1, le=65_536)
    base: Literal["tabular", "pretrained-image", "self-supervised"] = Field(
        "tabular", description="kind 'model': the encoder whose output the classifier is trained on."
    )


class MLPConfig(_Strict):
    """The imbalance-aware PyTorch MLP head."""

    kind: Literal["mlp"] = "mlp"
    loss: Loss = "logit_adjusted"
    sampler: Sampler = "instance"
    # defaults chosen by benchmarks/learners.py (docs/benchmarks.md, "Learners")
    hidden: list[int] = Field(default_factory=lambda: [128])
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    epochs: int = Field(100, ge=1, le=100_000)
    batch_size: int = Field(512, ge=1, le=65_536)
    lr: float = Field(3e-3, gt=0, le=10)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(10, ge=1)
    tau: float = Field(1.0, ge=0, description="Logit-adjustment strength.")
    beta: float = Field(0.999, ge=0, lt=1, description="Class-balanced effective-number beta.")
    gamma: float = Field(2.0, ge=0, description="Focal-loss focusing parameter.")
    crt: bool = Field(False, description="Re-train the classifier layer on class-balanced batches.")
    posthoc_tau: float = Field(0.0, ge=0, description="Post-hoc logit adjustment at predict time.")
    calibrate: bool = Field(True, description="Temperature scaling on held-out labelled items.")
    pseudo_label: bool = Field(False, description="Class-balanced pseudo-labelling of the pool.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    embedding_loss: EmbeddingLoss = Field(
        "none",
        description="Extra loss on the penultimate layer: 'quintuplet' adds LMLE's class- and "
        "cluster-level margins (class-balanced batches, clusters per class refreshed every "
        "cluster_refresh epochs) to the classification loss.",
    )
    embedding_weight: float = Field(1.0, gt=0, le=100, description="Weight of the embedding loss.")
    # 1.0 (of the squared distances in [0, 4] between unit vectors) kept the tail classes apart
    # better than 0.2 on digits (docs/benchmarks.md, "Embedding: quintuplet margins")
    class_margin: float = Field(1.0, ge=0, le=4, description="Quintuplet margin between classes.")
    cluster_margin: float = Field(
        0.05, ge=0, le=4, description="Quintuplet margins between clusters of one class."
    )
    clusters_per_class: int = Field(4, ge=1, le=64, description="Most k-means clusters per class.")
    min_cluster_size: int = Field(
        8, ge=1, le=10_000, description="A class gets one cluster per this many labelled items."
    )
    cluster_refresh: int = Field(
        5, ge=1, le=10_000, description="Epochs between re-clustering the current embedding."
    )


class LogisticConfig(_Strict):
    kind: Literal["logistic"] = "logistic"
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=10)


class RandomForestConfig(_Strict):
    kind: Literal["random_forest"] = "random_forest"
    n_estimators: int = Field(200, ge=1, le=10_000)
    max_depth: int | None = Field(None, ge=1)


class GradientBoostingConfig(_Strict):
    """Histogram gradient-boosted trees with balanced class weights (scikit-learn)."""

    kind: Literal["gradient_boosting"] = "gradient_boosting"
    # defaults: as accurate as 100 rounds of 15 leaves on the benchmark sets at a third of the
    # cost (docs/models.md, "Gradient boosting")
    max_iter: int = Field(50, ge=1, le=10_000, description="Boosting rounds.")
    learning_rate: float = Field(0.2, gt=0, le=1)
    max_leaf_nodes: int = Field(8, ge=2, le=4096)
    min_samples_leaf: int | None = Field(
        None, ge=1, description="Default: scaled with the labels (20 at most, 2 at least)."
    )
    l2_regularization: float = Field(0.0, ge=0)


def _quintuplet_mlp() -> MLPConfig:
    return MLPConfig(embedding_loss="quintuplet")


class ClusterKNNConfig(_Strict):
    """Cluster-wise nearest-neighbour classification (LMLE) on the quintuplet embedding."""

    kind: Literal["cluster_knn"] = "cluster_knn"
    mlp: MLPConfig = Field(
        default_factory=_quintuplet_mlp,
        description="The network whose penultimate layer is the embedding (embedding_loss "
        "'quintuplet' unless set).",
    )

    @field_validator("mlp", mode="before")
    @classmethod
    def _quintuplet_unless_set(cls, value: Any) -> Any:
        if isinstance(value, dict) and "embedding_loss" not in value:
            return {**value, "embedding_loss": "quintuplet"}
        return value


LearnerConfig = (MLPConfig | LogisticConfig | RandomForestConfig | GradientBoostingConfig
                 | ClusterKNNConfig)


class AutoConfig(_Strict):
    """Choose the learner at every retrain by out-of-fold balanced accuracy on the labels.

    Each candidate keeps its own settings (``auto.mlp``, ``auto.random_forest`` ...).
    """

    kind: Literal["auto"] = "auto"
    candidates: list[LearnerName] = Field(
        default_factory=lambda: ["logistic", "mlp", "random_forest", "gradient_boosting"],
        min_length=1,
        description="Learners that compete; the first one is used while labels are too few.",
    )
    folds: int = Field(3, ge=2, le=20, description="Cross-validation folds of the comparison.")
    max_rows: int = Field(
        1_500, ge=50, description="Labels the comparison uses at most (a stratified subset)."
    )
    min_labels: int = Field(
        20, ge=4, description="Below this many labels the first candidate is used, untested."
    )
    switch_margin: float = Field(
        0.02, ge=0, le=1,
        description="A challenger replaces the current learner only when its out-of-fold "
        "balanced accuracy is higher by this much and by one standard error.",
    )
    recheck_growth: float = Field(
        0.5, ge=0, description="Compare the learners again once the labels grew by this share "
        "since the last comparison; between, the chosen learner is kept.",
    )
    oof_growth: float = Field(
        0.25, ge=0, description="Between comparisons, cross-validate the chosen learner again "
        "(out-of-fold predictions for calibration, suspect labels and prevalence) once the labels "
        "grew by this share since the last time, or a class appeared; between, the last "
        "out-of-fold predictions are reused. 0: every retrain.",
    )
    spreading_labels: int = Field(
        100, ge=0, description="While fewer items than this are labelled, blend label spreading "
        "over the kNN graph of the embedding (labelled + unlabelled items) into the learner's "
        "probabilities where it does as well out of fold; 0 turns it off.",
    )
    spreading_weight: float = Field(
        0.5, ge=0, le=1, description="Share of the label-spreading probabilities in the blend.",
    )
    mlp: MLPConfig = Field(default_factory=MLPConfig)
    logistic: LogisticConfig = Field(default_factory=lambda: LogisticConfig())
    random_forest: RandomForestConfig = Field(default_factory=lambda: RandomForestConfig())
    gradient_boosting: GradientBoostingConfig = Field(
        default_factory=lambda: GradientBoostingConfig()
    )
    cluster_knn: ClusterKNNConfig = Field(default_factory=lambda: ClusterKNNConfig())

    @field_validator("candidates")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"candidates: each learner may be named once, got {v}")
        return v

    def learner_config(self, name: str) -> LearnerConfig:
        """The settings of candidate ``name``."""
        return getattr(self, name)

    @property
    def device(self) -> str:
        """Where the MLP candidate trains."""
        return self.mlp.device


def default_model_config(kind: str) -> AutoConfig | LearnerConfig:
    """The default settings of model ``kind`` (one of ``MODEL_KINDS``)."""
    configs = {"auto": AutoConfig, "mlp": MLPConfig, "logistic": LogisticConfig,
               "random_forest": RandomForestConfig, "gradient_boosting": GradientBoostingConfig,
               "cluster_knn": ClusterKNNConfig}
    if kind not in configs:
        raise ConfigError(f"model.kind: unknown model {kind!r}; use one of {', '.join(MODEL_KINDS)}")
    return configs[kind]()


def _default_model_kind(value: Any) -> Any:
    """``model: {loss: focal}`` means the MLP; ``model: {}`` the automatic choice."""
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "mlp" if value else "auto", **value}
    return value


ModelConfig = Annotated[
    AutoConfig | LearnerConfig,
    Field(discriminator="kind"),
    BeforeValidator(_default_model_kind),
]


class QueryConfig(_Strict):
    """Which items to ask the expert about next."""

    strategy: StrategyName = "auto"
    batch_size: int = Field(10, ge=1, le=10_000)
    target_class: str | None = None
    cold_start: int = Field(10, ge=0, description="Use the cold-start strategy below this many labels.")


class ClustersConfig(_Strict):
    """How the predicted clusters are made (Clusters view, "select the whole cluster", the
    cluster-based strategies and the ``cluster`` column of ``tailwise retrain``); see
    docs/models.md, "Cluster methods"."""

    method: ClusterMethodName = Field(
        "kmeans", description="kmeans (even-sized, fast), hdbscan (density-based, no preset k) or "
        "linkage (learned links on the kNN graph, trained on the expert labels; keeps rare "
        "classes apart).",
    )
    n_clusters: int | None = Field(
        None, ge=1, le=100_000, description="kmeans: number of clusters (default about sqrt(n/4))."
    )
    min_cluster_size: int = Field(5, ge=2, le=100_000, description="hdbscan: smallest cluster.")
    n_neighbors: int = Field(10, ge=2, le=100, description="linkage: kNN graph degree.")
    threshold: float = Field(
        0.5, gt=0, lt=1, description="linkage: link probability at which two neighbours join."
    )
    linkage_head: Literal["mlp", "gcn"] = Field(
        "mlp", description="linkage: the link model's node codes: mlp (each item alone) or gcn "
        "(also its kNN neighbourhood: two rounds of mean aggregation); see docs/models.md.",
    )


class AgreementConfig(_Strict):
    """Double labelling, to measure how far experts agree (``core.quality.agreement``)."""

    double_share: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Share of every queued batch filled with items another annotator already "
        "labelled (never the one who labelled them), for a second, independent opinion.",
    )


class MapConfig(_Strict):
    """How embeddings become the 2-D map."""

    method: Literal["umap", "pca"] = Field(
        "umap", description="UMAP (default) or PCA (instant, for quick looks and tests)."
    )
    n_neighbors: int = Field(15, ge=2, le=200)
    min_dist: float = Field(0.1, ge=0.0, le=1.0)
    sample_size: int = Field(
        20_000, ge=100, description="UMAP is fitted on at most this many items; the rest are mapped."
    )
    raster_threshold: int = Field(
        50_000, ge=1, description="Above this many items the map is rasterised with datashader."
    )


COMBINATION_OPS = {"subtract": "-", "add": "+", "multiply": "*", "divide": "/"}
"""Operations of ``features.combinations``, by name, with the operator they apply left to right."""
MAX_DERIVED_COLUMNS = 1000


class DerivedColumn(_Strict):
    """A column computed from others, e.g. ``{name: g_r, expr: "g - r"}``.

    ``expr`` uses the grammar of ``core.expr`` (+ - * / **, log10, abs, sqrt, numbers, column
    names); it is parsed here and evaluated over the data when it loads. Where the result is not
    finite but the inputs were (division by zero, log10 of 0), loading fails naming the item,
    unless ``fill`` declares the value to use instead.
    """

    name: str = Field(description="Name of the new column (letters, digits, '_').")
    expr: str = Field(description="Formula over the data's numeric columns.")
    fill: float | None = Field(None, description="Value where the formula has no finite result.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _COLUMN_NAME.match(v):
            raise ValueError(f"{v!r} is not a column name: use letters, digits and '_' "
                             "(not starting with a digit), at most 64 characters")
        return v

    @field_validator("expr")
    @classmethod
    def _expr_ok(cls, v: str) -> str:
        from core.expr import parse_arithmetic

        parse_arithmetic(v)  # raises ExpressionError (a ValueError) saying what is refused
        return v


class Combinations(_Strict):
    """Every combination of ``n`` of ``columns`` under each of ``ops`` (colours from bands).

    ``{columns: [u, g, r], ops: [subtract], n: 2}`` adds ``u_g``, ``u_r``, ``g_r`` (= u - g, ...);
    ``add``, ``multiply`` and ``divide`` name theirs ``u_plus_g``, ``u_times_g``, ``u_over_g``.
    """

    columns: list[str] = Field(min_length=2)
    ops: list[Literal["subtract", "add", "multiply", "divide"]] = Field(
        default_factory=lambda: ["subtract"], min_length=1)
    n: int = Field(2, ge=2, le=4)
    fill: float | None = Field(None, description="Value where a result is not finite.")

    @model_validator(mode="after")
    def _size_ok(self) -> Combinations:
        from math import comb

        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns: a column is listed twice")
        if self.n > len(self.columns):
            raise ValueError(f"n is {self.n} but only {len(self.columns)} columns are listed")
        count = comb(len(self.columns), self.n) * len(set(self.ops))
        if count > MAX_DERIVED_COLUMNS:
            raise ValueError(f"these combinations would add {count:,} columns; the limit is "
                             f"{MAX_DERIVED_COLUMNS:,}: list fewer columns or a smaller n")
        return self


class FeaturesConfig(_Strict):
    """Columns derived from the data's own, used as features by the tabular encoder."""

    derived: list[DerivedColumn] = Field(default_factory=list)
    combinations: Combinations | None = None

    @property
    def empty(self) -> bool:
        return not self.derived and self.combinations is None


class AccessConfig(_Strict):
    """Who may do what on a shared server (see ``core.access``): user names per role.

    ``annotators`` or ``viewers`` may be ``"*"`` (every logged-in user). Admins may do everything,
    annotators label, undo their own work, ask for batches and retrain, viewers only look.
    """

    admins: list[str] = Field(default_factory=list)
    annotators: list[str] | Literal["*"] = Field(default_factory=list)
    viewers: list[str] | Literal["*"] = Field(default_factory=list)

    @field_validator("admins", "annotators", "viewers")
    @classmethod
    def _names_ok(cls, v):
        if v == "*":
            return v
        names = [str(n).strip() for n in v]
        if any(not n for n in names):
            raise ValueError("user names must not be empty")
        return names


class LabelEventRecord(_Strict):
    """A label event as stored inline in an exported project file."""

    item_id: str
    label: str | None
    annotator: str = "unknown"
    time: float | str | None = None
    origin: str = "import"
    model_version: int | None = None
    note: str | None = None
    split: Literal["train", "test"] = "train"


class LabelsRef(_Strict):
    """Labels kept beside the project file as JSON Lines, pinned by their SHA-256."""

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ProjectConfig(_Strict):
    """A Tailwise project (schema version 1)."""

    schema_version: int = SCHEMA_VERSION
    name: str = "Untitled project"
    data: DataConfig
    classes: list[ClassConfig] = Field(default_factory=list)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    model: ModelConfig = Field(default_factory=AutoConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    clusters: ClustersConfig = Field(default_factory=ClustersConfig)
    agreement: AgreementConfig = Field(default_factory=AgreementConfig)
    map: MapConfig = Field(default_factory=MapConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    layout: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    label_store: str = "labels.sqlite"
    cache_dir: str = ".tailwise-cache"
    labels: list[LabelEventRecord] | LabelsRef | None = None
    access: AccessConfig | None = None  # absent: everyone may do everything

    # Folder the file was loaded from; relative paths resolve against it. Not serialised.
    _base_dir: Path | None = None
    # Whether the file was loaded with allow_outside (load_dataset honours it). Not serialised.
    _allow_outside: bool = False

    @field_validator("schema_version")
    @classmethod
    def _version_ok(cls, v: int) -> int:
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(
                f"unsupported schema_version {v}; this Tailwise reads "
                + ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
            )
        return v

    @model_validator(mode="after")
    def _colours_for_classes(self) -> ProjectConfig:
        """Classes listed without a colour get distinct palette colours, in file order, skipping
        colours other classes already use (the same file gives the same colours every time)."""
        unset = [c for c in self.classes if "colour" not in c.model_fields_set]
        if unset:
            taken = {c.colour for c in self.classes if "colour" in c.model_fields_set}
            free = iter(palette_colours(len(unset), exclude=taken))
            for cls in unset:
                cls.colour = next(free)
        return self

    @model_validator(mode="after")
    def _classes_unique(self) -> ProjectConfig:
        names = [c.name for c in self.classes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"classes: duplicate class names {dupes}")
        if self.query.target_class is not None and names and self.query.target_class not in names:
            raise ValueError(f"query.target_class {self.query.target_class!r} is not a class")
        return self

    # ------------------------------------------------------------------ paths
    @property
    def base_dir(self) -> Path:
        return self._base_dir if self._base_dir is not None else Path.cwd()

    def resolve(self, relative: str | Path, *, allow_outside: bool = False, field: str = "path") -> Path:
        """Resolve a path named in the file against the file's folder, refusing escapes."""
        return resolve_inside(self.base_dir, relative, allow_outside=allow_outside, field=field)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def rare_classes(self) -> list[str]:
        return [c.name for c in self.classes if c.rare]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


def resolve_inside(base: Path, relative: str | Path, *, allow_outside: bool = False, field: str = "path") -> Path:
    """Resolve ``relative`` against ``base``; refuse a result outside ``base`` unless allowed."""
    base = Path(base).resolve()
    candidate = Path(relative).expanduser()
    full = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if not allow_outside and not full.is_relative_to(base):
        raise ConfigError(
            f"{field}: {str(relative)!r} points outside the project folder {str(base)!r}; "
            "move the file into the folder or pass allow_outside (CLI: --allow-outside)"
        )
    return full


def format_validation_error(err: ValidationError, source: str, what: str = "project file") -> str:
    """One line per problem, each naming its field (``model.loss: ...``), in plain words."""
    lines = [f"{source}: {err.error_count()} problem(s) in the {what}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        lines.append(f"  - {loc}: {plain_error(e, what)}" if loc else f"  - {plain_error(e, what)}")
    return "\n".join(lines)


def plain_error(e: dict[str, Any], what: str = "project file") -> str:
    """One pydantic error (``ValidationError.errors()`` item) as a plain sentence."""
    kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
    shown = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else None
    got = f", got {shown}" if shown is not None else ""
    if kind == "extra_forbidden":
        return f"unknown key (not part of the {what} schema version 1)"
    if kind == "union_tag_invalid":
        choices = _choices(ctx.get("expected_tags", ""))
        return f"unknown {ctx.get('discriminator', 'kind').strip(chr(39))} {ctx.get('tag')!r}; choose one of: {choices}"
    if kind == "union_tag_not_found":
        return f"needs a 'kind' ({_choices(ctx.get('expected_tags', ''))})" if ctx else "needs a 'kind'"
    if kind == "literal_error":
        return f"{shown if shown is not None else 'this value'} is not allowed; choose one of: {_choices(ctx.get('expected', ''))}"
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", e["msg"]))
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        return message
    if kind == "missing":
        return "required, but missing"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number (integer){got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be a number{got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false{got}"
    if kind in ("string_type",):
        return f"must be text{got}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"must be a list{got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (key: value){got}"
    limits = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
              "greater_than": ("more than", "gt"), "less_than": ("less than", "lt")}
    if kind in limits:
        words, key = limits[kind]
        return f"must be {words} {ctx.get(key)}{got}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s){got if isinstance(value, str) else ''}"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return (f"{shown} has characters or a length this field does not allow "
                f"(it must match {ctx.get('pattern')})")
    return f"{e['msg']}{got}"


def _choices(expected: str) -> str:
    """Pydantic's "'a', 'b' or 'c'" as "'a', 'b', 'c'"."""
    return ", ".join(part.strip() for part in expected.replace(" or ", ", ").split(","))


_UNION_TAGS = {*MODEL_KINDS, "list[LabelEventRecord]", "LabelsRef",
               "list[str]", "literal['*']",
               "scatter", "line", "histogram", "plugin", "str", "Tabs"}


def parse_project(data: Any, *, source: str = "<project>", base_dir: Path | None = None,
                  allow_outside: bool = False) -> ProjectConfig:
    """Validate a mapping as a project; paths are checked against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a project file must be a mapping at the top level, "
                          f"got {type(data).__name__}")
    try:
        project = ProjectConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    project._base_dir = Path(base_dir).resolve() if base_dir is not None else None
    project._allow_outside = allow_outside
    _check_paths(project, allow_outside=allow_outside)
    return project


def _check_paths(project: ProjectConfig, *, allow_outside: bool) -> None:
    if project.data.path:
        project.resolve(project.data.path, allow_outside=allow_outside, field="data.path")
    project.resolve(project.label_store, allow_outside=allow_outside, field="label_store")
    project.resolve(project.cache_dir, allow_outside=allow_outside, field="cache_dir")
    if isinstance(project.labels, LabelsRef):
        project.resolve(project.labels.path, allow_outside=allow_outside, field="labels.path")


def read_project_text(path: Path) -> str:
    """Read a project file as UTF-8 text with size and encoding checks."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: project file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise ConfigError(f"{path}: the project file is empty")
    if size > MAX_PROJECT_FILE_BYTES:
        raise ConfigError(
            f"{path}: the project file is {size / 1e6:.1f} MB, over the {MAX_PROJECT_FILE_BYTES // 2**20} MiB"
            " limit; keep labels in a sibling .jsonl file"
        )
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None


def load_project(path: str | Path, *, allow_outside: bool = False) -> ProjectConfig:
    """Load and validate a project file (``.yaml``/``.yml`` or ``.json``)."""
    path = Path(path)
    text = read_project_text(path)
    data = _parse_text(text, path)
    return parse_project(data, source=str(path), base_dir=path.parent, allow_outside=allow_outside)


def _parse_text(text: str, path: Path) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    try:
        # safe_load builds plain data only: tags such as !!python/object are refused.
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None


def dump_project(project: ProjectConfig, path: str | Path) -> Path:
    """Write ``project`` as YAML or JSON (by suffix). Returns the path written."""
    return write_settings_file(project.to_dict(), path, what="project files")


def write_settings_file(data: dict[str, Any], path: str | Path, *, what: str) -> Path:
    """Write plain data as YAML or JSON (chosen by the suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif suffix in (".yaml", ".yml"):
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        raise ConfigError(f"{path}: {what} end in .yaml, .yml or .json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def default_classes(names: list[str], rare: set[str] | frozenset[str] = frozenset()) -> list[ClassConfig]:
    """Classes with distinct colours from a fixed, colour-blind-friendly palette."""
    colours = palette_colours(len(names))
    return [ClassConfig(name=n, colour=c, rare=n in rare) for n, c in zip(names, colours)]


def palette_colours(count: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``count`` colours from ``PALETTE`` in order, skipping ``exclude``; beyond the palette,
    evenly spaced hues (still distinct, though no longer colour-blind safe)."""
    import colorsys

    taken = {c.lower() for c in exclude}
    out = [c for c in PALETTE if c not in taken][:count]
    extra = count - len(out)
    for i in range(extra):
        r, g, b = colorsys.hls_to_rgb((i * 0.618034) % 1.0, 0.45, 0.65)
        colour = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
        out.append(colour)
    return out


# Okabe-Ito followed by Tableau 10 (distinct, colour-blind friendly first).
PALETTE = [
    "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#000000",
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354",
]
