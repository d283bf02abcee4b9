"""Statistics of a study, one module per idea (pure numpy/pandas: a notebook can recompute every number).

* :mod:`~serobust.stats.checks`: the input checks every statistics module shares;
* :mod:`~serobust.stats.intervals`: t, bootstrap and crossed seeds x images intervals, per-group means;
* :mod:`~serobust.stats.differences`: paired SE-minus-baseline differences across seeds, the robust-accuracy table;
* :mod:`~serobust.stats.decisions`: the decision rule (outcomes), the claims' p values, Holm's correction;
* :mod:`~serobust.stats.power`: the minimum detectable effect, measured and planned by simulation;
* :mod:`~serobust.stats.paired`: McNemar's test of a pair on the same examples, per cell and pooled;
* :mod:`~serobust.stats.per_image`: per-image correctness of a pair as (seeds, images, eps) arrays;
* :mod:`~serobust.stats.robust_accuracy`: informative budgets, the robustness test on arrays, the headline table;
* :mod:`~serobust.stats.criterion`: the typed :class:`~serobust.stats.criterion.Criterion`;
* :mod:`~serobust.stats.criteria`: the robustness, gradient-masking guard and mechanism criteria builders;
* :mod:`~serobust.stats.verdict`: the typed verdict on H1, the overall outcome and its headline;
* :mod:`~serobust.stats.summaries`: the one table of per-group summaries the results and the report share.

Import from the defining module; this package re-exports nothing.
"""
