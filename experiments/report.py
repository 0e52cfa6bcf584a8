"""Regenerates the README results table from the runs' results.json files.

  python -m experiments.report [--runs=runs] [--readme=README.md] [--experiments=a,b]
"""

import json
import pathlib
import re

from absl import app, flags

flags.DEFINE_string("runs", "runs", "Directory whose subdirectories hold results.json files.")
flags.DEFINE_string("readme", "README.md", "Markdown file with the results markers to update.")
flags.DEFINE_list("experiments", ["mnist_mlp", "mnist_cnn"], "Runs to tabulate, in this order.")
FLAGS = flags.FLAGS

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TARGETS = {"mnist_mlp": ">= 98.0 %", "mnist_cnn": ">= 99.0 %"}


def table(results: list[dict]) -> str:
  lines = ["| experiment | dataset | test accuracy | target | epochs | train time | examples/s | "
           "parameters | hardware |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    rate = f"{r['train_examples_per_s']:,.0f}" if r.get("train_examples_per_s") else "-"
    lines.append(
        f"| `{r['experiment']}` | {r['dataset']} | {100 * r['test_accuracy']:.2f} % | "
        f"{TARGETS.get(r['experiment'], '-')} | {r['epochs']:g} | {r['train_time_s']:.0f} s | "
        f"{rate} | {r['param_count']:,} | {r['num_devices']}x {r['platform']} "
        f"({r['device_kind']}), jax {r['versions']['jax']} |")
  return "\n".join(lines)


def main(argv):
  del argv
  paths = [pathlib.Path(FLAGS.runs) / name / "results.json" for name in FLAGS.experiments]
  missing = [str(p) for p in paths if not p.exists()]
  if missing:
    raise app.UsageError(f"no results for {', '.join(missing)}; run those experiments first")
  results = [json.loads(p.read_text()) for p in paths]
  text = table(results)
  readme = pathlib.Path(FLAGS.readme)
  content = readme.read_text()
  pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
  if not pattern.search(content):
    raise app.UsageError(f"{readme} has no {BEGIN} ... {END} markers")
  readme.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", content))
  print(text)


if __name__ == "__main__":
  app.run(main)
