"""The renderer's mouth criterion as a learning curve: fine-tune `experiment=renderer_demo` on one speaker's rendered
talking videos and print the jaw probe (metrics/mouth_motion.py) every few generator steps, with the throughput.

    python benchmarks/bench_renderer_mouth.py --trainer gpu --steps 1000 --every 100   # bf16 on a lent GPU
    python benchmarks/bench_renderer_mouth.py --trainer cpu --steps 4 --every 2        # smoke test here

The issue asks for probe r >= 0.5 (mouth change vs jawOpen) after brief training; on this CPU 40 steps give
r = -0.18 and longer runs swing from step to step (docs/renderer.md), so the question is how many GPU steps settle it.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", default="gpu", help="trainer config: gpu (bf16-mixed, one GPU) or cpu")
    parser.add_argument("--steps", type=int, default=1000, help="generator steps")
    parser.add_argument("--every", type=int, default=100, help="probe every this many generator steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--speaker", default="M001")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for the corpus and the run (default: a temporary one)")
    args = parser.parse_args()

    import lightning as L
    from hydra import compose, initialize_config_dir

    from datamodules.corpus import scan_corpus
    from datamodules.demo.build import build_demo_corpus
    from experiments.train import CONFIG_DIR, train
    from datamodules.demo.videos import render_demo_videos

    work = args.work or Path(tempfile.mkdtemp(prefix="renderer_mouth_"))
    start = time.perf_counter()
    corpus = build_demo_corpus(work / "corpus", speakers=3, sentences=1, progress=False)
    records = scan_corpus(corpus, val_speakers=0, test_speakers=0, progress=False).records
    clips = [r.clip_id for r in records if r.speaker == args.speaker and (r.level == 3 or r.emotion == "neutral")]
    report = render_demo_videos(corpus, clip_ids=clips, progress=False)
    print(f"corpus: {report['rendered']} talking videos of {args.speaker} in {time.perf_counter() - start:.0f} s")
    pairs = args.batch * max(args.every, 1)
    overrides = ["experiment=renderer_demo", f"trainer={args.trainer}", "run_id=mouth", f"seed={args.seed}",
                 f"paths.output_root={work / 'outputs'}", f"data.corpus_dir={corpus}",
                 f"paths.cache_dir={work / 'cache'}",
                 f"data.speakers=[{args.speaker}]", "data.split_by=frames", "data.progress=false", "logger=csv",
                 "test=false", f"data.batch_size={args.batch}", f"data.pairs_per_epoch={pairs}",
                 f"trainer.max_steps={2 * args.steps}", "trainer.limit_val_batches=4", "callbacks.progress_bar=null",
                 f"callbacks.mouth_probe.every_n_steps={args.every}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    L.seed_everything(cfg.seed, workers=True)
    start = time.perf_counter()
    metrics = train(cfg)
    seconds = time.perf_counter() - start
    print(f"training: {args.steps} generator steps (batch {args.batch}, 64 px, trainer={args.trainer}) "
          f"in {seconds:.0f} s, "
          f"{args.steps / seconds:.1f} steps/s including validation and probes")
    rows = [row for path in sorted((work / "outputs" / "renderer_demo" / "mouth" / "csv").glob("attempt_*/metrics.csv"))
            for row in csv.DictReader(open(path)) if row.get("probe/mouth_r")]
    for row in rows:
        print(f"probe at step {int(row['step']) + 1:>5}: mouth r {float(row['probe/mouth_r']):+.2f}, mouth change "
              f"{float(row['probe/mouth_change_ratio']):.3g} of the avatar's, upper face "
              f"{float(row['probe/upper_face_ratio']):.2f} of the mouth's")
    print("final: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("val/")))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
