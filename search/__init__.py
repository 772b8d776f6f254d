"""Optuna search over U-Net training and counting settings, and what a study hands on.

The commands sit at the top: ``study`` (search, then the finalist stage), ``export`` (a
submission), ``predict`` (whole images) and ``report`` (static HTML), with what they share
(``cli``, ``errors``), the search space (``space``) and the trial roles (``roles``, a leaf).
Below them, one subpackage per concern, imported one way (commands, stages, results,
runtime, roles):

- ``stages``: creating a study, the objective, the time budget and the finalist stage;
- ``results``: statistics over images and runs, the verdict, the dashboard note;
- ``runtime``: storages, parallel workers, study folders and artifacts.
"""
