"""Speed and memory of whole-image prediction (model.stitch with a U-Net) on synthetic images.

    python benchmarks/predict_speed.py                          # a fresh quick-profile net (base 8), CPU
    python benchmarks/predict_speed.py --study-name cells       # the first model the export would write
    python benchmarks/predict_speed.py --sizes 1024 4000 --device cuda

For each square size, one synthetic image (dark, with bright discs about 11 px across) is
predicted through blended 50%-overlapping windows of the net's tile size, as
``python -m search.predict`` does, then counted whole with the watershed counter at its
defaults. Printed per size: megapixels per second of the prediction (the first size also
pays the warm-up), seconds of the counting, and the process's peak RSS so far (getrusage);
then the device, the torch thread count and a JSON line of the same numbers.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from model.count import count_setting  # noqa: E402
from model.device import pick_device  # noqa: E402
from model.infer import predict_prob  # noqa: E402
from model.stitch import stitch_predict  # noqa: E402
from model.train import seeded_net  # noqa: E402
from model.unet import UNetConfig  # noqa: E402
from search import members, space  # noqa: E402
from search.predict import BATCH_SIZE  # noqa: E402
from search.runtime.artifacts import project_dir  # noqa: E402
from search.runtime.storage import find_storage, given_storage, load_existing_study  # noqa: E402


def synthetic_image(side: int, seed: int = 0) -> np.ndarray:
    """A dark ``side x side`` uint8 image with a bright disc of radius 5 every ~400 px^2."""
    rng = np.random.default_rng(seed)
    image = rng.normal(20, 5, (side, side)).clip(0, 255).astype(np.uint8)
    for r, c in rng.integers(0, side, size=(side * side // 400, 2)):
        image[max(r - 5, 0) : r + 6, max(c - 5, 0) : c + 6] = 180  # squares: cheap to draw at 4000 px
    return image


def predictor_and_tile(args, device):
    """The study's first export member's windows predictor and tile size, or a fresh quick-profile net's on 128 px."""
    if args.study_name is None:
        net = seeded_net(UNetConfig(base=space.PROFILES["quick"].base), 0, device).eval()
        return functools.partial(predict_prob, net, loss="bce"), 128, "fresh quick-profile net (base 8)"
    storage_url = given_storage(args.storage) or find_storage(args.study_name)
    study = load_existing_study(args.study_name, storage_url)
    member = members.choose(study, None, None).members[0]
    net, config, _ = members.open_member(member, project_dir(study.user_attrs, storage_url), device)
    return functools.partial(predict_prob, net, loss=config["train"]["loss"]), config["tile_size"][0], member.label


def peak_rss_mib() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study-name", help="measure this study's model (default: a fresh quick-profile net)")
    p.add_argument("--storage", help="the study's storage (as search.export)")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4000], help="image sides in pixels")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    predict, tile, what = predictor_and_tile(args, device)
    rows = []
    for side in args.sizes:
        image = synthetic_image(side)
        started = time.perf_counter()
        prob = stitch_predict(image, predict, tile, BATCH_SIZE)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        predicted = time.perf_counter() - started
        count_setting(prob, {"counter": "watershed"})
        counted = time.perf_counter() - started - predicted
        row = {
            "side": side,
            "megapixels_per_s": side * side / 1e6 / predicted,
            "predict_s": predicted,
            "count_s": counted,
            "peak_rss_mib": peak_rss_mib(),
        }
        rows.append(row)
        print(
            f"{side}x{side}: predict {row['megapixels_per_s']:.2f} MP/s ({predicted:.1f} s), "
            f"count {counted:.1f} s, peak RSS so far {row['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    threads = torch.get_num_threads()
    print(f"net: {what}, tile {tile}; device {device}; torch threads {threads}")
    print(json.dumps({"net": what, "tile": tile, "device": str(device), "threads": threads, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
