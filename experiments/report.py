"""Regenerates a README table from the runs' results.json files.

  python -m experiments.report [--runs=runs] [--readme=README.md] [--experiments=a,b]
  python -m experiments.report --table=fashion --experiments=fashion_lenet5_relu,fashion_lenet5
  python -m experiments.report --table=nbody --experiments=nbody_linear,nbody_gnn,nbody_egnn,\
      nbody_egnn_seed1,nbody_egnn_seed2

`--experiments` names run directories under `--runs`; `--table` chooses the table (and its
markers in the README): `results` (the MNIST runs), `fashion` (the section 5.3.2
architectures on Fashion-MNIST, each row beside its anchor) or `nbody` (the charged N-body
models beside the EGNN paper's test MSE, with their float64 equivariance errors).
"""

import json
import pathlib
import re

from absl import app, flags

flags.DEFINE_string("runs", "runs", "Directory whose subdirectories hold results.json files.")
flags.DEFINE_string("readme", "README.md", "Markdown file with the results markers to update.")
flags.DEFINE_list("experiments", ["mnist_mlp", "mnist_cnn"], "Runs to tabulate, in this order.")
flags.DEFINE_enum("table", "results", ["results", "fashion", "nbody"],
                  "Which table to regenerate.")
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
  lines = ["| experiment | dataset | test accuracy | target | epochs | train time | examples/s | "
           "parameters | hardware |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    rate = f"{r['train_examples_per_s']:,.0f}" if r.get("train_examples_per_s") else "-"
    lines.append(
        f"| `{r['experiment']}` | {r['dataset']} | {100 * r['test_accuracy']:.2f} % | "
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
  lines = ["| model | parameters | epochs | augmentation | test accuracy | anchor | train time | "
           "hardware |", "|---|---|---|---|---|---|---|---|"]
  for r in results:
    lines.append(
        f"| `{r['model']}` | {r['param_count']:,} | {r['epochs']:g} | "
        f"{_augmentation(r['config'])} | {100 * r['test_accuracy']:.2f} % | "
        f"{ANCHORS.get(r['model'], '-')} | {r['train_time_s'] / 60:.1f} min | {_hardware(r)} |")
  return "\n".join(lines)


def _duration(seconds: float) -> str:
  return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def nbody_table(results: list[dict]) -> str:
  lines = ["| model | parameters | seed | epochs | lr schedule | test MSE (95 % interval) | paper | "
           "rotation | reflection | translation | permutation | train time | hardware |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    errors = r["equivariance_errors_float64"]
    lines.append(
        f"| `{r['model']}` | {r['param_count']:,} | {r['seed']} | "
        f"{r['epochs']:g} (best {r['best_epoch']}) | "
        f"{r['config'].get('lr_schedule', 'constant')} | {r['test_mse']:.4f} "
        f"({r['test_mse_interval95'][0]:.4f}-{r['test_mse_interval95'][1]:.4f}) | "
        f"{NBODY_ANCHORS.get(r['model'], '-')} | "
        + " | ".join(f"{errors[k]['relative_error']:.0e}" for k in
                     ("rotation", "reflection", "translation", "permutation"))
        + f" | {_duration(r['train_time_s'])} | {_hardware(r)} |")
  return "\n".join(lines)


TABLES = {"results": table, "fashion": fashion_table, "nbody": nbody_table}


def main(argv):
  del argv
  paths = [pathlib.Path(FLAGS.runs) / name / "results.json" for name in FLAGS.experiments]
  missing = [str(p) for p in paths if not p.exists()]
  if missing:
    raise app.UsageError(f"no results for {', '.join(missing)}; run those experiments first")
  results = [json.loads(p.read_text()) for p in paths]
  text = TABLES[FLAGS.table](results)
  begin, end = f"<!-- {FLAGS.table}:begin -->", f"<!-- {FLAGS.table}:end -->"
  readme = pathlib.Path(FLAGS.readme)
  content = readme.read_text()
  pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
  if not pattern.search(content):
    raise app.UsageError(f"{readme} has no {begin} ... {end} markers")
  readme.write_text(pattern.sub(lambda _: f"{begin}\n{text}\n{end}", content))
  print(text)


if __name__ == "__main__":
  app.run(main)
