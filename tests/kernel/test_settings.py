"""Declared settings (detcore.settings) and kinds declared by factories, checked by the validator and
the build: fake components on a private registry, so the tests do not depend on the shipped heads."""

from pathlib import Path

import pytest
from torch import nn

from detcore.config import load_config, validate_config
from detcore.errors import ConfigError
from detcore.settings import NMS_SETTINGS, REQUIRED, Delegate, Key, PerStage, Settings, checked


class Assigner:
    def __init__(self, pos_iou_thr: float, neg_iou_thr: float = 0.4):
        self.pos_iou_thr, self.neg_iou_thr = pos_iou_thr, neg_iou_thr


class DenseHead(nn.Module):
    train_settings = Settings(
        assigner=Key(kind="task_util", default=REQUIRED, doc="assigner table"),
        allowed_border=Key(int, -1),
        pos_weight=Key(float, -1.0),
    )
    test_settings = Settings(
        nms_pre=Key(int, -1), score_thr=Key(float, REQUIRED), nms=Key(NMS_SETTINGS, REQUIRED),
        max_per_img=Key(int, 100),
    )

    def __init__(self, num_classes: int, train_cfg=None, test_cfg=None):
        super().__init__()
        self.train_cfg = checked(self, "train_cfg", train_cfg, where="DenseHead")
        self.test_cfg = checked(self, "test_cfg", test_cfg, where="DenseHead")


class OneStage(nn.Module):
    component_kinds = {"bbox_head": "dense_head"}
    train_settings = Delegate("bbox_head")
    test_settings = Delegate("bbox_head")

    def __init__(self, bbox_head, train_cfg=None, test_cfg=None):
        super().__init__()


class BoxHead(nn.Module):
    """A RoI box head (kind roi_head); its name ``Twin`` is also a dense head with other arguments."""

    def __init__(self, fc_channels: int = 16):
        super().__init__()


class TwinDense(nn.Module):
    def __init__(self, stacked_convs: int = 2):
        super().__init__()


class RoILayer(nn.Module):
    def __init__(self, output_size: int, spatial_scale: float = 1.0, sampling_ratio: int = 0):
        super().__init__()


class Extractor(nn.Module):
    component_kinds = {"roi_layer": "roi_layer"}

    def __init__(self, roi_layer, out_channels: int = 16):
        super().__init__()


STAGE = Settings(assigner=Key(kind="task_util", default=REQUIRED), pos_weight=Key(float, -1.0),
                 debug=Key(bool, False))


class CascadeHead(nn.Module):
    component_kinds = {"bbox_head": "roi_head", "bbox_roi_extractor": "roi_extractor"}
    train_settings = PerStage(STAGE)
    test_settings = Settings(score_thr=Key(float, 0.05), nms=Key(NMS_SETTINGS), max_per_img=Key(int, 100))

    def __init__(self, bbox_head, bbox_roi_extractor=None, num_stages: int = 3, train_cfg=None,
                 test_cfg=None):
        super().__init__()


class TwoStage(nn.Module):
    component_kinds = {"rpn_head": "dense_head", "roi_head": "roi_head"}
    train_settings = Settings(rpn=Delegate("rpn_head"), rpn_proposal=Delegate("rpn_head", phase="test_cfg"),
                              rcnn=Delegate("roi_head"))
    test_settings = Settings(rpn=Delegate("rpn_head"), rcnn=Delegate("roi_head"))

    def __init__(self, rpn_head, roi_head, train_cfg=None, test_cfg=None):
        super().__init__()


@pytest.fixture
def reg(plugin_env):
    _, registry = plugin_env([(
        "fake", "det-plugin-fake", "1.0",
        {
            "detcore_register_detectors": {"OneStage": OneStage, "TwoStage": TwoStage},
            "detcore_register_dense_heads": {"DenseHead": DenseHead, "Twin": TwinDense},
            "detcore_register_roi_heads": {"CascadeHead": CascadeHead, "Twin": BoxHead},
            "detcore_register_roi_extractors": {"Extractor": Extractor},
            "detcore_register_roi_layers": {"RoILayer": RoILayer},
            "detcore_register_task_utils": {"Assigner": Assigner},
        },
    )])
    return registry


ONE_STAGE = """
[model]
type = "OneStage"
[model.bbox_head]
type = "DenseHead"
num_classes = 3
[model.train_cfg]
allowed_border = -1
assigner = { type = "Assigner", pos_iou_thr = 0.5 }
[model.test_cfg]
nms_pre = 1000
score_thr = 0.05
nms = { type = "nms", iou_threshold = 0.5 }
"""

TWO_STAGE = """
[model]
type = "TwoStage"
rpn_head = { type = "DenseHead", num_classes = 1 }
[model.roi_head]
type = "CascadeHead"
bbox_roi_extractor = { type = "Extractor", roi_layer = { type = "RoILayer", output_size = 7 } }
bbox_head = [{ type = "Twin", fc_channels = 8 }, { type = "Twin" }, { type = "Twin", fc_channels = 4 }]
[model.train_cfg]
rpn = { assigner = { type = "Assigner", pos_iou_thr = 0.7 } }
rpn_proposal = { nms_pre = 2000, score_thr = 0.0, nms = { type = "nms", iou_threshold = 0.7 } }
[[model.train_cfg.rcnn]]
assigner = { type = "Assigner", pos_iou_thr = 0.5 }
[[model.train_cfg.rcnn]]
assigner = { type = "Assigner", pos_iou_thr = 0.6 }
pos_weight = -1
[[model.train_cfg.rcnn]]
assigner = { type = "Assigner", pos_iou_thr = 0.7 }
[model.test_cfg]
rpn = { score_thr = 0.0, nms = { type = "nms", iou_threshold = 0.7 } }
rcnn = { score_thr = 0.05, max_per_img = 100 }
"""


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(cfg, registry) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg, registry=registry)
    return str(exc.value)


def test_valid_configs_pass(reg, tmp_path):
    validate_config(load_config(write(tmp_path, ONE_STAGE)), registry=reg)
    validate_config(load_config(write(tmp_path, TWO_STAGE)), registry=reg)


def test_unknown_setting_is_refused_with_override_key_path_and_nearest_key(reg, tmp_path):
    cfg = load_config(write(tmp_path, ONE_STAGE), ["model.test_cfg.score_treshold=0.3"])
    msg = error_of(cfg, reg)
    assert msg.startswith(
        "--set model.test_cfg.score_treshold=0.3: model.test_cfg.score_treshold: unknown key "
        "'score_treshold' in DenseHead's test_cfg; did you mean 'score_thr'?"
    ), msg
    # the same error from the file that sets it, for a nested table
    path = write(tmp_path, ONE_STAGE.replace("iou_threshold = 0.5", "iou_treshold = 0.5"))
    msg = error_of(load_config(path), reg)
    assert msg.startswith(f"{path}: model.test_cfg.nms.iou_treshold: unknown key 'iou_treshold'"), msg
    assert "did you mean 'iou_threshold'?" in msg


def test_unknown_setting_in_a_per_stage_list_names_the_stage(reg, tmp_path):
    path = write(tmp_path, TWO_STAGE.replace("pos_weight = -1", "pos_wieght = -1"))
    msg = error_of(load_config(path), reg)
    assert msg.startswith(
        f"{path}: model.train_cfg.rcnn.1.pos_wieght: unknown key 'pos_wieght' in CascadeHead's train_cfg; "
        "did you mean 'pos_weight'?"
    ), msg
    # a delegated table is checked by the component that reads it (the RPN head's test settings)
    cfg = load_config(write(tmp_path, TWO_STAGE), ["model.train_cfg.rpn_proposal.nms_pree=1"])
    assert "model.train_cfg.rpn_proposal.nms_pree: unknown key 'nms_pree' in DenseHead's test_cfg" in \
        error_of(cfg, reg)
    # a table where the stages need an array
    cfg = load_config(write(tmp_path, TWO_STAGE), ["model.train_cfg.rcnn={pos_weight = 1.0}"])
    assert "model.train_cfg.rcnn: must be an array of per-stage tables" in error_of(cfg, reg)
    cfg = load_config(write(tmp_path, TWO_STAGE), ["model.train_cfg.rcn={}"])
    assert "unknown key 'rcn' in TwoStage's train_cfg; did you mean 'rcnn'?" in error_of(cfg, reg)


def test_component_tables_inside_settings_are_validated_as_their_kind(reg, tmp_path):
    cfg = load_config(write(tmp_path, TWO_STAGE), ["model.train_cfg.rcnn.2.assigner.pos_iou_thrr=0.7"])
    msg = error_of(cfg, reg)
    assert "model.train_cfg.rcnn.2.assigner.pos_iou_thrr: unknown key 'pos_iou_thrr' for task_util " \
        "'Assigner'" in msg, msg
    assert "nearest valid key: 'pos_iou_thr'" in msg


def test_wrong_types_and_missing_required_keys(reg, tmp_path):
    cfg = load_config(write(tmp_path, ONE_STAGE), ['model.test_cfg.score_thr="high"'])
    msg = error_of(cfg, reg)
    assert "model.test_cfg.score_thr: expects float (DenseHead's test_cfg), got str 'high'" in msg
    cfg = load_config(write(tmp_path, ONE_STAGE), ["model.train_cfg.allowed_border=true"])
    assert "expects int" in error_of(cfg, reg)  # a bool is not an int to a config
    no_assigner = ONE_STAGE.replace('assigner = { type = "Assigner", pos_iou_thr = 0.5 }\n', "")
    msg = error_of(load_config(write(tmp_path, no_assigner)), reg)
    assert "model.train_cfg.assigner: missing key 'assigner' (assigner table) in DenseHead's train_cfg" in msg


def test_build_refuses_unknown_settings_before_the_factory_runs(reg, tmp_path):
    table = load_config(write(tmp_path, ONE_STAGE), ["model.test_cfg.score_treshold=0.3"])["model"]
    with pytest.raises(ConfigError, match=r"model\.test_cfg\.score_treshold: unknown key 'score_treshold' "
                                          r"in DenseHead's test_cfg; did you mean 'score_thr'\?"):
        reg.build("detector", table, where="model")
    # a head composed in Python checks its own settings
    with pytest.raises(ConfigError, match=r"DenseHead\.test_cfg\.score_treshold: unknown key"):
        DenseHead(3, test_cfg={"score_treshold": 0.3, "score_thr": 0.1, "nms": {}})
    head = DenseHead(3, test_cfg={"score_thr": 0.1, "nms": {"type": "nms"}})
    assert head.test_cfg == {"score_thr": 0.1, "nms": {"type": "nms"}}


def test_a_key_resolves_to_the_kind_its_parent_declares(reg, tmp_path):
    # 'Twin' is a dense head and a RoI box head: inside the RoI head it is the box head (fc_channels)
    base = load_config(write(tmp_path, TWO_STAGE))
    validate_config(base, registry=reg)
    cfg = load_config(write(tmp_path, TWO_STAGE), ["model.roi_head.bbox_head.1.stacked_convs=2"])
    msg = error_of(cfg, reg)
    assert "model.roi_head.bbox_head.1.stacked_convs: unknown key 'stacked_convs' for roi_head 'Twin'" in msg
    # ... and in the detector's rpn_head slot it is the dense head (which declares no settings: the
    # rpn tables then go unchecked)
    cfg = load_config(write(tmp_path, TWO_STAGE), ['model.rpn_head={type = "Twin", stacked_convs = 1}'])
    validate_config(cfg, registry=reg)
    cfg = load_config(write(tmp_path, TWO_STAGE), ['model.rpn_head={type = "Twin", fc_channels = 1}'])
    assert "model.rpn_head.fc_channels: unknown key 'fc_channels' for dense_head 'Twin'" in error_of(cfg, reg)
    # a dense-head name in a RoI-head slot is refused, saying what it is
    cfg = load_config(write(tmp_path, TWO_STAGE),
                      ['model.roi_head.bbox_head.0={type = "DenseHead", num_classes = 1}'])
    msg = error_of(cfg, reg)
    assert "model.roi_head.bbox_head.0.type: unknown roi_head 'DenseHead'" in msg
    assert "'DenseHead' exists as a dense_head" in msg


def test_roi_layer_tables_validate_as_their_kind(reg, tmp_path):
    cfg = load_config(write(tmp_path, TWO_STAGE),
                      ["model.roi_head.bbox_roi_extractor.roi_layer.sampling_ratoi=2"])
    msg = error_of(cfg, reg)
    assert "roi_layer.sampling_ratoi: unknown key 'sampling_ratoi' for roi_layer 'RoILayer'" in msg


def test_built_objects_pass_through_build_and_wrong_kinds_are_refused(reg):
    assigner = Assigner(0.5)
    assert reg.build("task_util", assigner) is assigner
    head = DenseHead(3)
    assert reg.build("dense_head", head) is head
    with pytest.raises(ConfigError, match="model.bbox_head: a dense_head is expected, got a built task_util"):
        reg.build("dense_head", assigner, where="model.bbox_head")
    with pytest.raises(ConfigError, match="a backbone must be a table .* or a built object, got str"):
        reg.build("backbone", "ResNet")
    # a class the registry does not know (the user's own module) is taken as it is
    own = nn.Linear(2, 2)
    assert reg.build("backbone", own) is own


def test_delegated_settings_of_a_built_component_are_checked(reg):
    from detcore.settings import check_settings

    head = DenseHead(3)
    with pytest.raises(ConfigError, match=r"OneStage\.test_cfg\.nms_pr: unknown key 'nms_pr'"):
        check_settings(OneStage, {"bbox_head": head, "test_cfg": {"nms_pr": 1}}, where="OneStage")
    check_settings(OneStage, {"bbox_head": head, "test_cfg": {"nms_pre": 1, "score_thr": 0.1, "nms": {}}})


def test_settings_declarations_derive_and_report_defaults():
    base = Settings(a=Key(int, 1), b=Key(float, REQUIRED), c=Key(bool))
    derived = base.extend(d=Key(str, "x")).without("c")
    assert sorted(derived.keys) == ["a", "b", "d"]
    assert derived.defaults() == {"a": 1, "d": "x"}
    with pytest.raises(TypeError, match="key 'e' must be declared with Key"):
        Settings(e=3)


# -- settings a table passes on to its sub-components (RoI head -> box / mask heads) ---------------


class BoxHeadWithSettings(nn.Module):
    train_settings = Settings(pos_weight=Key(float, -1.0))
    test_settings = Settings(score_thr=Key(float, REQUIRED))

    def __init__(self, fc_channels: int = 16):
        super().__init__()


class MaskHeadWithSettings(nn.Module):
    train_settings = Settings(mask_size=Key(int, REQUIRED))

    def __init__(self):
        super().__init__()


class RoIHead(nn.Module):
    component_kinds = {"bbox_head": "roi_head", "mask_head": "roi_head"}
    train_settings = Settings(assigner=Key(kind="task_util", default=REQUIRED)).including(
        Delegate("bbox_head"), Delegate("mask_head")
    )

    def __init__(self, bbox_head, mask_head=None, train_cfg=None, test_cfg=None):
        super().__init__()


class StagedRoIHead(nn.Module):
    """Cascade-like: one box head and one train table per stage; each stage's table takes the keys
    of that stage's box head."""

    component_kinds = {"bbox_head": "roi_head"}
    train_settings = PerStage(Settings(assigner=Key(kind="task_util")).including(Delegate("bbox_head")))

    def __init__(self, bbox_head, train_cfg=None):
        super().__init__()


@pytest.fixture
def roi_reg(plugin_env):
    _, registry = plugin_env([(
        "roi", "det-plugin-roi", "1.0",
        {
            "detcore_register_roi_heads": {
                "RoIHead": RoIHead, "StagedRoIHead": StagedRoIHead, "Box": BoxHeadWithSettings,
                "Mask": MaskHeadWithSettings, "Plain": BoxHead,
            },
            # also a detector, so that a config's [model] table can hold it
            "detcore_register_detectors": {"StagedModel": StagedRoIHead},
            "detcore_register_task_utils": {"Assigner": Assigner},
        },
    )])
    return registry


def test_included_keys_follow_the_sub_components_present(roi_reg):
    assigner = {"type": "Assigner", "pos_iou_thr": 0.5}
    box, mask = {"type": "Box"}, {"type": "Mask"}
    build = roi_reg.build
    head = {"type": "RoIHead", "bbox_head": box}
    build("roi_head", {**head, "train_cfg": {"assigner": assigner, "pos_weight": 2.0}})
    # mask_size belongs to the mask head: refused without one, with the nearest key of those present
    with pytest.raises(ConfigError, match=r"roi\.train_cfg\.mask_size: unknown key 'mask_size' in RoIHead's "
                                          r"train_cfg.*Known keys: assigner, pos_weight"):
        build("roi_head", {**head, "train_cfg": {"assigner": assigner, "mask_size": 28}}, where="roi")
    # ... accepted (and required) with one; a wrong type names the reader
    build("roi_head", {**head, "mask_head": mask, "train_cfg": {"assigner": assigner, "mask_size": 28}})
    with pytest.raises(ConfigError, match="missing key 'mask_size' .* in MaskHeadWithSettings's train_cfg"):
        build("roi_head", {**head, "mask_head": mask, "train_cfg": {"assigner": assigner}})
    with pytest.raises(ConfigError, match=r"expects float \(BoxHeadWithSettings's train_cfg\), got str"):
        build("roi_head", {**head, "train_cfg": {"assigner": assigner, "pos_weight": "x"}})
    # a box head that declares nothing leaves the table open (it may read anything)
    build("roi_head", {"type": "RoIHead", "bbox_head": {"type": "Plain"},
                       "train_cfg": {"assigner": assigner, "whatever": 1}})


def test_per_stage_tables_take_the_keys_of_their_stage_component(roi_reg, tmp_path):
    text = """
[model]
type = "StagedModel"
bbox_head = [{ type = "Box" }, { type = "Plain" }]
[[model.train_cfg]]
pos_weight = 1.0
[[model.train_cfg]]
pos_weigt = 1.0
"""
    # stage 1's box head declares nothing: its table is open; stage 0's is checked against Box
    validate_config(load_config(write(tmp_path, text)), registry=roi_reg)
    bad = text.replace("pos_weight = 1.0", "pos_wieght = 1.0")
    msg = error_of(load_config(write(tmp_path, bad)), roi_reg)
    assert "model.train_cfg.0.pos_wieght: unknown key 'pos_wieght' in StagedRoIHead's train_cfg; did you " \
        "mean 'pos_weight'?" in msg, msg


def test_validate_accepts_the_shipped_roi_layer_tables():
    """With the real registry and a shipped config: ``roi_layer = {type = "RoIAlign", ...}`` inside the
    extractor validates as the roi_layer kind (the extractor declares it), with RoIAlign's keys."""
    pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
    from detcore.registry import get_registry

    configs = Path(__file__).resolve().parents[2] / "configs"
    path = configs / "faster_rcnn" / "faster_rcnn_r50_fpn_1x_coco.toml"
    cfg = load_config(path)
    layer = "model.roi_head.bbox_roi_extractor.roi_layer"
    assert cfg.get(layer)["type"] == "RoIAlign"
    registry = get_registry()
    validate_config(cfg, registry=registry)
    extractor = registry.build("roi_extractor", cfg.get("model.roi_head.bbox_roi_extractor"))
    assert [m.spatial_scale for m in extractor.roi_layers] == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    bad = load_config(path, [f"{layer}.pool_mod=1"])
    with pytest.raises(ConfigError, match=f"{layer}.pool_mod: unknown key 'pool_mod' for roi_layer 'RoIAl"):
        validate_config(bad, registry=registry)
    wrong_kind = load_config(path, [f'{layer}={{type = "SingleRoIExtractor"}}'])
    with pytest.raises(ConfigError, match="unknown roi_layer 'SingleRoIExtractor'.*exists as a roi_extr"):
        validate_config(wrong_kind, registry=registry)


class Gen:
    def __init__(self, strides=(8,)):
        pass


class GenLoss(nn.Module):
    def __init__(self, loss_weight: float = 1.0):
        super().__init__()


class HeadWithDefaultTable(nn.Module):
    """No component_kinds: the kind of ``prior_generator`` comes from its default table's type."""

    def __init__(self, prior_generator={"type": "Gen"}):  # noqa: B006 - read only
        super().__init__()


def test_a_parameter_default_table_declares_the_kind(plugin_env, tmp_path):
    _, reg = plugin_env([("g", "det-plugin-g", "1.0", {
        "detcore_register_detectors": {"HeadWithDefaultTable": HeadWithDefaultTable},
        "detcore_register_task_utils": {"Gen": Gen},
        "detcore_register_losses": {"GenLoss": GenLoss},
    })])
    assert reg.parameter_kinds(HeadWithDefaultTable) == {"prior_generator": "task_util"}
    text = '[model]\ntype = "HeadWithDefaultTable"\nprior_generator = { type = "Gen", strides = [4] }\n'
    validate_config(load_config(write(tmp_path, text)), registry=reg)
    cfg = load_config(write(tmp_path, text), ['model.prior_generator={type = "GenLoss"}'])
    assert "model.prior_generator.type: unknown task_util 'GenLoss'" in error_of(cfg, reg)
    assert "'GenLoss' exists as a loss" in error_of(cfg, reg)
