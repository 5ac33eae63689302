"""GPU suite: the gpu-marked tests, then stage timings at 504x896 with the Talk2DINO config.

    python benchmarks/gpu.py [--out gpu_results.json] [--only a,b] [--skip a,b]   # one GPU, <= 8 min
    python benchmarks/gpu.py --dry-run      # every stage at tiny sizes on the CPU (what the tests run)

Randomly initialised weights of the real sizes (the cost does not depend on the values):
  gpu_tests       pytest -m gpu on the test files that carry the mark (gsplat vs the CPU renderer, GPU decode)
  backbone        DINOv2 ViT-B/14-reg4 (timm) on 6 x 3 x 504 x 896, bf16 autocast
  depth_provider  a Metric3D-sized depth network: its ViT-L/14 encoder (timm, random) on the same input, bf16
  decoder_heads   GaussTR neck + decoder + heads on 6 x 768 x 36 x 64 tokens and given depth, bf16;
                  options measured: eager, torch.compile, torch.compile with CUDA graphs (reduce-overhead)
  depth_head      the model's depth head (model/depth_head.py, issue 16) on the neck maps, when it exists
  voxelise        voxelize_gaussians, 1800 GaussTR-sized Gaussians -> 200 x 200 x 16 x 22 (benchmarks/voxelize.py's
                  scene); options: PyTorch path chunk sizes on CUDA, the fused CPU kernel for comparison
  semantics       prompt probabilities + classify_voxels of the Occ3D vocabulary (22 prompts)
  train_step      one training step (forward, losses with rendering, backward, AdamW), batch train.batch_size,
                  the config's autocast (fp16 + GradScaler)
  node_e2e        the occupancy node in its own process on the GPU (DINOv2 provider, depth topics), six 1600x900
                  JPEG cameras published as fast as the node consumes them (two sets in flight): sustained output
                  rate and input-to-output latency
  node_e2e_head   the same with the model's depth head instead of depth maps, once the node offers
                  depth_source 'model' (issue 16)
Every stage runs in its own process with its own timeout (a hung CUDA call cannot stall the suite);
the JSON (--out) is rewritten atomically after every stage, so a cut run still reports. The table
printed at the end holds each stage's median ms and the targets: decoder + heads < 15 ms,
voxelise < 5 ms, node end to end >= 20 Hz. New stages: a function decorated with @stage below.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/gpu.py` from anywhere: benchmarks.* and gausstr_core import
    sys.path.insert(0, str(ROOT))

from benchmarks.model import VIEWS, inputs, timed  # noqa: E402
from gausstr_core.config import Config, load_config  # noqa: E402
from gausstr_core.grid import VoxelGrid  # noqa: E402

VIT_L_ARCH = "vit_large_patch14_reg4_dinov2"  # Metric3D v2's ViT-L encoder size
DRY_RUN_TIMEOUT_FACTOR = 4  # a shared CPU starts processes and runs the tiny stages far slower than a GPU box


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a stage runs on: the real sizes on the GPU, or tiny ones on the CPU (--dry-run)."""

    dry_run: bool
    device: torch.device
    repeats: int
    config: Config
    vit_overrides: dict[str, Any]  # timm kwargs shrinking the ViTs in the dry run
    node_seconds: float
    grid: VoxelGrid
    gaussians: int  # of benchmarks/voxelize.py's scene

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self, dtype: torch.dtype = torch.bfloat16):
        return torch.autocast("cuda", dtype=dtype) if self.cuda else nullcontext()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def median_ms(self, fn: Callable[[], object], repeats: int | None = None) -> float:
        """Median wall ms of `repeats` calls after one warm-up (CUDA-synchronised)."""
        return statistics.median(timed(fn, repeats or self.repeats, self.device)) * 1e3


def make_setting(dry_run: bool) -> Setting:
    if dry_run:
        config = load_config(str(ROOT / "config" / "tiny.yaml"))  # with a DINOv2-shaped tiny ViT as backbone
        config.model = dataclasses.replace(config.model, patch_size=14)
        config.data.input_size = (56, 98)
        config.data.image_size = (90, 160)
        tiny_vit = {"depth": 1, "embed_dim": config.model.feature_dim, "num_heads": 2}
        small = VoxelGrid(range=(-8.0, -8.0, -1.0, 8.0, 8.0, 5.4))
        return Setting(True, torch.device("cpu"), 1, config, tiny_vit, node_seconds=0.0, grid=small, gaussians=200)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py: no CUDA device (use --dry-run to check the suite on the CPU)")
    config = load_config(str(ROOT / "config" / "gausstr_talk2dino.yaml"))
    return Setting(False, torch.device("cuda"), 10, config, {}, node_seconds=15.0, grid=VoxelGrid(), gaussians=1800)


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Setting], dict[str, Any]]
    timeout_s: float
    target: str  # printed next to the result ("" when none)
    headline: str  # the result key shown in the table


STAGES: dict[str, Stage] = {}


def stage(name: str, timeout_s: float, headline: str, target: str = ""):
    """Register a stage (run in this order; timeouts sum to <= 8 minutes)."""

    def register(fn: Callable[[Setting], dict[str, Any]]) -> Callable[[Setting], dict[str, Any]]:
        STAGES[name] = Stage(name, fn, timeout_s, target, headline)
        return fn

    return register


def _compiled_variants(setting: Setting, fn: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    """eager / torch.compile / torch.compile with CUDA graphs; the dry run traces with the 'eager'
    backend (checks that dynamo takes the code, without a C++ toolchain)."""
    backend = "inductor" if setting.cuda else "eager"
    variants = {"eager": fn, "compile": torch.compile(fn, backend=backend)}
    if setting.cuda:
        variants["cuda_graphs"] = torch.compile(fn, mode="reduce-overhead")
    return variants


def _time_variants(setting: Setting, variants: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fn in variants.items():
        try:
            out[f"{name}_ms"] = setting.median_ms(fn)
        except Exception as err:  # an option that fails is reported, the others still count
            out[f"{name}_error"] = f"{type(err).__name__}: {str(err)[:300]}"
    return out


@stage("gpu_tests", 60, "passed")
def gpu_tests(setting: Setting) -> dict[str, Any]:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "test").glob("test_*.py")
                   if "mark.gpu" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr)[-2000:]
    counts = {key: int(n) for n, key in re.findall(r"(\d+) (passed|failed|skipped|errors?)", tail)}
    print(tail.strip().splitlines()[-1] if tail.strip() else "(no output)")
    return {"files": files, "rc": proc.returncode, **counts, "output_tail": tail}


def _vit(setting: Setting, arch: str) -> tuple[torch.nn.Module, torch.Tensor]:
    import timm

    h, w = setting.config.data.input_size
    h, w = h // 14 * 14, w // 14 * 14
    model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=(h, w), dynamic_img_size=True,
                              **setting.vit_overrides)
    return model.to(setting.device).eval(), torch.rand(VIEWS, 3, h, w, device=setting.device)


def _vit_stage(setting: Setting, arch: str) -> dict[str, Any]:
    model, images = _vit(setting, arch)
    params = sum(p.numel() for p in model.parameters())

    def run(fn: Callable[[torch.Tensor], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad(), setting.autocast():
                return fn(images)

        return call

    variants = {k: run(v) for k, v in _compiled_variants(setting, model.forward_features).items()}
    result = {"arch": arch, "parameters": params, "input": list(images.shape), **_time_variants(setting, variants)}
    print(f"{arch}: {params / 1e6:.0f} M parameters, input {list(images.shape)}: "
          + ", ".join(f"{k} {v:.1f}" for k, v in result.items() if k.endswith("_ms")))
    return result


@stage("backbone", 50, "eager_ms")
def backbone(setting: Setting) -> dict[str, Any]:
    from gausstr_core.foundation.dinov2 import DINOV2_ARCH

    return _vit_stage(setting, DINOV2_ARCH)


@stage("depth_provider", 35, "eager_ms")
def depth_provider(setting: Setting) -> dict[str, Any]:
    return _vit_stage(setting, VIT_L_ARCH)


def _model(setting: Setting, **model_changes: Any):
    from gausstr_core.model import GaussTR

    torch.manual_seed(0)
    cfg = dataclasses.replace(setting.config, model=dataclasses.replace(setting.config.model, **model_changes))
    return cfg, GaussTR(cfg.model).to(setting.device).eval()


@stage("decoder_heads", 75, "eager_ms", "decoder + heads < 15 ms")
def decoder_heads(setting: Setting) -> dict[str, Any]:
    cfg, model = _model(setting)
    x = inputs(cfg, 1, setting.device)
    with torch.no_grad(), setting.autocast():
        maps = model.encode(x["features"])
        neck_ms = setting.median_ms(lambda: model.encode(x["features"]))
        full_ms = setting.median_ms(lambda: model(**x))
    args = (maps, x["depths"], x["intrinsics"], x["cam2ego"], x["original_to_input"])

    def run(fn: Callable[..., Any]) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad(), setting.autocast():
                return fn(*args)

        return call

    variants = {k: run(v) for k, v in _compiled_variants(setting, model.decode).items()}
    result = {"gaussians": VIEWS * cfg.model.num_queries, "neck_ms": neck_ms, "forward_ms": full_ms,
              **_time_variants(setting, variants)}
    print("decoder + heads: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items() if k.endswith("_ms")))
    return result


@stage("depth_head", 20, "depth_head_ms")
def depth_head(setting: Setting) -> dict[str, Any]:
    try:
        from gausstr_core.model.depth_head import DepthHead  # noqa: F401  (issue 16)
    except ImportError:
        return {"skipped": "gausstr_core/model/depth_head.py is not there yet"}
    cfg, model = _model(setting, depth_head=True)
    x = inputs(cfg, 1, setting.device)
    cams = (x["intrinsics"], x["cam2ego"], x["original_to_input"])
    with torch.no_grad(), setting.autocast():
        maps = model.encode(x["features"])
        head_ms = setting.median_ms(lambda: model.predict_depth(maps, x["images"], *cams))
        no_depth = {**x, "depths": None}
        forward_ms = setting.median_ms(lambda: model(**no_depth))
    print(f"depth head {head_ms:.1f} ms; GaussTR forward with the head's depth {forward_ms:.1f} ms")
    return {"depth_head_ms": head_ms, "forward_with_head_ms": forward_ms}


def _scene(setting: Setting, channels: int) -> list[torch.Tensor]:
    from benchmarks.voxelize import gausstr_scene

    means, covariances, opacities, _ = (t[: setting.gaussians] for t in gausstr_scene())
    features = torch.softmax(torch.randn(means.shape[0], channels, generator=torch.Generator().manual_seed(1)), -1)
    if setting.dry_run:  # the scene's ranges to 50 m, squeezed into the small grid
        means = means * 0.15
    return [t.to(setting.device) for t in (means, covariances, opacities, features)]


@stage("voxelise", 25, "default_ms", "voxelise < 5 ms")
def voxelise(setting: Setting) -> dict[str, Any]:
    from gausstr_core import voxelize_fused
    from gausstr_core.grid import VoxelGrid
    from gausstr_core.voxelize import voxelize_gaussians

    grid, scene = VoxelGrid(), _scene(setting, 22)
    chunk = setting.config.inference.chunk_size
    variants = {"default": lambda: voxelize_gaussians(*scene, grid, chunk_size=chunk)}
    for bits in (22, 24, 26):
        variants[f"torch_chunk_2^{bits}"] = lambda b=bits: voxelize_gaussians(*scene, grid, chunk_size=1 << b,
                                                                              backend="torch")
    if voxelize_fused.available():
        cpu_scene = [t.cpu() for t in scene]
        variants["cpu_fused"] = lambda: voxelize_gaussians(*cpu_scene, grid, backend="fused")
    with torch.no_grad():
        result = {"gaussians": scene[0].shape[0], "chunk_size": chunk, **_time_variants(setting, variants)}
    print("voxelise: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items() if k.endswith("_ms")))
    return result


@stage("semantics", 15, "classify_ms")
def semantics(setting: Setting) -> dict[str, Any]:
    from gausstr_core.resources import vocabulary_file
    from gausstr_core.semantics import OpenVocabularyHead
    from gausstr_core.vocabulary import Vocabulary
    from gausstr_core.voxelize import voxelize_gaussians

    vocabulary = Vocabulary.load(vocabulary_file("vocabulary_occ3d.yaml"))
    dim = setting.config.model.feature_dim
    prompts = len(vocabulary.prompt_to_class)
    prototypes = torch.randn(prompts, dim, generator=torch.Generator().manual_seed(2)).to(setting.device)
    head = OpenVocabularyHead.from_vocabulary(vocabulary, prototypes, setting.config.inference)
    means, covariances, opacities, _ = _scene(setting, 1)
    features = torch.randn(means.shape[0], dim, device=setting.device)
    grid = setting.grid
    with torch.no_grad():
        probs = head.prompt_probabilities(features)
        density, voxel_probs = voxelize_gaussians(means, covariances, opacities, probs, grid)
        result = {
            "prompts": prompts,
            "prompt_probabilities_ms": setting.median_ms(lambda: head.prompt_probabilities(features)),
            "classify_ms": setting.median_ms(lambda: head.classify_voxels(density, voxel_probs)),
            "touched_voxels": int((density > 0).sum()),
        }
    print(f"semantics: prompt probabilities {result['prompt_probabilities_ms']:.2f} ms, classify "
          f"{result['classify_ms']:.2f} ms ({result['touched_voxels']} touched voxels)")
    return result


@stage("train_step", 40, "step_ms")
def train_step(setting: Setting) -> dict[str, Any]:
    from gausstr_core.losses import gausstr_losses

    cfg, model = _model(setting)
    model.train()
    x = inputs(cfg, cfg.train.batch_size, setting.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(cfg.train.amp)) if setting.cuda else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)

    def step() -> None:
        with torch.autocast("cuda", dtype=amp) if amp else nullcontext():
            layers = model(**x)
            total, _ = gausstr_losses(layers, x["features"], x["depths"], x["cam2ego"], x["intrinsics"],
                                      x["original_to_input"], cfg.train)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    if setting.cuda:
        torch.cuda.reset_peak_memory_stats()
    ms = setting.median_ms(step, max(1, setting.repeats // 2))
    result = {"step_ms": ms, "batch": cfg.train.batch_size, "amp": str(cfg.train.amp) if amp else "off"}
    if setting.cuda:
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(f"train step (batch {cfg.train.batch_size}, amp {result['amp']}): {ms:.1f} ms")
    return result


@stage("node_e2e", 80, "rate_hz", "end to end >= 20 Hz")
def node_e2e(setting: Setting) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return _node_run(setting, Path(tmp), depth_head=False)


@stage("node_e2e_head", 80, "rate_hz", "end to end >= 20 Hz (depth head, no depth network)")
def node_e2e_head(setting: Setting) -> dict[str, Any]:
    from gausstr_ros.node_params import DEPTH_SOURCES

    if "model" not in DEPTH_SOURCES:
        return {"skipped": "the node has no depth_source 'model' yet (issue 16)"}
    with tempfile.TemporaryDirectory() as tmp:
        return _node_run(setting, Path(tmp), depth_head=True)


def _node_checkpoint(setting: Setting, tmp: Path, depth_head: bool) -> Path:
    """A checkpoint of random weights: the model + a DINOv2 provider whose random weights are saved
    next to it (dry run: the tiny model and a one-block DINOv2-shaped ViT)."""
    from benchmarks.node import HEIGHT, WIDTH
    from gausstr_core.model import GaussTR
    from gausstr_core.model.checkpoint import save_checkpoint

    config = dataclasses.replace(setting.config)
    config.model = dataclasses.replace(config.model, depth_head=depth_head)
    config.data = dataclasses.replace(config.data, image_size=(HEIGHT, WIDTH))
    from safetensors.torch import save_file

    from gausstr_core.foundation.dinov2 import DINOV2_ARCH

    model, _ = _vit(setting, DINOV2_ARCH)
    weights = tmp / "dinov2_random.safetensors"
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(weights))
    config.data.feature_provider = {"name": "dinov2", "weights": str(weights),
                                    "input_size": list(config.data.input_size), "model_kwargs": setting.vit_overrides}
    config.data.depth_provider = {}
    # Prototypes of the right size (P x feature_dim) from the synthetic text encoder: no text model needed.
    config.inference = dataclasses.replace(
        config.inference, text_encoder={"name": "synthetic", "feature_dim": config.model.feature_dim}
    )
    torch.manual_seed(0)
    path = tmp / f"node_{'head' if depth_head else 'topics'}.pth"
    save_checkpoint(path, GaussTR(config.model), config)
    return path


def _node_run(setting: Setting, tmp: Path, depth_head: bool) -> dict[str, Any]:
    """The node process fed closed-loop (a new camera set whenever fewer than two are in flight)."""
    import rclpy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from tf2_msgs.msg import TFMessage

    from benchmarks.node import HEIGHT, WIDTH, frame_messages, make_jpegs
    from gausstr_core.data.synthetic.rig import nuscenes_rig
    from gausstr_ros.qos import OUTPUT_QOS, TF_STATIC_QOS
    from gausstr_ros.tools.bag_writer import camera_info_topic, depth_topic, image_topic, transform_msg
    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess, input_topics, spin_until, wait_for_subscriptions

    checkpoint = _node_checkpoint(setting, tmp, depth_head)
    rig = nuscenes_rig(WIDTH, HEIGHT)
    cameras = [c.name for c in rig]
    jpegs = make_jpegs()
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 30))
    # full-resolution camera sets need a larger Fast DDS shared-memory segment (see benchmarks/node.py)
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds_large_messages.xml"))
    rclpy.init()
    node = rclpy.create_node("gpu_suite_feeder")
    params = {"device": str(setting.device), "depth_source": "model" if depth_head else "topic"}
    log = tmp / f"node_{'head' if depth_head else 'topics'}.log"
    try:
        pubs = [(node.create_publisher(CompressedImage, image_topic(c), OUTPUT_QOS),
                 node.create_publisher(CameraInfo, camera_info_topic(c), OUTPUT_QOS),
                 node.create_publisher(Image, depth_topic(c), OUTPUT_QOS)) for c in cameras]
        tf_pub = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        recorder = OutputRecorder(node)
        with NodeProcess(checkpoint, cameras, log, **params) as proc:
            topics = input_topics(cameras, not depth_head)
            ready, deadline = False, time.monotonic() + 90
            while not ready and time.monotonic() < deadline and proc.alive() and "failed" not in proc.log():
                ready = wait_for_subscriptions(node, topics, 2.0)
            if not ready:
                raise RuntimeError(f"node not ready:\n{proc.log()[-3000:]}")
            tf_pub.publish(TFMessage(transforms=[transform_msg("base_link", c.name, c.cam2ego, 0) for c in rig]))
            spin_until(node, lambda: False, 1.0)
            sent, window, last_sent = 0, None, 0.0  # window: (start time, outputs, sets sent) at the first output
            deadline = time.monotonic() + 60
            while True:
                outputs = recorder.count("occupancy")
                if window is None and outputs:
                    window = (time.monotonic(), outputs, sent)
                if window and (time.monotonic() - window[0] >= setting.node_seconds and outputs - window[1] >= 2):
                    break
                if time.monotonic() > deadline or not proc.alive():
                    raise RuntimeError(f"node stalled ({outputs} outputs):\n{proc.log()[-3000:]}")
                # two sets in flight; re-send after a quiet second (a set the node dropped or missed)
                if sent - outputs < 2 or time.monotonic() - last_sent > 1.0:
                    last_sent = time.monotonic()
                    _, images, infos, depths = frame_messages(jpegs, time.time_ns(), (63, 112))
                    for (pi, pc, pd), image, info, depth in zip(pubs, images, infos, depths):
                        pc.publish(info)
                        if not depth_head:
                            pd.publish(depth)
                        pi.publish(image)
                    sent += 1
                rclpy.spin_once(node, timeout_sec=0.002)
            elapsed = time.monotonic() - window[0]
            count = recorder.count("occupancy") - window[1]
            latencies = [r.msg.data for r in recorder.messages["debug/pipeline_latency_ms"]][window[1]:]
    finally:
        node.destroy_node()
        rclpy.shutdown()
    result = {"rate_hz": count / elapsed, "outputs": count, "sets_sent": sent - window[2], "seconds": elapsed,
              "latency_ms": statistics.median(latencies) if latencies else float("nan")}
    print(f"node ({params['depth_source']} depth): {result['rate_hz']:.1f} Hz sustained, median latency "
          f"{result['latency_ms']:.0f} ms over {elapsed:.1f} s")
    return result


def run_child(name: str, dry_run: bool, result_path: Path) -> None:
    """One stage in this process; its result (or error) goes to result_path as JSON."""
    torch.manual_seed(0)
    start = time.perf_counter()
    try:
        result = {"status": "ok", **STAGES[name].run(make_setting(dry_run))}
    except Exception as err:
        result = {"status": "error", "error": f"{type(err).__name__}: {err}"[-3000:]}
        print(result["error"], file=sys.stderr)
    result["seconds"] = time.perf_counter() - start
    result_path.write_text(json.dumps(result, default=str))


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def run_suite(names: list[str], dry_run: bool, out: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "dry_run": dry_run, "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not dry_run else "cpu",
        "stages": {},
    }
    write_json(out, report)
    for name in names:
        spec = STAGES[name]
        timeout_s = spec.timeout_s * (DRY_RUN_TIMEOUT_FACTOR if dry_run else 1)
        print(f"\n== {name} (timeout {timeout_s:.0f} s)", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result_path = Path(tmp) / "result.json"
            cmd = [sys.executable, __file__, "--child", name, "--result", str(result_path)]
            cmd += ["--dry-run"] if dry_run else []
            start = time.perf_counter()
            try:
                subprocess.run(cmd, cwd=ROOT, timeout=timeout_s, check=False)
                result = json.loads(result_path.read_text()) if result_path.exists() else {
                    "status": "error", "error": "the stage process ended without a result"}
            except subprocess.TimeoutExpired:
                result = {"status": "timeout", "timeout_s": timeout_s}
            result["wall_s"] = time.perf_counter() - start
        report["stages"][name] = result
        write_json(out, report)
    print_table(report)
    return report


def print_table(report: dict[str, Any]) -> None:
    print(f"\nGPU suite on {report['device']} (torch {report['torch']}{', dry run' if report['dry_run'] else ''}):")
    for name, result in report["stages"].items():
        spec = STAGES[name]
        value = result.get(spec.headline)
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        status = result["status"] if result.get("status") != "ok" else f"{spec.headline} {shown}"
        if "skipped" in result:
            status = f"skipped ({result['skipped']})"
        print(f"  {name:<15} {status:<40} {spec.target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every stage at tiny sizes on the CPU")
    parser.add_argument("--out", default="gpu_results.json", help="JSON report, rewritten after every stage")
    parser.add_argument("--only", default="", help="comma-separated stages (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated stages to leave out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.dry_run, Path(args.result))
        return 0
    chosen = [s for s in args.only.split(",") if s] or list(STAGES)
    skipped = {s for s in args.skip.split(",") if s}
    unknown = sorted((set(chosen) | skipped) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; known: {', '.join(STAGES)}")
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here; --dry-run checks the suite on the CPU")
    report = run_suite([s for s in chosen if s not in skipped], args.dry_run, Path(args.out))
    failed = [n for n, r in report["stages"].items() if r.get("status") != "ok"]
    gpu = report["stages"].get("gpu_tests", {})
    if gpu.get("rc") not in (None, 0, 5):  # 5: pytest collected nothing to run
        failed.append("gpu_tests (tests failed)")
    if failed:
        print(f"stages not ok: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
