"""Typed configuration: dataclasses are the schema, YAML files in `configs/` are presets.

`load_config("tiny", ["train.lr=0.01"])` merges defaults <- preset <- dotted overrides; unknown
keys and wrongly typed values raise `ConfigError`. The resolved config is stored in every
checkpoint (`HSGConfig.to_dict`) and rebuilt with `HSGConfig.from_dict`, so inference never
depends on a YAML file matching training.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file or override names an unknown key or carries a wrongly typed value."""


TRANSFORMER_FORMS = ("hsg_explorer", "original")  # grouping.form
KMEANS_INITS = ("equal", "original")  # grouping.kmeans_init
DMON_GRAPHS = ("per_view", "joint")  # loss.dmon_graph
NORM_WEIGHT_GROUPS = ("bias", "weight")  # train.norm_weight_group


@dataclass
class ModelConfig:
    backbone: str = "resnet50_fcn"  # registry name: resnet{18,34,50}_fcn | dinov2_vits14
    backbone_init: str = "none"  # "none" (from scratch), "fetched" (cached weights), or a file path
    freeze_backbone: bool = False  # keep backbone weights fixed (BN/LN stats frozen too)
    train_output_stride: int = 16  # ResNet only: OS16 for training, as the original
    infer_output_stride: int = 8  # ResNet only: OS8 for inference, same weights
    embedding_dim: int = 128  # D of the unit pixel embeddings
    head_hidden: int = 2048  # width of the 1x1 conv -> BN -> ReLU before the embedding conv
    resnet_width: int = 64  # ResNet base width (64 = torchvision layout; smaller only for tests)
    # ResNet: the first 3x3 conv of a dilated stage keeps the "previous" stage's dilation (torchvision, the
    # original: OS8 = OS16 at shared positions), or takes the "stage"'s (this project before Dec 2026;
    # checkpoints without this field were trained so and keep it, see checkpoint_config)
    dilation_rule: str = "previous"


@dataclass
class OversegConfig:
    method: str = "hed_ucm"  # hed_ucm | gradient_ucm | slic | felzenszwalb
    max_regions: int = 48  # cut the UCM at the lowest level with <= this many regions
    ucm_ordering: str = "dynamics"  # UCM methods: watershed hierarchy by dynamics | area | volume
    slic_compactness: float = 10.0  # SLIC only
    felzenszwalb_scale: float = 200.0  # Felzenszwalb only (raised until <= max_regions)
    # UCM methods: the cut is never finer than this altitude (the original starts its UCM threshold at
    # 0.25), so a simple photo keeps fewer than max_regions regions; 0 = the finest cut with <=
    # max_regions (docs/fidelity.md: measured on BSDS500 train)
    ucm_floor: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.ucm_floor) <= 1.0:
            raise ConfigError(f"overseg.ucm_floor: {self.ucm_floor!r} is not in [0, 1]")

    cache: bool = True  # cache label maps on disk keyed by image content + parameters


@dataclass
class GroupingConfig:
    train_grid: tuple[int, int] = (4, 4)  # k-means grid initialisation while training
    infer_grid: tuple[int, int] = (6, 6)  # k-means grid at inference
    kmeans_iterations: int = 15  # spherical k-means iterations (T)
    # grid cells of the k-means initialisation: "equal" cells (ours) or "original" round(linspace) cells, whose
    # border cells are half size (rows [5, 9, 9, 5] on 28 px, 4x4); hsg_core.segments.initial_clusters
    kmeans_init: str = "equal"
    level_clusters: tuple[int, ...] = (8, 4)  # groups per hierarchy level above the segments
    num_heads: int = 4  # clustering transformer heads
    encoder_layers: int = 2
    decoder_layers: int = 2
    ffn_dim: int = 256
    dropout: float = 0.1
    position_table: int = 50  # rows/cols of the learned position table (inputs <= 50 cells a side)
    # clustering transformer: "hsg_explorer" (ours, shaped by the four fields below) or "original", the
    # original's transformer exactly, init included (N(0,1) queries, bias-free heads with torch's default
    # init, target MLP of width ffn_dim, std over n+1 / n-1 nodes, logits c.m/sqrt(D) against the encoder
    # memory, decoder input = target only, level>=2 nodes = cluster features, clusters sorted by max logit);
    # "original" ignores the four fields below. See hsg_core/clustering.py and docs/fidelity.md.
    form: str = "hsg_explorer"
    assignment_concentration: float = (
        16.0  # logits = kappa cos(centroid, node); 0 = original dot / sqrt(D)
    )
    query_in_target: bool = (
        True  # decoder input = target + query (False: target only, as the original)
    )
    assign_to: str = (
        "nodes"  # logits against "nodes" (the unit node vectors) or "memory" (the original)
    )
    upper_nodes: str = (
        "pooled"  # level>=2 nodes: "pooled" P-weighted node means, or "features" (original)
    )
    infer_hierarchy: str = (
        "transformers"  # inference levels: "transformers" (HSG's groups) | "contour" tree
    )

    def __post_init__(self) -> None:
        for name, allowed in (("form", TRANSFORMER_FORMS), ("kmeans_init", KMEANS_INITS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"grouping.{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}"
                )


@dataclass
class ContourConfig:
    """The contour-aware merge tree used at inference when grouping.infer_hierarchy = "contour"
    (`hsg_core.contour_tree`); every value was chosen on BSDS500 train photos."""

    edge_side: int = (
        512  # contour map (HED) and tree at the image's own size, longer side capped here
    )
    semantic_features: str = (
        "backbone"  # feature grid of the semantic edge map: "backbone" | "embedding"
    )
    semantic_offset: float = 1.0  # compare features this many patches to either side of a point
    semantic_scale: float = 1.5  # semantic change = min(scale * (1 - cos), 1)
    fine_semantic: float = (
        0.9  # fine stage: contours gated by semantics, edges * (1 - a + a * change)
    )
    coarse_semantic: float = 0.5  # coarse stage: (1 - a) * edges + a * change
    region_semantic: float = 0.5  # coarse merges add this * (1 - cos) of region embeddings
    switch_regions: int = (
        48  # the fine stage's cut with at most this many regions starts the coarse one
    )
    # region embedding stored per region: "embedding" (unit mean of the HSG head's pixel embeddings) or
    # "embedding+backbone" (that, concatenated with the unit mean of the backbone's patch features)
    region_descriptor: str = "embedding"
    # > 0: each region's descriptor is concatenated with this times its parent's (one level up)
    parent_context: float = 0.0
    # level l = the tree's cut at this altitude (fine stage in [0, 1], coarse stage above 1): the median
    # altitudes of the cuts with 64/32/16/8/4/2 regions on BSDS train; per image the counts adapt
    level_altitudes: tuple[float, ...] = (0.049, 1.157, 1.283, 1.401, 1.507, 1.633)


@dataclass
class LossConfig:
    concentration: float = 16.0  # kappa of the von Mises-Fisher contrast
    weight_image: float = 1.0  # lambda_E: SegSort+ on (image, oversegment) labels
    weight_levels: float = 0.1  # lambda_F: SegSort+ on (image, group) labels, every level
    weight_modularity: float = 1.0  # DMoN modularity + collapse (compact, balanced)
    weight_centroid: float = 1.0  # centroid contrast (distinctive)
    dmon_knn: int = 2  # neighbours kept per node and view in the DMoN graph
    # DMoN kNN graph: "per_view" (each node keeps dmon_knn neighbours in each view: the original's COCO `hsg`)
    # or "joint" (dmon_knn over both views together: the original's Cityscapes `hsg_cs`)
    dmon_graph: str = "per_view"

    def __post_init__(self) -> None:
        if self.dmon_graph not in DMON_GRAPHS:
            raise ConfigError(
                f"loss.dmon_graph: {self.dmon_graph!r} is not one of {', '.join(DMON_GRAPHS)}"
            )


@dataclass
class DataConfig:
    root: str = ""  # folder of images (recursive); empty = must be given on the CLI
    crop_size: int = 448
    max_side: int = 0  # downscale images whose longer side exceeds this before augmenting (0 = off)
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    jitter: tuple[float, float, float, float] = (
        0.4,
        0.4,
        0.4,
        0.1,
    )  # brightness, contrast, saturation, hue
    grayscale_prob: float = 0.2
    num_workers: int = 0


@dataclass
class TrainConfig:
    stage: int = 2  # 1: pixel contrast only (segments = oversegments); 2: full HSG
    batch_size: int = 6  # images per process (each gives 2 views)
    iterations: int = 20000
    lr: float = 8e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    lr_steps: tuple[float, ...] = (0.32, 0.56, 0.75)  # x0.1 at these fractions of iterations
    transformer_lr_mult: float = 10.0  # transformers + position/query embeddings (biases x2)
    # norm (BatchNorm/LayerNorm) weights: in the "bias" group (lr x2, no weight decay; ours) or the "weight"
    # group (lr x1 with weight decay, the original's get_params by name); hsg_core/optim.py
    norm_weight_group: str = "bias"
    seed: int = 235
    amp: bool = True  # mixed precision when on CUDA (losses stay fp32)
    log_every: int = 10
    checkpoint_every: int = 500
    init_from: str = ""  # checkpoint to start from (e.g. stage 1 for stage 2); optimizer not loaded

    def __post_init__(self) -> None:
        if self.norm_weight_group not in NORM_WEIGHT_GROUPS:
            raise ConfigError(
                f"train.norm_weight_group: {self.norm_weight_group!r} is not one of "
                f"{', '.join(NORM_WEIGHT_GROUPS)}"
            )


@dataclass
class HSGConfig:
    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    overseg: OversegConfig = field(default_factory=OversegConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    contour: ContourConfig = field(default_factory=ContourConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HSGConfig:
        return _build(cls, data, "")

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(self.to_dict()), sort_keys=False)


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so YAML stays portable."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a field's type hint, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item_hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(item_hints) != len(value):
            raise ConfigError(f"{where}: expected {len(item_hints)} values, got {len(value)}")
        return tuple(
            _coerce(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(value, item_hints))
        )
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"known under {prefix or 'top level'}: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """'train.lr=0.01' -> {'train': {'lr': 0.01}} (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    node: dict[str, Any] = {}
    cursor = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return node


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping")
    return data


def _overridden(data: dict[str, Any], overrides: list[str]) -> HSGConfig:
    """The config of plain `data` with dotted overrides ("section.key=value") applied, checked."""
    for text in overrides:
        data = _merge(data, parse_override(text))
    return HSGConfig.from_dict(data)


def apply_overrides(config: HSGConfig, overrides: list[str]) -> HSGConfig:
    """A copy of `config` with dotted overrides applied and checked."""
    return _overridden(_plain(config.to_dict()), overrides)


def load_config(preset: str = "default", overrides: list[str] | None = None) -> HSGConfig:
    """Defaults <- preset (a name in `configs/` or a YAML path) <- dotted overrides."""
    path = Path(preset)
    if not path.suffix:
        path = PRESET_DIR / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(preset_names())}")
    preset_data = read_yaml(path)
    data = _merge(_plain(HSGConfig().to_dict()), preset_data)
    data["name"] = preset_data.get(
        "name", path.stem
    )  # the preset's own name, not the dataclass default
    return _overridden(data, overrides or [])
