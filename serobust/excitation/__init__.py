"""The excitation analysis: what the SE gates do to a perturbation, measured on any model with SE modules.

One idea per module:

* ``adapters``: finding SE modules in any model (:func:`~serobust.excitation.adapters.find_se_modules`,
  :func:`~serobust.excitation.adapters.register_se_adapter`);
* ``probe``: :class:`~serobust.excitation.probe.ExcitationProbe`, the squeeze ``z``, excitation ``s`` and
  the norms of ``u`` and ``s * u`` of every SE block;
* ``shift_metrics``: the table of shift metrics, one named function per quantity;
* ``shift``: the excitation shift under attack and under matched random noise (``shift_analysis``);
* ``controls``: the random perturbations of the attack's size the shift is read against;
* ``sensitivity``: how a perturbation grows through depth, baseline vs SE twin;
* ``interventions``: causal tests that set each gate's ``s``;
* ``profiles``: class profiles of the excitation and whether attacks move them toward the fooled class;
* ``adaptive``: the adaptive-attack table (plain PGD vs attacks on the gates, run through the harness);
* ``inputs``: how these functions check and batch their inputs.
"""
