"""Studies: absl scripts that run many trainings or measurements and compare them.

  python -m experiments.studies.<name> [--workdir=runs/study_<name>] [--quick]

Each writes a plot, `table.md` and `results.json` to its workdir; `--quick` is the short version
the tests run. `common` holds what they share.
"""
