"""The card of bundled weights (``fastwarp/weights/<name>.md``): what the checkpoint is, how
it was made (from the provenance the trainer stores in its JSON) and what it scores (the
evaluation's ``table.md``).

CLI: ``python -m training.card base --eval runs/eval`` (after ``--install base`` and
``python -m training.evaluate ... --out runs/eval``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastwarp._io import atomic_path
from fastwarp.models import WEIGHTS_DIR

_ABOUT = {
    "base": "the default weights: the full model (motion + texture) at 128 px",
    "lite": "for real-time editing on a CPU: a narrower network on a 64 px grid, whose maps "
            "fastwarp.warp_blend upsamples inside the kernel",
}


_IDENTITY = """
Identity by construction (`identity_gate`): no AU-independent flow and the texture's share
gated by the size of the AU change, so no AU change gives flow exactly 0 and mask exactly
1, and the editor returns its input bit for bit."""


def card_text(name: str, config: dict, table: str, note: str = "", recipe: str = "") -> str:
    """Markdown card from the weights' JSON ``config``, an evaluation ``table`` (its
    headings are demoted under the card's) and an optional ``note``."""
    table = "\n".join("##" + line if line.startswith("#") else line for line in table.strip().splitlines())
    extra = config.get("extra", {})
    train = extra.get("config", {})
    data = extra.get("data", {})
    grid = config.get("map_size") or config["image_size"]
    val = ", ".join(data.get("validation_videos", [])) or "n/a"
    return f"""# fastwarp bundled weights: `{name}`

{_ABOUT.get(name, "bundled weights")}. Files: `{name}.safetensors` (float16; loading converts
to float32) and `{name}.json` (architecture, AU order, provenance).

## Architecture

EditorNet: MotionNet + TextureNet, GANimation's generator trunk (AU-conditioned instance
norms; the motion net adds learned per-AU motion templates) at width {config['motion_width']} with
{config['motion_res_blocks']} residual blocks each, input {config['image_size']} px, maps on a {grid} px grid, max flow
{config['max_flow']} x image size, conditioned on `{config['conditioning']}` AUs, motion {'on' if config['use_motion'] else 'off'}.{_IDENTITY if config.get('identity_gate') else ''}

## How they were made

- Command: `{extra.get('trained_by', 'n/a')}` at commit `{extra.get('commit', 'n/a')}`, after
  `python -m training.data --faces ../shared/data/faces --out .cache/dataset128 --size 128`.
- Data: {len(data.get('train_videos', []))} videos of `../shared/data/faces` ({data.get('train_pairs', 'n/a')} frame pairs within
  {train.get('max_pose_diff', 'n/a')} rad of head pose); held out by identity: {val}.
- {extra.get('steps', 'n/a')} steps ({extra.get('generator_steps', 'n/a')} generator updates) of batch {extra.get('batch', 'n/a')} in
  {extra.get('train_minutes', 'n/a')} min on {extra.get('machine', 'n/a')}.
- Loss weights: adversarial {train.get('w_adv')}, gradient penalty {train.get('w_gp')}, AU regression
  {train.get('w_au')}, cycle {train.get('w_cycle')}, reconstruction {train.get('w_rec')}, landmark flow
  {train.get('w_landmark')}, flow smoothness {train.get('w_flow_tv')}, mask {train.get('w_mask')} (on the
  {train.get('mask_penalty')} share), mask TV {train.get('w_mask_tv')}; critic width {train.get('critic_width')}
  (cap {train.get('critic_max_width')}), {train.get('n_critic')} critic step(s) per generator step; Adam
  lr {train.get('lr')}, betas ({train.get('beta1')}, {train.get('beta2')}). The recipe with its reasons:
  `{recipe or f"training/configs/{name}.toml"}`.
{("- " + note) if note else ""}

## Evaluation (held-out videos)

{table.strip()}

## Caveats

- AU targets come from fastwarp's geometric estimator (MediaPipe landmarks), not OpenFace.
- {extra.get('licence_note', 'see ../shared/data/faces/MANIFEST.csv for the footage licences')}.
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.card", description=__doc__.splitlines()[0])
    ap.add_argument("name", help="bundled weights name (base, lite)")
    ap.add_argument("--eval", required=True, help="folder with the evaluation's table.md")
    ap.add_argument("--note", default="", help="one more line for the card's 'How they were made'")
    ap.add_argument("--recipe", default="", help="the recipe's path (default: training/configs/<name>.toml)")
    args = ap.parse_args(argv)
    config_path = WEIGHTS_DIR / f"{args.name}.json"
    table_path = Path(args.eval) / "table.md"
    for p in (config_path, table_path):
        if not p.is_file():
            ap.error(f"not found: {p}")
    config = json.loads(config_path.read_text())
    text = card_text(args.name, config, table_path.read_text(), args.note, args.recipe)
    metrics_path = Path(args.eval) / "metrics.json"
    if metrics_path.is_file():  # the scores travel with the weights too
        metrics = json.loads(metrics_path.read_text()).get("result", {})
        if args.name in metrics:
            config.setdefault("extra", {})["validation"] = {
                "model": metrics[args.name], "identity": metrics["identity"],
                "n_pairs": metrics.get("n_pairs", {}), "table": str(table_path)}
            with atomic_path(config_path) as tmp:
                tmp.write_text(json.dumps(config, indent=2) + "\n")
    with atomic_path(WEIGHTS_DIR / f"{args.name}.md") as tmp:
        tmp.write_text(text)
    print(f"wrote {WEIGHTS_DIR / (args.name + '.md')}")


if __name__ == "__main__":
    main()
