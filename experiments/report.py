"""Regenerates a README table from the runs' results.json files.

  python -m experiments.report [--runs=runs] [--readme=README.md] [--experiments=a,b]
  python -m experiments.report --table=fashion --experiments=fashion_lenet5_relu,fashion_lenet5
  python -m experiments.report --table=nbody --experiments=nbody_linear,nbody_gnn,nbody_egnn,\
      nbody_egnn_seed1,nbody_egnn_seed2

`--experiments` names run directories under `--runs`; the first column of every table names the
run, and only the listed runs' rows are replaced (where they stood; runs new to the table are
appended), so one run can be refreshed without the others' results at hand (`--nomerge`
rewrites the table with the listed runs alone). `--table` chooses the table (and its markers in
the README): `results` (the MNIST runs), `fashion` (the section 5.3.2
architectures on Fashion-MNIST, each row beside its anchor), `nbody` (the charged N-body
models beside the EGNN paper's test MSE, with their float64 equivariance errors), `vision`
(sections 5.3.3-5.3.5, a row per run) or `denoising` (each denoising run against every classical
denoiser), among others.
"""

import json
import pathlib
import re
import sys

from absl import app, flags
import numpy as np

flags.DEFINE_string("runs", "runs", "Directory whose subdirectories hold results.json files.")
flags.DEFINE_string("readme", "README.md", "Markdown file with the results markers to update.")
flags.DEFINE_list("experiments", ["mnist_mlp", "mnist_cnn"], "Runs to tabulate, in this order.")
flags.DEFINE_enum("table", "results", ["results", "fashion", "nbody", "autoencoders", "metric",
                                       "oneshot", "vision", "denoising"],
                  "Which table to regenerate.")
flags.DEFINE_bool("merge", True, "Replace only the listed runs' rows and keep the table's other "
                  "rows; --nomerge rewrites the table with the listed runs alone.")
FLAGS = flags.FLAGS

TARGETS = {"mnist_mlp": ">= 98.0 %", "mnist_cnn": ">= 99.0 %"}
# Fashion-MNIST: the benchmark table of its authors, and the goals.
ANCHORS = {"lenet5_relu": "goal >= 90 %", "lenet5": "goal >= 90 %",
           "resnet18_small": "94.9 % (goal >= 95.0 %)", "vgg16_small": "93.5 %",
           "googlenet_small": "93.7 %"}

# Charged N-body: test MSE of Satorras, Hoogeboom and Welling (2021), table 2.
NBODY_ANCHORS = {"nbody_linear": "Linear 0.0819", "nbody_gnn": "GNN 0.0107",
                 "egnn": "EGNN 0.0071"}


def _hardware(r: dict) -> str:
  return (f"{r['num_devices']}x {r['platform']} ({r['device_kind']}), "
          f"jax {r['versions']['jax']}")


def table(results: list[dict]) -> str:
  lines = ["| run | dataset | test accuracy | target | epochs | train time | examples/s | "
           "parameters | hardware |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    rate = f"{r['train_examples_per_s']:,.0f}" if r.get("train_examples_per_s") else "-"
    lines.append(
        f"| `{r['run']}` | {r['dataset']} | {100 * r['test_accuracy']:.2f} % | "
        f"{TARGETS.get(r['experiment'], '-')} | {r['epochs']:g} | {r['train_time_s']:.0f} s | "
        f"{rate} | {r['param_count']:,} | {_hardware(r)} |")
  return "\n".join(lines)


def _augmentation(config: dict) -> str:
  parts = []
  if config.get("augment_crop_padding"):
    parts.append(f"crop (pad {config['augment_crop_padding']})")
  if config.get("augment_flip"):
    parts.append("flip")
  if config.get("augment_max_rotation"):
    parts.append(f"rotation {config['augment_max_rotation']:g} deg")
  if config.get("augment_random_erasing"):
    parts.append(f"erasing {config['augment_random_erasing']:g}")
  return ", ".join(parts) or "none"


def fashion_table(results: list[dict]) -> str:
  lines = ["| run | model | parameters | epochs | augmentation | test accuracy | anchor | "
           "train time | hardware |", "|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    lines.append(
        f"| `{r['run']}` | `{r['model']}` | {r['param_count']:,} | {r['epochs']:g} | "
        f"{_augmentation(r['config'])} | {100 * r['test_accuracy']:.2f} % | "
        f"{ANCHORS.get(r['model'], '-')} | {r['train_time_s'] / 60:.1f} min | {_hardware(r)} |")
  return "\n".join(lines)


def _duration(seconds: float) -> str:
  return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def nbody_table(results: list[dict]) -> str:
  lines = ["| run | model | parameters | seed | epochs | lr schedule | test MSE (95 % interval) | "
           "paper | rotation | reflection | translation | permutation | train time | hardware |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    errors = r["equivariance_errors_float64"]
    lines.append(
        f"| `{r['run']}` | `{r['model']}` | {r['param_count']:,} | {r['seed']} | "
        f"{r['epochs']:g} (best {r['best_epoch']}) | "
        f"{r['config'].get('lr_schedule', 'constant')} | {r['test_mse']:.4f} "
        f"({r['test_mse_interval95'][0]:.4f}-{r['test_mse_interval95'][1]:.4f}) | "
        f"{NBODY_ANCHORS.get(r['model'], '-')} | "
        + " | ".join(f"{errors[k]['relative_error']:.0e}" for k in
                     ("rotation", "reflection", "translation", "permutation"))
        + f" | {_duration(r['train_time_s'])} | {_hardware(r)} |")
  return "\n".join(lines)


def _variant(r: dict) -> str:
  """What an autoencoder run adds to its model: the L1 code penalty, the input noise."""
  parts = []
  if r.get("code_l1"):
    code = r["config"]["model_kwargs"].get("code_activation", "linear")
    parts.append(f"sparse (L1 {r['code_l1']:g}, {code} code)")
  if r.get("noise") not in (None, "none"):
    parts.append(f"denoising ({r['noise']} {r['noise_level']:g})")
  return ", ".join(parts) or "-"


def _denoised(r: dict) -> str:
  if "test_denoised_sse_per_image" not in r:
    return "-"
  return (f"{r['test_denoised_sse_per_image']:.2f} (PCA {r['test_pca_denoised_sse_per_image']:.2f}"
          f", input {r['test_noisy_input_sse_per_image']:.2f})")


def autoencoder_table(results: list[dict]) -> str:
  """Squared error per image of clean test images (and, for a denoising run, of noisy ones
  against the clean images) beside PCA with as many components as the code."""
  lines = ["| run (workdir) | model | dataset | variant | code | squared error / image | "
           "PCA, same code size | from noisy inputs | linear probe | probe on PCA | "
           "code units near 0 | epochs | train time |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    lines.append(
        f"| `{r['run']}` | `{r['model']}` | {r['dataset']} | {_variant(r)} | "
        f"{r['code_size']} | {r['test_sse_per_image']:.2f} | {r['test_pca_sse_per_image']:.2f} | "
        f"{_denoised(r)} | "
        f"{100 * r['test_probe_accuracy']:.2f} % | {100 * r['test_pca_probe_accuracy']:.2f} % | "
        f"{100 * r['test_code_near_zero']:.1f} % | {r['epochs']:g} | "
        f"{_duration(r['train_time_s'])} |")
  return "\n".join(lines)


def _training(r: dict) -> str:
  if r["loss"] == "triplet":
    return f"triplet, {r['mining']} ({r['triplet_distance']} d, margin {r['margin']:g})"
  if r["loss"] == "contrastive":
    return f"contrastive (margin {r['margin']:g})"
  return "softmax classifier"


def _percent(r: dict, key: str) -> str:
  return f"{100 * r[key]:.2f} %" if key in r else "-"


def _evaluated_on(r: dict) -> str:
  held = r["config"].get("held_out_classes") or ()
  if r["dataset"] == "kanji":
    return f"{r['eval_classes']} unseen characters"
  if held:
    return f"unseen digits {', '.join(map(str, held))}" if r["dataset"] == "mnist" else (
        f"unseen classes {', '.join(map(str, held))}")
  return f"all {r['eval_classes']} classes (seen)"


def metric_table(results: list[dict]) -> str:
  """Metric learning: one row per run (the triplet strategies side by side), measured on the
  test images of the classes named in "evaluated on"; the active-triplet share (of the triplet
  loss, for the classifier's embedding too; "-" for the contrastive loss) and the collapse
  ratio, over 20 training batches after training."""
  lines = ["| run (workdir) | dataset | training | evaluated on | kNN accuracy | recall@1 | "
           "recall@5 | 5-way 1-shot | 5-way 5-shot | verification | active triplets (end) | "
           "collapse ratio (end) | train time |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    share = r.get("end_active_share") if r["loss"] != "contrastive" else None
    ratio = r.get("end_collapse_ratio")
    lines.append(
        f"| `{r['run']}` | {r['dataset']} | {_training(r)} | "
        f"{_evaluated_on(r)} | "
        + " | ".join(_percent(r, f"test_{k}") for k in (
            "knn_accuracy", "recall_at_1", "recall_at_5", "5way_1shot_nearest",
            "5way_5shot_nearest", "verification_accuracy")) + " | "
        + (f"{100 * share:.1f} %" if share is not None else "-") + " | "
        + (f"{ratio:.3f}" if ratio is not None else "-")
        + f" | {_duration(r['train_time_s'])} |")
  return "\n".join(lines)


def oneshot_table(results: list[dict]) -> str:
  """N-way K-shot accuracy on the held-out classes, nearest support embedding and prototypes
  (95 % intervals over the episodes), beside the same episodes on raw pixels and chance."""
  lines = ["| run (workdir) | dataset | training | episodes | nearest support | prototype | "
           "raw pixels (1-NN) | chance |", "|---|---|---|---|---|---|---|---|"]
  for r in results:
    for key in sorted(k[len("test_"):-len("_nearest")] for k in r
                      if k.startswith("test_") and k.endswith("_nearest")):
      ways, shots = key.split("_")
      lines.append(
          f"| `{r['run']}` | {r['dataset']} | {_training(r)} | "
          f"{ways.replace('way', '')}-way {shots.replace('shot', '')}-shot | "
          f"{100 * r[f'test_{key}_nearest']:.2f} +- "
          f"{100 * r[f'test_{key}_nearest_ci95']:.2f} % | "
          f"{100 * r[f'test_{key}_prototype']:.2f} +- "
          f"{100 * r[f'test_{key}_prototype_ci95']:.2f} % | "
          f"{100 * r[f'test_{key}_pixels']:.2f} % | "
          f"{100 * r[f'test_{key}_chance']:.0f} % |")
  return "\n".join(lines)


def _vision_result(r: dict) -> tuple[str, str]:
  """(the measured numbers, the goal or anchor) of a run of sections 5.3.3-5.3.5."""
  if r["task"] == "localization" and r["head"] == "single":
    return (f"IoU {r['test_mean_iou']:.3f}; IoU >= 0.5 and class right "
            f"{100 * r['test_both']:.1f} %; class {100 * r['test_accuracy']:.2f} %", "-")
  if r["task"] == "localization":
    return (f"mAP@0.5 {r['test_map_50']:.3f}, mAP@[.5:.95] {r['test_map']:.3f}",
            "mAP@0.5 >= 0.95 (YOLO11s on a similar set: 0.883)")
  if r["task"] == "segmentation":
    return (f"mIoU {r['test_mean_iou']:.3f} (digits {r['test_mean_iou_digits']:.3f}), "
            f"boundary F1 {r['test_boundary_f1']:.3f}",
            "mIoU >= 0.90 (a UNet on M2NIST: 0.83)" if r["skips"] else "- (no skips: the "
            "ablation)")
  if r["task"] == "denoising":
    best = r.get("best_classical")
    line = f"PSNR {r['test_psnr']:.2f} dB, SSIM {r['test_ssim']:.3f}"
    if best:
      classical = r["classical"]
      unit = "windows" if r["dataset"] == "ecg" else "images"
      line += (f"; on {classical['network']['count']:,} {unit} {classical['network']['psnr']:.2f}"
               f" dB against {best} {r['test_best_classical_psnr']:.2f} dB (noisy "
               f"{r['test_noisy_psnr']:.2f} dB)")
    if r["noise"] == "gaussian" and r["noise_level"] == 0.4 and r["dataset"] != "ecg":
      return line, "+3 dB over the best classical denoiser (sigma 0.4)"
    return line, "-"
  losses = {k[len("final_"):]: v for k, v in r.items() if k.startswith("final_")}
  return ", ".join(f"{k} {v:.3g}" for k, v in losses.items()) or "-", "-"


def vision_table(results: list[dict]) -> str:
  """Localization, detection, segmentation, denoising and style transfer (sections
  5.3.3-5.3.5), a row per run."""
  lines = ["| run | model | parameters | data | test result | goal (anchor) | epochs | train time "
           "| hardware |", "|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    result, goal = _vision_result(r)
    data = r.get("dataset") or (f"{r.get('content')} / {r.get('style')}, "
                                f"{r.get('features')} features")
    if "noise" in r:
      data += f", {r['noise']} {r['noise_level']:g}"
    params = f"{r['param_count']:,}" if "param_count" in r else "-"
    lines.append(f"| `{r['run']}` | {r['model']} | {params} | {data} | {result} | "
                 f"{goal} | {r.get('epochs', 0):g} | {_duration(r['train_time_s'])} | "
                 f"{_hardware(r)} |")
  return "\n".join(lines)


def denoising_table(results: list[dict]) -> str:
  """Each denoising run against every classical denoiser (section 5.3.5): test PSNR / SSIM on
  the same images, each classical denoiser with the parameter tuned on validation images."""
  names = list(dict.fromkeys(n for r in results for n in r["classical"]["denoisers"]))
  lines = ["| run | data, noise | network | " + " | ".join(names) + " | network - best |",
           "|" + "---|" * (len(names) + 4)]
  for r in results:
    classical = r["classical"]
    network = classical["network"]
    cells = []
    for name in names:
      d = classical["denoisers"].get(name)
      cells.append("-" if d is None else f"{d['test_psnr']:.2f} / {d['test_ssim']:.3f} "
                   f"({d['parameter']} {d['value']:.3g})")
    best = max(d["test_psnr"] for d in classical["denoisers"].values())
    lines.append(f"| `{r['run']}` | {r['dataset']}, {r['noise']} {r['noise_level']:g} | "
                 f"{r['model']}: {network['psnr']:.2f} / {network['ssim']:.3f} | "
                 + " | ".join(cells) + f" | {network['psnr'] - best:+.2f} dB |")
  return "\n".join(lines)


TABLES = {"results": table, "fashion": fashion_table, "nbody": nbody_table,
          "autoencoders": autoencoder_table, "metric": metric_table, "oneshot": oneshot_table,
          "vision": vision_table, "denoising": denoising_table}


class ReportError(Exception):
  """Bad input to the report: missing results, markers or a table that cannot be merged."""


def _run_of(row: str) -> str:
  return row.split("|")[1].strip()


def merge(old: str, new: str) -> str:
  """The table `new` merged into the table `old` (markdown, a header of two lines): the rows of
  each run of `new` (a run's rows are those whose first cell names it) take the place of that
  run's rows in `old`, runs new to `old` are appended, and the other runs' rows are kept."""
  old_lines, new_lines = old.strip().splitlines(), new.strip().splitlines()
  if not old_lines:
    return new
  if old_lines[:2] != new_lines[:2]:
    raise ReportError(f"the table's columns are\n  {old_lines[0]}\nbut the listed runs give\n  "
                      f"{new_lines[0]}\nlist every run of the table, or pass --nomerge")
  fresh: dict[str, list[str]] = {}
  for row in new_lines[2:]:
    fresh.setdefault(_run_of(row), []).append(row)
  rows = []
  for row in old_lines[2:]:
    run = _run_of(row)
    if run not in fresh:
      rows.append(row)
    elif fresh[run]:
      rows += fresh[run]
      fresh[run] = []  # placed where the run's first old row stood
  rows += [row for group in fresh.values() for row in group]
  return "\n".join(new_lines[:2] + rows)


def update_readme(readme: pathlib.Path, table_name: str, text: str, merge_rows: bool) -> str:
  """Writes `text` between the table's markers in `readme` (merged with the rows there unless
  `merge_rows` is false) and returns what now stands between them."""
  begin, end = f"<!-- {table_name}:begin -->", f"<!-- {table_name}:end -->"
  if not readme.is_file():
    raise ReportError(f"--readme={readme} is not a file")
  content = readme.read_text()
  pattern = re.compile(re.escape(begin) + "\n?(.*?)" + re.escape(end), re.S)
  found = pattern.search(content)
  if not found:
    raise ReportError(f"{readme} has no {begin} ... {end} markers")
  if merge_rows:
    text = merge(found.group(1), text)
  readme.write_text(content[:found.start()] + f"{begin}\n{text}\n{end}" + content[found.end():])
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  try:
    paths = [pathlib.Path(FLAGS.runs) / name / "results.json" for name in FLAGS.experiments]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
      raise ReportError(f"no results for {', '.join(missing)}; run those experiments first")
    results = []
    for name, path in zip(FLAGS.experiments, paths):
      try:
        results.append({**json.loads(path.read_text()), "run": name})
      except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not JSON ({e})") from None
    for path, r in zip(paths, results):
      try:
        TABLES[FLAGS.table]([r])
      except KeyError as e:
        raise ReportError(f"{path} has no {e} for the {FLAGS.table} table; accepted: runs of "
                          "the task the table reports") from None
    text = TABLES[FLAGS.table](results)
    text = update_readme(pathlib.Path(FLAGS.readme), FLAGS.table, text, FLAGS.merge)
  except ReportError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(text)
  if FLAGS.table == "metric":
    path = pathlib.Path(FLAGS.runs) / "triplet_strategies.png"
    strategy_curves(FLAGS.experiments, pathlib.Path(FLAGS.runs), path)
    print(f"figure: {path}")


def strategy_curves(names: list[str], runs: pathlib.Path, out_path: pathlib.Path) -> None:
  """The share of active triplets and the collapse ratio over training, one line per run."""
  from dl_jax import plots  # pylint: disable=g-import-not-at-top
  curves = {"active_share": {}, "collapse_ratio": {}}
  for name in names:
    rows = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "train" and "active_share" in r]
    for key, lines in curves.items():
      lines[name] = (np.array([r["step"] for r in rows]), np.array([r[key] for r in rows]))
  plots.series_panels(curves, out_path, "triplet mining: active triplets and collapse",
                      {"active_share": "share of active triplets",
                       "collapse_ratio": "mean distance / margin scale"})


if __name__ == "__main__":
  app.run(main)
