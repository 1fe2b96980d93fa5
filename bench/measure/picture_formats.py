"""Size against quality of the caller's picture: JPEG, WebP and AVIF at several qualities.

For each held-out clip, its first frame is cut as a sender cuts its reference (the renderer's portrait
crop, 512 px) and compressed; the decoded image is compared with the uncompressed crop: bytes of the
image, SSIM, PSNR, mouth-region SSIM, dlib identity distance, detail (the face's Laplacian variance over
the crop's: what smoothing takes away, as talk-bench's detail), and the encoding time on this machine
(one thread; state the load). The record adds about 2.3 kB of landmarks to the image's bytes.

    python -m bench.measure.picture_formats [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics.identity import descriptor, face_box
from bench.metrics.pixels import mouth_ssim, psnr, ssim
from bench.metrics.sharpness import face_oval_mask, laplacian_variance
from codec.errors import TalkcodecError
from codec.media import read_video
from codec.picture import ImageFormat, available_formats, decode_image, encode_image
from codec.render.portrait import prepare_portrait
from codec.train.corpus import corpus_dir, corpus_split

SWEEP = {ImageFormat.JPEG: (70, 85), ImageFormat.WEBP: (70, 75, 80, 85), ImageFormat.AVIF: (50, 55, 60, 70)}


def crops() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(clip, 512 px crop, its landmarks)`` of each held-out clip's first frame."""
    root = corpus_dir()
    out = []
    for rel in corpus_split(root).held_out:
        frame = next(iter(read_video(root / rel, 1)))
        p = prepare_portrait(frame)
        out.append((Path(rel).stem, p.image, p.landmarks))
    return out


def sweep() -> list[dict[str, Any]]:
    """One row per (format, quality): means over the clips, and the largest image."""
    images = crops()
    rows = []
    for fmt in [f for f in SWEEP if f in available_formats()]:
        for q in SWEEP[fmt]:
            per = []
            for _, img, lm in images:
                t0 = time.process_time()
                _, data = encode_image(img, fmt, q)
                enc_ms = (time.process_time() - t0) * 1000
                dec = decode_image(data, fmt, img.shape[0])
                box = face_box(lm)
                mask = face_oval_mask(lm, (img.shape[0], img.shape[1]))[None]
                detail = laplacian_variance(dec[None], mask)[0] / laplacian_variance(img[None], mask)[0]
                per.append([len(data), float(ssim(dec[None], img[None])[0]), float(psnr(dec[None], img[None])[0]),
                            float(mouth_ssim(dec[None], img[None], lm[None])[0]),
                            float(np.linalg.norm(descriptor(dec, box) - descriptor(img, box))), enc_ms,
                            float(detail)])
            a = np.array(per)
            rows.append({"format": fmt.name, "quality": q, "bytes_mean": round(float(a[:, 0].mean())),
                         "bytes_max": int(a[:, 0].max()), "ssim": round(float(a[:, 1].mean()), 4),
                         "psnr": round(float(a[:, 2].mean()), 2), "mouth_ssim": round(float(a[:, 3].mean()), 4),
                         "id_dist": round(float(a[:, 4].mean()), 4), "encode_cpu_ms": round(float(a[:, 5].mean())),
                         "detail": round(float(a[:, 6].mean()), 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.picture_formats", description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    try:
        rows = sweep()
    except TalkcodecError as e:
        print(f"picture_formats: error: {e}", file=sys.stderr)
        return 1
    print("| format | quality | bytes (mean) | bytes (max) | SSIM | PSNR | mouth SSIM | id dist. | detail "
          "| encode ms (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['quality']} | {r['bytes_mean']} | {r['bytes_max']} | {r['ssim']} | {r['psnr']} "
              f"| {r['mouth_ssim']} | {r['id_dist']} | {r['detail']} | {r['encode_cpu_ms']} |")
    print(f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
