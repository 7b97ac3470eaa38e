"""The editor networks and checkpoints (fastwarp.models)."""

import dataclasses
import json

import pytest
import torch

import fastwarp
from fastwarp._io import atomic_path
from fastwarp.models import DEFAULT_WEIGHTS, EditorConfig, EditorNet, MotionNet, TextureNet

SMALL = EditorConfig(image_size=32, motion_width=8, motion_res_blocks=1, texture_width=8, texture_res_blocks=1)


def _inputs(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.rand(n, 17, generator=g) * 5


def test_motion_net_flow_is_bounded_pixels():
    net = MotionNet(width=8, n_res=1, max_flow=0.1)
    with torch.no_grad():
        net.flow_head.weight.normal_(std=10.0)  # saturate the tanh
        flow = net(*_inputs())
    assert flow.shape == (2, 2, 32, 32)
    assert flow.abs().max() <= 0.1 * 32 + 1e-4
    assert flow.abs().max() > 0.05 * 32  # really saturates: the bound is what holds it


def test_texture_net_ranges():
    texture, mask = TextureNet(width=8, n_res=1)(*_inputs())
    assert texture.shape == (2, 3, 32, 32) and mask.shape == (2, 1, 32, 32)
    assert texture.min() >= -1 and texture.max() <= 1 and mask.min() >= 0 and mask.max() <= 1


def test_untrained_editor_starts_near_identity_warp():
    image, aus = _inputs()
    r = EditorNet(SMALL)(image, aus)
    assert r.flow.abs().max() < 0.5  # pixels: the flow head starts near zero
    assert r.mask.mean() > 0.8       # and the mask keeps the warped image


def test_editor_output_is_reference_composition():
    image, aus = _inputs()
    r = EditorNet(SMALL)(image, aus)
    ref_warped = fastwarp.reference.warp(image, r.flow)
    torch.testing.assert_close(r.warped, ref_warped, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r.output, r.mask * ref_warped + (1 - r.mask) * r.texture, atol=1e-5, rtol=1e-5)


def test_map_size_runs_networks_on_a_coarser_grid():
    """map_size (the lite weights): networks see the area-downsampled image, and the output
    is the full-resolution image warped and blended with the upsampled maps."""
    image, aus = _inputs()
    model = EditorNet(EditorConfig(**{**SMALL.__dict__, "map_size": 16}))
    with torch.no_grad():
        model.motion.flow_head.weight.normal_(std=0.05)  # a real, non-trivial flow
        r = model(image, aus)
    assert r.flow.shape == (2, 2, 16, 16) and r.texture.shape == (2, 3, 16, 16) and r.mask.shape == (2, 1, 16, 16)
    assert r.output.shape == image.shape and r.flow.abs().max() > 0.1
    small = image.reshape(2, 3, 16, 2, 16, 2).mean((3, 5))  # area averaging, written out
    torch.testing.assert_close(r.warped, fastwarp.reference.warp(small, r.flow), atol=1e-5, rtol=1e-5)
    ref = fastwarp.reference
    expected = ref.warp_blend(image, ref.upsample_flow(r.flow, (32, 32)), ref.upsample(r.texture, (32, 32)),
                              ref.upsample(r.mask, (32, 32)))
    torch.testing.assert_close(r.output, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="map_size"):
        EditorNet(EditorConfig(**{**SMALL.__dict__, "map_size": 18}))


def test_gradients_reach_both_networks():
    image, aus = _inputs()
    model = EditorNet(SMALL)
    model(image, aus).output.abs().mean().backward()
    for name in ("motion", "texture"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name


def test_texture_only_ablation_has_no_flow():
    image, aus = _inputs()
    cfg = EditorConfig(**{**SMALL.__dict__, "use_motion": False})
    r = EditorNet(cfg)(image, aus)
    assert EditorNet(cfg).motion is None
    assert torch.count_nonzero(r.flow) == 0
    torch.testing.assert_close(r.output, r.mask * image + (1 - r.mask) * r.texture)


def test_bad_inputs():
    model = EditorNet(SMALL)
    with pytest.raises(ValueError, match=r"image must have shape \[N, 3, S, S\]"):
        model(torch.rand(2, 4, 32, 32), torch.rand(2, 17))
    with pytest.raises(ValueError, match=r"aus must have shape \[2, 17\]"):
        model(torch.rand(2, 3, 32, 32), torch.rand(2, 16))
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.rand(1, 3, 30, 30), torch.rand(1, 17))


def test_save_load_round_trip(tmp_path):
    image, aus = _inputs()
    model = EditorNet(SMALL).eval()
    weights, config = model.save(tmp_path / "ckpt")
    assert weights.name == "ckpt.safetensors" and json.loads(config.read_text())["motion_width"] == 8
    loaded = EditorNet.load(tmp_path / "ckpt")
    torch.testing.assert_close(loaded(image, aus).output, model(image, aus).output, rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        EditorNet.load(tmp_path / "missing")
    EditorNet(SMALL).save(tmp_path / "ckpt")
    cfg = json.loads((tmp_path / "ckpt.json").read_text())
    cfg["motion_width"] = 16
    (tmp_path / "ckpt.json").write_text(json.dumps(cfg))
    with pytest.raises((ValueError, RuntimeError), match="size mismatch|do not match"):
        EditorNet.load(tmp_path / "ckpt")
    (tmp_path / "ckpt.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid editor config"):
        EditorNet.load(tmp_path / "ckpt")


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


@pytest.mark.parametrize("name", [None, "base", "lite"])
def test_bundled_weights_load(name):
    path = DEFAULT_WEIGHTS if name is None else DEFAULT_WEIGHTS.parent / name
    assert path.with_suffix(".safetensors").stat().st_size < 8 * 2**20  # a few MB at most
    assert path.with_suffix(".md").is_file()  # the card
    model = EditorNet.load(name)
    cfg = model.config
    assert cfg.au_names == list(fastwarp.AU_NAMES) and cfg.image_size == 128
    assert {"trained_by", "data", "commit", "validation"} <= set(cfg.extra)  # provenance travels with them
    image, aus = _inputs(1, 128)
    with torch.no_grad():
        r = model(image, aus, torch.zeros_like(aus) if cfg.conditioning == "delta" else None)
    assert torch.isfinite(r.output).all() and r.output.shape == (1, 3, 128, 128)


def test_delta_conditioning_sees_only_the_au_change():
    image, aus = _inputs()
    model = EditorNet(EditorConfig(**{**SMALL.__dict__, "conditioning": "delta"})).eval()
    other = torch.rand(2, 17) * 5
    with torch.no_grad():
        # "No change" is the same condition whatever the face's current AUs are...
        torch.testing.assert_close(model(image, aus, aus).output, model(image, other, other).output)
        # ...and the same change from different starting points is the same edit.
        shift = torch.zeros(2, 17)
        shift[:, 8] = 1.5
        torch.testing.assert_close(model(image, aus + shift, aus).flow, model(image, other + shift, other).flow,
                                   rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(image, aus + shift, aus).flow, model(image, aus, aus).flow)


def _randomised(model):
    """Every parameter random (not the near-identity initialisation): a zero flow must come
    from the construction, not from small weights."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.mark.parametrize("map_size", [0, 16])
def test_identity_gate_zero_change_is_exactly_the_identity(map_size):
    """identity_gate: no AU change gives flow exactly 0 and mask exactly 1 (so output ==
    input bit for bit), whatever the weights; an AU change moves the face and mixes texture."""
    image, aus = _inputs()
    cfg = EditorConfig(**{**SMALL.__dict__, "conditioning": "delta", "identity_gate": True, "map_size": map_size})
    model = _randomised(EditorNet(cfg))
    with torch.no_grad():
        r = model(image, aus, aus)
        assert torch.equal(r.flow, torch.zeros_like(r.flow)) and torch.equal(r.mask, torch.ones_like(r.mask))
        assert torch.equal(r.output, image)
        shift = torch.zeros(2, 17)
        shift[:, 8] = 2.0
        moved = model(image, aus + shift, aus)
        assert moved.flow.abs().amax() > 0.5 and moved.mask.amin() < 0.99
        # The gate min(1, max |change|): half an intensity level lets half the texture in.
        half = model(image, aus + shift / 4, aus)
        ungated = EditorNet(dataclasses.replace(cfg, identity_gate=False))
        ungated.load_state_dict(model.state_dict())
        _, mask = ungated.eval().texture(half.warped, shift / 4)
        torch.testing.assert_close(half.mask, 1 - 0.5 * (1 - mask))
    # Without the gate the same weights have a free flow: the construction is what holds.
    with torch.no_grad():
        assert ungated(image, aus, aus).flow.abs().amax() > 0
    with pytest.raises(ValueError, match="identity_gate needs conditioning='delta'"):
        EditorNet(dataclasses.replace(cfg, conditioning="target"))


def test_delta_conditioning_needs_source_aus():
    image, aus = _inputs()
    model = EditorNet(EditorConfig(**{**SMALL.__dict__, "conditioning": "delta"}))
    with pytest.raises(ValueError, match="pass source_aus"):
        model(image, aus)
    with pytest.raises(ValueError, match=r"source_aus must have shape \[2, 17\]"):
        model(image, aus, torch.rand(2, 5))
    with pytest.raises(ValueError, match="conditioning must be 'target' or 'delta'"):
        EditorNet(EditorConfig(conditioning="relative"))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_editor_runs_under_autocast(backend):
    """Mixed-precision training: under bfloat16 autocast the networks' maps are bfloat16
    and the image float32; the warp ops cast to float32 (like grid_sample) and match the
    float32 composition of the same maps."""
    image, aus = _inputs()
    model = EditorNet(SMALL)
    model.warp_backend = backend
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = model(image, aus)
    assert r.texture.dtype == torch.bfloat16 and r.output.dtype == torch.float32
    expected = fastwarp.reference.warp_blend(image, r.flow.float(), r.texture.float(), r.mask.float())
    # fastwarp's ops compute in float32 under autocast; torch's grid_sample (the reference
    # backend) follows torch's CPU autocast policy, which may run it in bfloat16.
    tol = 1e-5 if backend == "cpu" else 3e-2
    torch.testing.assert_close(r.output, expected, atol=tol, rtol=tol)
    r.output.mean().backward()
    assert all(p.grad is not None for p in model.texture.parameters())
