"""training.evaluate: masked PSNR / SSIM against independent computations, the evaluation of
several models on real held-out pairs (identity baseline, an oracle that outputs the target,
a tiny random model), the tables, the picture grid and the CLI."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fastwarp.au import AU_INDEX
from fastwarp.images import bgr_to_tensor, tensor_to_bgr
from fastwarp.face import VISIBLE_AUS, FaceMesh, estimate_aus, face_mask
from fastwarp.face.landmarks import OUTER_LIPS
from fastwarp.models import EditorConfig, EditResult, EditorNet
from training import evaluate as ev
from training.data import load_dataset, prepare_dataset

FACES = Path(os.environ.get("FASTWARP_FACES_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"))
VIDEOS = ["dt_M030_surprised.mp4", "dt_W009_happy.mp4"]  # two people, expressions that change within 4 frames
SIZE = 128  # MediaPipe finds faces reliably in 128 px crops, less so in 64 px ones
TINY = EditorConfig(image_size=SIZE, motion_width=4, motion_res_blocks=1, texture_width=4, texture_res_blocks=1,
                    conditioning="delta")


def _images(seed: int = 0, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A smooth image and a noisy copy of it (uint8 [size, size, 3])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1) % 256
    noisy = np.clip(img + rng.normal(0, 12, img.shape), 0, 255)
    return img.astype(np.uint8), noisy.astype(np.uint8)


def _ssim_map_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM map (Wang et al. 2004, eq. 13) with a 7x7 uniform window, sample covariances and
    K1 = 0.01, K2 = 0.03, L = 255, averaged over channels; written out from the paper."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2, n = (0.01 * 255) ** 2, (0.03 * 255) ** 2, 49
    maps = []
    for ch in range(3):
        x, y = a[..., ch], b[..., ch]
        mx, my = uniform_filter(x, 7), uniform_filter(y, 7)
        vx = (uniform_filter(x * x, 7) - mx * mx) * n / (n - 1)
        vy = (uniform_filter(y * y, 7) - my * my) * n / (n - 1)
        cxy = (uniform_filter(x * y, 7) - mx * my) * n / (n - 1)
        maps.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return np.mean(maps, axis=0)


# --- masked PSNR / SSIM -----------------------------------------------------------------------

def test_masked_psnr_matches_independent_computations():
    img, noisy = _images()
    mask = np.zeros(img.shape[:2], bool)
    mask[10:40, 5:30] = True
    mse = np.mean((img[mask].astype(np.float64) - noisy[mask]) ** 2)
    got = ev.masked_psnr(noisy, img, mask)
    assert got == pytest.approx(10 * np.log10(255 ** 2 / mse), rel=1e-12)
    assert got == pytest.approx(peak_signal_noise_ratio(img[mask], noisy[mask], data_range=255), rel=1e-12)
    # only the masked pixels count
    other = noisy.copy()
    other[~mask] = 0
    assert ev.masked_psnr(other, img, mask) == got
    assert ev.masked_psnr(img, img, mask) == math.inf
    assert ev.masked_psnr(noisy, img, mask.astype(np.float32)) == got  # any nonzero = measured


def test_masked_ssim_matches_skimage_and_reference():
    img, noisy = _images()
    ones = np.ones(img.shape[:2], bool)
    assert ev.masked_ssim(img, img, ones) == pytest.approx(1.0, abs=1e-12)
    whole = ev.masked_ssim(noisy, img, ones)
    assert 0 < whole < 0.99
    assert whole == pytest.approx(structural_similarity(noisy, img, channel_axis=-1, data_range=255), abs=1e-12)
    mask = np.zeros(img.shape[:2], bool)
    mask[0:30, 10:44] = True  # reaches the border, which is left out
    ref = _ssim_map_reference(noisy, img)[3:30, 10:44].mean()
    assert ev.masked_ssim(noisy, img, mask) == pytest.approx(ref, abs=1e-9)


def test_masked_metrics_input_errors():
    img, noisy = _images()
    ones = np.ones(img.shape[:2], bool)
    with pytest.raises(ValueError, match="mask is empty"):
        ev.masked_psnr(img, noisy, np.zeros_like(ones))
    with pytest.raises(ValueError, match=r"mask must have shape \(48, 48\)"):
        ev.masked_psnr(img, noisy, ones[:10])
    with pytest.raises(ValueError, match="output and target differ in shape"):
        ev.masked_ssim(img, noisy[:40], ones)
    with pytest.raises(ValueError, match="output must be a uint8"):
        ev.masked_ssim(img.astype(np.float32), noisy, ones)
    with pytest.raises(ValueError, match="at least 7 pixels"):
        ev.masked_ssim(img[:5, :5], noisy[:5, :5], ones[:5, :5])
    edge = np.zeros_like(ones)
    edge[0, :] = True
    with pytest.raises(ValueError, match="border"):
        ev.masked_ssim(img, noisy, edge)


# --- evaluation on real pairs -----------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    if not all((FACES / "videos" / v).is_file() for v in VIDEOS):
        pytest.skip(f"real face videos {VIDEOS} not found in {FACES}/videos")
    out = tmp_path_factory.mktemp("eval") / "ds"
    prepare_dataset(FACES, out, size=SIZE, frames_per_video=4, progress=False, videos=VIDEOS)
    return out


@pytest.fixture(scope="module")
def setup(data_dir):
    dataset = load_dataset(data_dir)
    pairs = ev.validation_pairs(dataset, sorted(dataset), seed=0, pairs_per_video=3)
    assert len(pairs) == 6
    torch.manual_seed(0)
    tiny = EditorNet(TINY).eval()
    mesh = FaceMesh(static_image_mode=True)
    yield dataset, pairs, tiny, mesh
    mesh.close()


class Oracle(torch.nn.Module):
    """The perfect edit: returns the real target frame of each (source, target AUs) asked for."""

    def __init__(self, dataset: dict, pairs) -> None:
        super().__init__()
        self.config = EditorConfig(image_size=SIZE, use_motion=False)
        self.motion = None
        self.targets = {(dataset[v]["crops"][s].tobytes(), dataset[v]["aus"][t].astype(np.float32).tobytes()):
                        dataset[v]["crops"][t] for v, s, t in pairs}

    def forward(self, image, aus, source_aus=None):
        src = tensor_to_bgr(image)
        out = bgr_to_tensor(np.stack([self.targets[(src[i].tobytes(), aus[i].numpy().tobytes())]
                                      for i in range(len(src))]))
        zeros = torch.zeros_like(out[:, :1])
        return EditResult(out, torch.zeros_like(out[:, :2]), image, out, zeros)


def _nme(pred: np.ndarray, target: np.ndarray) -> float:
    iod = np.linalg.norm(target[33, :2] - target[263, :2])
    return float(np.mean(np.linalg.norm(pred[:, :2] - target[:, :2], axis=1)) / iod)


def test_evaluate_models_rows_against_independent_metrics(setup):
    dataset, pairs, tiny, mesh = setup
    oracle = Oracle(dataset, pairs)
    result = ev.evaluate_models({"tiny": tiny, "oracle": oracle}, dataset, pairs, mesh, batch_size=4, progress=False)
    assert list(result) == ["identity", "tiny", "oracle", "n_pairs", "pairs", "mouth_pairs"]
    assert result["pairs"] == len(pairs)

    # identity row: recomputed here from the source and target frames
    ref = {k: [] for k in ("l1", "psnr", "ssim", "nme", "au_err")}
    mouth_psnr = []
    ref_au = {a: [] for a in VISIBLE_AUS}
    with FaceMesh(static_image_mode=True) as mesh2:
        for v, s, t in pairs:
            src, tgt = dataset[v]["crops"][s], dataset[v]["crops"][t]
            mask = face_mask(dataset[v]["landmarks"][t], SIZE, feather=0) > 0
            ref["l1"].append(np.abs(src.astype(np.float64) - tgt).mean() / 127.5)
            ref["psnr"].append(peak_signal_noise_ratio(tgt[mask], src[mask], data_range=255))
            lm_cache = dataset[v]["landmarks"]
            gaps = [np.mean([np.linalg.norm(lm[a] - lm[b]) for a, b in ((13, 14), (82, 87), (312, 317))])
                    / np.linalg.norm(lm[263] - lm[33]) for lm in (lm_cache[s], lm_cache[t])]
            if gaps[1] - gaps[0] >= ev.MOUTH_OPENS:  # the mouth opens: PSNR inside the target's outer lips
                lips = np.zeros((SIZE, SIZE), np.uint8)
                cv2.fillPoly(lips, [np.round(lm_cache[t][list(OUTER_LIPS)]).astype(np.int32)], 1)
                mouth_psnr.append(peak_signal_noise_ratio(tgt[lips > 0], src[lips > 0], data_range=255))
            inner = mask.copy()
            inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
            ref["ssim"].append(_ssim_map_reference(src, tgt)[inner].mean())
            lm_s, lm_t = mesh2.detect(src)[0], mesh2.detect(tgt)[0]
            ref["nme"].append(_nme(lm_s, lm_t))
            err = np.abs(estimate_aus(lm_s) - estimate_aus(lm_t))
            visible = [AU_INDEX[a] for a in VISIBLE_AUS]
            ref["au_err"].append(err[visible].mean())
            for a in VISIBLE_AUS:
                ref_au[a].append(err[AU_INDEX[a]])
    ident = result["identity"]
    assert result["n_pairs"]["identity"] == len(pairs)
    for key, vals in ref.items():
        assert ident[key] == pytest.approx(np.mean(vals), rel=1e-5, abs=1e-6), key
    for a, vals in ref_au.items():
        assert ident[f"au_err_{a}"] == pytest.approx(np.mean(vals), abs=1e-5), a
    assert ident["psnr"] < 40 and ident["nme"] > 0.003 and ident["au_err"] > 0.1  # the pairs do differ
    assert result["mouth_pairs"] == len(mouth_psnr)
    if mouth_psnr:
        assert ident["psnr_mouth"] == pytest.approx(np.mean(mouth_psnr), rel=1e-5)
    else:
        assert "psnr_mouth" not in ident

    # the oracle outputs the target: perfect scores
    best = result["oracle"]
    assert result["n_pairs"]["oracle"] == len(pairs)
    assert best["l1"] == 0.0 and best["psnr"] == math.inf and best["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert best["nme"] < 1e-4 and best["nme_mouth"] < 1e-4 and best["au_err"] < 1e-4

    # a random model: every metric present and finite
    row = result["tiny"]
    mouth_key = set() if mouth_psnr else {"psnr_mouth"}
    assert set(row) == (set(ev.METRICS) - mouth_key) | {f"au_err_{a}" for a in VISIBLE_AUS}
    assert all(np.isfinite(v) for v in row.values())
    assert row["psnr"] < 40

    # tables: identity first, then the models in order; every column
    table = ev.format_table(result).splitlines()
    assert table[0].split("|")[2:-1] == [f" {k} " for k in ev.METRICS] + [" pairs "]
    assert [line.split("|")[1].strip() for line in table[2:]] == ["identity", "tiny", "oracle"]
    assert f"| {ident['psnr']:.2f} |" in table[2] and table[2].endswith(f"| {len(pairs)} |")
    assert "| inf |" in table[4]
    au_table = ev.format_au_table(result).splitlines()
    assert au_table[0].split("|")[2:-1] == [f" {a} " for a in VISIBLE_AUS]
    assert f"| {ident['au_err_AU12']:.4f} |" in au_table[2] and len(au_table) == 5

    # the old single-model call keeps its shape
    old = ev.evaluate_pairs(oracle, dataset, pairs[:2], mesh, progress=False)
    assert set(old) == {"model", "identity", "n_pairs"} and old["n_pairs"] == {"identity": 2, "model": 2}
    assert old["model"]["psnr"] == math.inf
    assert "| model |" in ev.format_table(old)


def test_evaluate_models_input_errors(setup):
    dataset, pairs, tiny, mesh = setup
    with pytest.raises(ValueError, match="'identity' is reserved"):
        ev.evaluate_models({"identity": tiny}, dataset, pairs, mesh, progress=False)
    small = EditorNet(EditorConfig(**{**TINY.__dict__, "image_size": 64}))
    with pytest.raises(ValueError, match="'small' takes 64 px crops, the dataset has 128 px"):
        ev.evaluate_models({"small": small}, dataset, pairs, mesh, progress=False)
    empty = ev.evaluate_models({"tiny": tiny}, dataset, [], mesh, progress=False)
    assert empty == {"identity": {}, "tiny": {}, "n_pairs": {"identity": 0, "tiny": 0}, "pairs": 0, "mouth_pairs": 0}
    assert "| tiny | n/a |" in ev.format_table(empty)


def test_write_grid(setup, tmp_path):
    dataset, pairs, tiny, _ = setup
    oracle = Oracle(dataset, pairs)
    models = {"tiny": tiny, "oracle": oracle}
    assert ev.grid_columns(models) == [("source", ""), ("target", ""), ("tiny", "output"), ("tiny", "warped"),
                                       ("tiny", "texture"), ("tiny", "mask"), ("oracle", "output")]
    path = ev.write_grid(tmp_path / "grid.png", models, dataset, pairs, n=4)
    grid = cv2.imread(str(path))
    cell, head = max(SIZE, ev.GRID_MIN_CELL), ev.GRID_HEADER
    assert grid.shape == (head + 4 * cell, 7 * cell, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temp file left
    assert (grid[:head] > 200).any()  # header labels drawn
    chosen = [pairs[i] for i in (0, 2, 3, 5)]  # 4 evenly spaced of 6
    for r, (v, s, t) in enumerate(chosen):
        rows = slice(head + r * cell, head + (r + 1) * cell)
        tgt = cv2.resize(dataset[v]["crops"][t], (cell, cell), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(grid[rows, cell:2 * cell], tgt)  # target column
        np.testing.assert_array_equal(grid[rows, 6 * cell + 2:], tgt[:, 2:])  # oracle output (after the separator)
        src = cv2.resize(dataset[v]["crops"][s], (cell, cell), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(grid[rows, :cell][:-16], src[:-16])  # source, above its label strip
    with pytest.raises(ValueError, match="no pairs"):
        ev.write_grid(tmp_path / "none.png", models, dataset, [])


def test_cli_writes_table_metrics_and_grid(data_dir, tmp_path, capsys):
    torch.manual_seed(1)
    EditorNet(TINY).save(tmp_path / "w" / "tiny")
    EditorNet(EditorConfig(**{**TINY.__dict__, "use_motion": False})).save(tmp_path / "w" / "tex")
    out = tmp_path / "out"
    ev.main(["--data", str(data_dir), "--weights", f"tiny={tmp_path / 'w' / 'tiny'}",
             "--weights", str(tmp_path / "w" / "tex.safetensors"), "--out", str(out), "--val-fraction", "0.5",
             "--pairs-per-video", "2", "--grid-pairs", "2", "--no-progress"])
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "metrics.json", "table.md"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["result"])[:3] == ["identity", "tiny", "model"]
    assert len(metrics["pairs"]) == 2 and len(metrics["validation_videos"]) == 1
    assert metrics["weights"] == {"tiny": str(tmp_path / "w" / "tiny"), "model": str(tmp_path / "w" / "tex")}
    table = (out / "table.md").read_text()
    assert ev.format_table(metrics["result"]) in table and ev.format_au_table(metrics["result"]) in table
    assert "## Legend" in table and ev.format_table(metrics["result"]) in printed
    assert str(out / "grid.png") in printed
    # tiny (motion: 4 panels) + model (texture-only: output only) + source, target
    assert cv2.imread(str(out / "grid.png")).shape == (ev.GRID_HEADER + 2 * 128, 7 * 128, 3)


def test_cli_weights_errors(data_dir, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "editor"
    with pytest.raises(SystemExit):
        ev.main(["--data", str(data_dir), "--weights", f"x={missing}", "--out", str(tmp_path / "o")])
    assert f"checkpoint file not found: {missing}.safetensors" in capsys.readouterr().err
    EditorNet(TINY).save(tmp_path / "w")
    with pytest.raises(SystemExit):
        ev.main(["--data", str(data_dir), "--weights", f"a={tmp_path / 'w'}", "--weights", f"a={tmp_path / 'w'}"])
    assert "'a' given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ev.main(["--data", str(data_dir), "--weights", f"pairs={tmp_path / 'w'}"])
    assert "'pairs' is reserved" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
