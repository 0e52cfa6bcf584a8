"""Figures of a run, drawn from its metrics (matplotlib is imported, with the Agg backend, only when
a figure is drawn)."""

import pathlib

import numpy as np


def pyplot():
  """matplotlib.pyplot on the non-interactive Agg backend."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def learning_curves(records: list[dict], out_path: pathlib.Path, title: str) -> None:
  """Loss (log scale) and, where recorded, accuracy against step, one line per split."""
  plt = pyplot()
  splits = [s for s in ("train", "val") if any(r["split"] == s and "loss" in r for r in records)]
  has_accuracy = any("accuracy" in r for r in records if r["split"] in splits)
  fig, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(10 if has_accuracy else 6, 4),
                           squeeze=False)
  axes = axes[0]
  for split in splits:
    rows = [r for r in records if r["split"] == split and "loss" in r]
    steps = [r["step"] for r in rows]
    marker = "o" if split == "val" else None
    axes[0].plot(steps, [r["loss"] for r in rows], label=split, marker=marker)
    if has_accuracy:
      axes[1].plot(steps, [100 * r.get("accuracy", np.nan) for r in rows], label=split,
                   marker=marker)
  for ax, name in zip(axes, ("loss", "accuracy (%)")):
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    if splits:
      ax.legend()
  if splits and all(r["loss"] > 0 for r in records if r["split"] in splits and "loss" in r):
    axes[0].set_yscale("log")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_path, dpi=120)
  plt.close(fig)


def fold_curves(history: np.ndarray, out_path: pathlib.Path, title: str) -> None:
  """Test accuracy per epoch of each cross-validation fold (grey) and their mean."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 4))
  epochs = np.arange(1, history.shape[1] + 1)
  for row in history:
    ax.plot(epochs, 100 * row, color="0.8", lw=0.8)
  ax.plot(epochs, 100 * history.mean(0), color="C0", lw=2, label="mean over folds")
  ax.set_xlabel("epoch")
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(out_path, dpi=120)
  plt.close(fig)


def nbody_predictions(start: np.ndarray, target: np.ndarray, predicted: np.ndarray,
                      out_path: pathlib.Path, title: str) -> None:
  """Particle systems seen from above (x, y): each particle's input position, its true position
  one time unit later and the model's prediction, one panel per system."""
  plt = pyplot()
  count = len(target)
  fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.4), squeeze=False)
  for ax, x0, x1, xp in zip(axes[0], start, target, predicted):
    for i in range(len(x0)):
      ax.annotate("", xy=x1[i, :2], xytext=x0[i, :2],
                  arrowprops=dict(arrowstyle="->", color=f"C{i}", lw=1))
      ax.plot(*x0[i, :2], "o", color=f"C{i}", ms=5, alpha=0.5)
      ax.plot(*xp[i, :2], "x", color="k", ms=7)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
  axes[0][0].set_title("o input, arrow: true motion, x: predicted", fontsize=8, loc="left")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_path, dpi=110)
  plt.close(fig)


def image_rows(rows: dict[str, np.ndarray], out_path: pathlib.Path, title: str) -> None:
  """One row of grey-scale images [count, H, W] (values in [0, 1]) per entry, named on the
  left: e.g. test images and their reconstructions."""
  plt = pyplot()
  count = max(len(images) for images in rows.values())
  fig, axes = plt.subplots(len(rows), count, figsize=(1.1 * count + 1.2, 1.15 * len(rows) + 0.5),
                           squeeze=False)
  for r, (name, images) in enumerate(rows.items()):
    for c in range(count):
      ax = axes[r][c]
      if c < len(images):
        ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)


def embedding_2d(points: np.ndarray, labels: np.ndarray, out_path: pathlib.Path,
                 title: str) -> None:
  """Points [N, 2] coloured by their integer label (at most 20 distinct colours)."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 5.4))
  classes = np.unique(labels)
  cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
  for i, c in enumerate(classes):
    at = labels == c
    ax.scatter(points[at, 0], points[at, 1], s=2, alpha=0.5, color=cmap(i % cmap.N),
               label=str(c), rasterized=True)
  if len(classes) <= 20:
    ax.legend(markerscale=5, fontsize=7, loc="best", ncol=2)
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_path, dpi=110)
  plt.close(fig)


def series_panels(panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                  out_path: pathlib.Path, title: str, ylabels: dict[str, str]) -> None:
  """One panel per entry of `panels` (name -> {line: (x, y)}), side by side, log-scale y where
  every value is positive."""
  plt = pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
  for ax, (panel, curves) in zip(axes[0], panels.items()):
    for name, (x, y) in curves.items():
      ax.plot(x, y, label=name, lw=1.2)
    if all((y > 0).all() for _, y in curves.values()):
      ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabels.get(panel, panel))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(out_path, dpi=110)
  plt.close(fig)


# Background, then classes 0..9 (matplotlib's tab10).
MASK_COLOURS = ("#000000", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def canvas_grid(images: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                out_path: pathlib.Path, title: str, masks: np.ndarray | None = None,
                pred_boxes: np.ndarray | None = None, pred_classes: np.ndarray | None = None,
                pred_scores: np.ndarray | None = None, columns: int = 8,
                class_names: tuple[str, ...] | None = None) -> None:
  """Canvases [n, H, W] (uint8, or floats in [0, 1]) with their true boxes [n, K, 4] (x0, y0, x1,
  y1; rows whose class is -1 are padding) in green, labelled with the class; optional predicted
  boxes [n, P, 4] in red, labelled class:score; with `masks` [n, H, W] (0 background, 1 + class)
  a second row per canvas shows the mask in MASK_COLOURS."""
  plt = pyplot()
  from matplotlib import colors, patches  # pylint: disable=g-import-not-at-top
  count = len(images)
  columns = max(1, min(columns, count))
  grid_rows = -(-count // columns)
  per = 2 if masks is not None else 1
  fig, axes = plt.subplots(grid_rows * per, columns, figsize=(1.7 * columns, 1.75 * grid_rows * per
                                                               + 0.5), squeeze=False)
  vmax = 255 if np.asarray(images).dtype == np.uint8 else 1
  name = (lambda c: class_names[c]) if class_names else str
  mask_map = colors.ListedColormap(MASK_COLOURS)

  def draw_boxes(ax, rows, labels, colour, scores=None):
    for j, (box, label) in enumerate(zip(rows, labels)):
      if label < 0:
        continue
      x0, y0, x1, y1 = (float(v) for v in box)
      ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                     edgecolor=colour, lw=0.9))
      text = name(int(label)) + ("" if scores is None else f":{float(scores[j]):.2f}")
      ax.text(x0 - 0.5, y0 - 1, text, color=colour, fontsize=5.5, va="bottom")

  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)
  for i in range(count):
    row, col = divmod(i, columns)
    ax = axes[row * per][col]
    ax.imshow(images[i], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    draw_boxes(ax, boxes[i], classes[i], "lime")
    if pred_boxes is not None:
      labels = pred_classes[i] if pred_classes is not None else np.zeros(len(pred_boxes[i]), int)
      draw_boxes(ax, pred_boxes[i], labels, "red",
                 None if pred_scores is None else pred_scores[i])
    if masks is not None:
      axes[row * per + 1][col].imshow(masks[i], cmap=mask_map, vmin=-0.5, vmax=10.5,
                                      interpolation="nearest")
  legend = "green: true boxes" + (", red: predicted class:score" if pred_boxes is not None else "")
  if masks is not None:
    legend += "; masks: black background, one colour per class"
  fig.suptitle(f"{title}\n{legend}", fontsize=8)
  fig.tight_layout()
  fig.savefig(out_path, dpi=130)
  plt.close(fig)
