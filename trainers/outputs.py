"""The files a finished training run writes into its output folder, named once.

:mod:`trainers.artifacts` writes them; the study records them and :mod:`analysis`
reads them (the report's pictures).  This module imports nothing, so ``analysis``
(which must not depend on torch) may import it.
"""

#: 8 inputs above their reconstructions (PNG grid).
RECONSTRUCTIONS_PNG = "reconstructions.png"
#: One row per latent swept over the traversal values (PNG grid).
TRAVERSALS_PNG = "traversals.png"
#: The traversals as an animation (only with ``eval.traversal_gif``).
TRAVERSALS_GIF = "traversals.gif"
#: What each row of the traversals is: latent, values, tile geometry and per-latent KL.
TRAVERSAL_LATENTS_NPZ = "traversal_latents.npz"
#: What MIG was computed from (only with the ``mig`` metric): the latent × factor mutual
#: information, the factor entropies and names, and MIG per factor (about 1 KB).
MIG_NPZ = "mig.npz"
#: Mean codes (and per-latent KL) of the shared evaluation inputs, for UDR.
CODES_NPZ = "codes.npz"
#: The run's config.
CONFIG_JSON = "config.json"
#: The held-out terms and metrics.
METRICS_JSON = "metrics.json"
#: The final model: step, config and weights (no optimiser state).
MODEL_PT = "model.pt"
