"""Your own images and your own network (issue 15), through the command line and configs only.

A user's folder of coloured shapes (tests/custom_example/shapes.py) and a small residual CNN with
in-place ReLUs and no ``features`` attribute (tests/custom_example/tiny_resnet.py, copied into the
working directory as ``my_net.py``: the README's worked example, whose commands are checked to be
these): train.py, visualize.py
job=all and job=evaluate; Grad-CAM equal to Captum's; a greyscale 32x32 folder; a plain state_dict
trained "elsewhere"; and the bad inputs, each a clear error.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.storage.h5store import H5Run
from tests.conftest import run_cli
from tests.custom_example.shapes import CLASSES, make_folder
from tests.custom_example.tiny_resnet import TinyResNet

EXAMPLE = Path(__file__).parent / "custom_example" / "tiny_resnet.py"
QUIET = ["trainer=cpu", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "data.progress=false"]
MODEL = ["model=custom", "model.net._target_=my_net.TinyResNet", "+model.net.in_channels=${data.channels}",
         "+model.net.num_classes=${data.num_classes}"]
SMALL_VIS = ["num_images=2", "filters.steps=3", "filters.max_filters=4", "data.progress=false"]
SMALL_EVAL = ["evaluate.methods=[gradcam,guided_gradcam,saliency]", "evaluate.num_images=6",
              "evaluate.faithfulness_images=2", "evaluate.sanity_images=2", "evaluate.sanity_repeats=1",
              "evaluate.deletion_steps=4", "data.progress=false"]


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _refused(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for n in needles:
        assert n in proc.stderr, proc.stderr[-3000:]


def _workdir(root: Path, folder: str, size: int, grey: bool) -> Path:
    make_folder(root / folder, per_class=8, size=size, grey=grey)
    shutil.copy(EXAMPLE, root / "my_net.py")   # "my own module", importable from the working directory
    return root


def _vis_dir(root: Path, job: str) -> Path:
    return max((root / "outputs" / "visualize" / "image_folder" / job).iterdir())


def _net_from(ckpt: Path, **kw) -> TinyResNet:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    net = TinyResNet(**kw)
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    return net.eval()


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    root = _workdir(tmp_path_factory.mktemp("own_rgb"), "shapes", 64, grey=False)
    data = ["dataset=image_folder", "data.root=shapes"]
    _ok(run_cli("train.py", [*data, *MODEL, *QUIET], cwd=root))
    run = next((root / "outputs" / "train" / "image_folder" / "custom").iterdir())
    _ok(run_cli("visualize.py", ["job=all", *data, *SMALL_VIS, "layer=[block.conv1,last_conv]"], cwd=root))
    _ok(run_cli("visualize.py", ["job=evaluate", *data, *SMALL_EVAL], cwd=root))
    return root, run


def _shell(args) -> str:
    return " ".join(f"'{a}'" if "$" in a else a for a in args)


def test_readme_worked_example_is_what_runs_here():
    readme = (Path(__file__).parents[1] / "docs" / "own-data-and-model.md").read_text()   # linked from the README
    data = "dataset=image_folder data.root=shapes"
    for line in (f"python train.py {data} {_shell(MODEL)}", f"python visualize.py job=all {data}",
                 f"python visualize.py job=evaluate {data}",
                 f"python visualize.py ckpt=weights.pt {_shell(MODEL)} {data} job=gradcam"):
        assert line in readme, line


def test_trains_and_visualizes_own_images_and_network(rgb):
    root, run = rgb
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "complete" and rec["dataset"] == "image_folder" and rec["model"] == "custom"
    names = [r["name"] for r in json.loads((run / "layers.json").read_text())]
    assert {"stem.0", "block.conv1", "block.relu", "block.out_relu", "last_conv", "fc"} <= set(names)
    cfg = (run / "config.yaml").read_text()
    assert "channels: 3" in cfg and "num_classes: 3" in cfg   # inferred from the folder
    with H5Run(_vis_dir(root, "all") / "visualization.h5") as h5:
        assert h5.inputs()["images"].shape == (2, 3, 64, 64)
        assert h5.attribution_heads("gradcam") == ["class"]
        assert h5.attribution("gradcam", "class", "last_conv")["maps"].shape == (2, 64, 64)
    evaluation = json.loads((_vis_dir(root, "evaluate") / "summary.json").read_text())
    assert evaluation["model"] == "custom"
    assert (_vis_dir(root, "evaluate") / "evaluation.csv").is_file()


def test_gradcam_equals_captum(rgb):
    from captum.attr import LayerGradCam

    root, run = rgb
    with H5Run(_vis_dir(root, "all") / "visualization.h5") as h5:
        x = torch.from_numpy(h5.inputs()["images"])
        stored = h5.attribution("gradcam", "class", "last_conv")
    net = _net_from(run / "checkpoints" / "best.ckpt")
    target = torch.from_numpy(np.asarray(stored["targets"])).long()
    ours = torch.from_numpy(np.asarray(stored["layer_maps"]))
    captum = LayerGradCam(net, net.last_conv).attribute(x, target=target, relu_attributions=True)[:, 0].detach()
    diff = float((ours - captum).abs().max())
    print(f"Grad-CAM vs Captum LayerGradCam at last_conv (stored by visualize.py): max abs difference {diff:.2e} "
          f"(map max {float(captum.max()):.3g})")
    assert diff <= 1e-5 * max(1.0, float(captum.abs().max()))
    # at the residual block, whose output is an in-place ReLU's: the pipeline's Grad-CAM on the model as
    # it is, Captum on a copy with out-of-place ReLUs (the same function)
    from copy import deepcopy

    from pipeline.attribution.gradcam import GradCAM

    plain = deepcopy(net)
    for m in plain.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    ours = GradCAM(net, "block")(x, target).layer_maps
    ref = LayerGradCam(plain, plain.block).attribute(x, target=target, relu_attributions=True)[:, 0].detach()
    diff = float((ours - ref).abs().max())
    print(f"Grad-CAM vs Captum at block (in-place ReLU output): max abs difference {diff:.2e} "
          f"(map max {float(ref.max()):.3g})")
    assert float(ref.abs().max()) > 0 and diff <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_greyscale_32px_folder(tmp_path):
    root = _workdir(tmp_path, "grey", 32, grey=True)
    data = ["dataset=image_folder", "data.root=grey", "data.image_size=32"]
    _ok(run_cli("train.py", [*data, *MODEL, *QUIET], cwd=root))
    _ok(run_cli("visualize.py", ["job=all", *data, *SMALL_VIS, "layer=last_conv"], cwd=root))
    with H5Run(_vis_dir(root, "all") / "visualization.h5") as h5:
        assert h5.inputs()["images"].shape == (2, 1, 32, 32)
        assert h5.attribution("gradcam", "class", "last_conv")["maps"].shape == (2, 32, 32)


def test_plain_state_dict_trained_elsewhere(rgb):
    root, run = rgb
    net = _net_from(run / "checkpoints" / "best.ckpt")
    torch.save(net.state_dict(), root / "weights.pt")
    data = ["dataset=image_folder", "data.root=shapes"]
    args = ["ckpt=weights.pt", *MODEL, *data, "job=gradcam", "num_images=2", "hydra.run.dir=outputs/sd"]
    _ok(run_cli("visualize.py", args, cwd=root))
    with H5Run(root / "outputs" / "sd" / "visualization.h5") as h5, \
            H5Run(_vis_dir(root, "all") / "visualization.h5") as ref:
        np.testing.assert_allclose(h5.attribution("gradcam", "class", "last_conv")["maps"],
                                   ref.attribution("gradcam", "class", "last_conv")["maps"], atol=1e-6)
    state = net.state_dict()
    del state["fc.bias"]
    state["last_conv.weight"] = state["last_conv.weight"][:4]
    torch.save(state, root / "bad.pt")
    _refused(run_cli("visualize.py", [*args[1:-1], "ckpt=bad.pt", "hydra.run.dir=outputs/bad"], cwd=root),
             "missing from the file: fc.bias", "last_conv.weight (4, 8, 3, 3) vs (8, 8, 3, 3)")


def test_wrong_target_is_a_clear_error(tmp_path):
    root = _workdir(tmp_path, "shapes", 16, grey=False)
    _refused(run_cli("train.py", ["dataset=image_folder", "data.root=shapes", *MODEL[:1],
                                  "model.net._target_=my_net.NoSuchNet", *MODEL[2:], *QUIET], cwd=root),
             "model.net._target_=my_net.NoSuchNet: cannot import it")


def _build(root: Path, *overrides):
    from pipeline.training.train import build
    from tests.conftest import compose_cfg

    target = "tests.custom_example.tiny_resnet."
    model = [MODEL[0], f"model.net._target_={target}TinyResNet", *MODEL[2:]]
    return build(compose_cfg(root, ["dataset=image_folder", f"data.root={root / 'shapes'}", *model, *QUIET,
                                    *[o.replace("my_net.", target) for o in overrides]]))


def _build_error(root, needles, *overrides):
    with pytest.raises(Exception) as info:
        _build(root, *overrides)
    exc = info.value if isinstance(info.value, ValueError) else info.value.__cause__
    assert isinstance(exc, ValueError), repr(info.value)
    for n in needles:
        assert n in str(exc), str(exc)


def test_bad_inputs_are_clear_errors(tmp_path):
    make_folder(tmp_path / "shapes", per_class=4, size=16)
    _build_error(tmp_path, ["it must return logits", "NotLogits"], "model.net._target_=my_net.NotLogits")
    _build_error(tmp_path, ["model.net._target_=", "NoSuchNet", "cannot import"], "model.net._target_=my_net.NoSuchNet")
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="plain classes"):   # two heads, but the folder's labels are plain classes
        _build(tmp_path, "+model.net.heads=[a,b]")
    dm, module, _ = _build(tmp_path, "+model.net.heads=[shape]")   # a dict with one head: that head's name
    assert module.head_classes == {"shape": 3} and module.main_head == "shape"
    dm.setup("fit")
    loss, preds, targets = module._step(next(iter(dm.train_dataloader())))
    assert loss.isfinite() and set(preds) == set(targets) == {"shape"}


def test_bad_folders_are_clear_errors(tmp_path):
    from pipeline.data.image_folder import ImageFolderError
    from pipeline.data.image_folder_datamodule import ImageFolderDataModule

    make_folder(tmp_path / "shapes", per_class=4, size=16)
    one = tmp_path / "one"
    shutil.copytree(tmp_path / "shapes" / "disc", one / "disc")
    with pytest.raises(ImageFolderError, match=r"one class folder \(disc/\).*at least two classes"):
        ImageFolderDataModule(root=str(one))
    Image.fromarray(np.zeros((16, 16, 4), np.uint8)).save(tmp_path / "shapes" / "disc" / "rgba.png")
    (tmp_path / "shapes" / "cross" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "shapes" / "square" / "notes.txt").write_text("x")
    (tmp_path / "shapes" / "empty").mkdir()
    with pytest.raises(ImageFolderError) as info:
        ImageFolderDataModule(root=str(tmp_path / "shapes"))
    for needle in ("disc/rgba.png: 4-channel image", "cross/broken.png: cannot be read as an image",
                   "square/notes.txt: not an image file", "empty/: class folder holds no images", "4 problem(s)"):
        assert needle in str(info.value), str(info.value)


def test_normalization_inside_the_forward(tmp_path):
    make_folder(tmp_path / "shapes", per_class=4, size=16)
    dm, module, _ = _build(tmp_path, "model.normalize={mean:[0.5,0.4,0.3],std:[0.25,0.2,0.5]}")
    net = module.net.eval()
    x = torch.rand(2, 3, 16, 16)
    plain = TinyResNet()
    plain.load_state_dict(net.state_dict())
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.25, 0.2, 0.5]).view(1, 3, 1, 1)
    torch.testing.assert_close(net(x), plain.eval()((x - mean) / std))
    assert module.hparams.normalize == {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.5]}
    from pipeline.models.custom import CustomModelError

    with pytest.raises(Exception) as info:
        _build(tmp_path, "model.normalize={mean:[0.5],std:[0]}")
    assert isinstance(info.value.__cause__ or info.value, CustomModelError)
    assert "std must be > 0" in str(info.value.__cause__ or info.value)
